// sdlens info MODEL: what a checkpoint is (family, sizes, norms, activation, positions) and what
// it holds (tensors, bytes, dtypes), without touching the weights themselves.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <sdlens/model/load.hpp>

#include "cli.hpp"

namespace sdlens::cli {

namespace {

nlohmann::json describe(const model& m)
{
    auto j = to_json(m.config);
    j["path"] = m.source->path;
    j["format"] = format_name(m.source->format);
    std::map<std::string, std::int64_t> dtype_counts;
    std::uint64_t bytes = 0;
    std::int64_t parameters = 0;
    auto tensors = nlohmann::json::array();
    for (const auto& t : m.source->tensors.tensors()) {
        ++dtype_counts[dtype_name(t.type)];
        bytes += t.nbytes;
        parameters += t.numel();
        tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.type)}, {"shape", t.shape}, {"bytes", t.nbytes}});
    }
    j["tensor_count"] = tensors.size();
    j["total_bytes"] = bytes;
    j["parameters"] = parameters;
    j["dtype_counts"] = dtype_counts;
    j["tensors"] = std::move(tensors);
    return j;
}

void print_text(std::ostream& out, const nlohmann::json& j, bool list_tensors)
{
    const auto& c = j;
    out << j["path"].get<std::string>() << " (" << j["format"].get<std::string>() << ")\n";
    out << "  family       " << c["family"].get<std::string>() << ", " << c["num_layers"] << " layers, hidden " << c["hidden_size"]
        << ", ffn " << c["ffn_size"] << ", vocab " << c["vocab_size"] << ", context " << c["max_positions"] << "\n";
    out << "  attention    " << c["num_heads"] << " heads of " << c["head_dim"] << ", " << c["num_kv_heads"] << " key/value heads";
    if (c["rope"] != "none")
        out << ", rope " << c["rope"].get<std::string>() << " over " << c["rotary_dims"] << " dims (theta " << c["rope_theta"] << ")";
    if (c["learned_positions"] == true) out << ", learned positions";
    out << "\n";
    out << "  block        " << c["norm"].get<std::string>() << " (eps " << c["norm_eps"] << "), " << c["activation"].get<std::string>()
        << (c["parallel_residual"] == true ? ", parallel attention and MLP" : ", sequential attention then MLP")
        << (c["shared_input_norm"] == true ? " sharing one norm" : "") << "\n";
    std::string biases;
    for (const auto& [k, v] : c["bias"].items())
        if (v == true) biases += (biases.empty() ? "" : ", ") + k;
    out << "  biases       " << (biases.empty() ? "none" : biases) << "\n";
    out << "  embeddings   " << (c["tied_embeddings"] == true ? "tied to the output head" : "separate output head")
        << ", bos " << c["bos_token"] << ", eos " << c["eos_token"] << "\n";
    out << "  tensors      " << c["tensor_count"] << ", " << c["parameters"] << " parameters, " << c["total_bytes"] << " bytes (";
    bool first = true;
    for (const auto& [k, v] : c["dtype_counts"].items()) {
        out << (first ? "" : ", ") << k << ": " << v;
        first = false;
    }
    out << ")\n";
    if (list_tensors)
        for (const auto& t : j["tensors"]) out << "    " << t["name"].get<std::string>() << "  " << t["dtype"].get<std::string>() << " " << t["shape"].dump() << "\n";
}

}  // namespace

void register_info(CLI::App& app)
{
    struct options {
        std::string model;
        std::string tokenizer;
        bool json = false;
        bool tensors = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("info", "Describe a checkpoint: architecture, format and tensors");
    cmd->add_option("model", opt->model, "Model: Hugging Face directory or .safetensors file, GGUF file, llama2.c .bin")->required();
    cmd->add_option("--tokenizer", opt->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
    cmd->add_flag("--json", opt->json, "Print JSON (every tensor listed under \"tensors\")");
    cmd->add_flag("--tensors", opt->tensors, "List every tensor in the text output");
    cmd->callback([opt] {
        load_options lo;
        lo.tokenizer_path = opt->tokenizer;
        const auto j = describe(load_model(opt->model, lo));
        emit(opt->json, j, [&](std::ostream& out) { print_text(out, j, opt->tensors); });
    });
}

}  // namespace sdlens::cli
