// sdlens random --out DIR: writes a checkpoint with seeded random weights (model/random_model.hpp)
// of the shape a real config.json describes (--config), or of a family's small test shape
// (--family), as a Hugging Face directory or a GGUF file. What it is for: running every command
// on the exact shapes and options of a model whose weights cannot be had here (Llama-3.2-1B,
// Phi-3-mini-128k, Gemma 3), with --layers to keep the file small; and seed files for the fuzzers.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/random_model.hpp>
#include <sdlens/model/tokenizer_writer.hpp>

#include "cli.hpp"

namespace sdlens::cli {

namespace {

const std::map<std::string, model_family>& random_families()
{
    static const std::map<std::string, model_family> m{
        {"llama", model_family::llama}, {"mistral", model_family::mistral}, {"qwen2", model_family::qwen2},
        {"phi3", model_family::phi3},   {"gpt2", model_family::gpt2},       {"neox", model_family::neox},
        {"falcon", model_family::falcon}, {"gemma", model_family::gemma},   {"gemma2", model_family::gemma2},
        {"gemma3", model_family::gemma3}, {"mpt", model_family::mpt},       {"bert", model_family::bert},
        {"roberta", model_family::roberta}, {"distilbert", model_family::distilbert}};
    return m;
}

dtype dtype_named(const std::string& name)
{
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k})
        if (name == dtype_name(t)) return t;
    fail_input("--dtype", "unknown dtype '" + name + "'");
}

model_config config_from_file(const std::string& path)
{
    std::ifstream in(path);
    if (!in) fail_input(path, "cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail_input(path, std::string("not JSON: ") + e.what());
    }
    return hf_model_config(j, path);
}

}  // namespace

void register_random(CLI::App& app)
{
    struct options {
        std::string config, family, dtype_name = "bf16", out;
        std::int64_t layers = 0, vocab = 0;
        std::uint64_t seed = 1;
        bool gguf = false, json = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("random", "Write a checkpoint with seeded random weights of a config.json's (or a family's) shape");
    auto* config = cmd->add_option("--config", opt->config, "A Hugging Face config.json whose shape and options to use");
    std::string names;
    for (const auto& [name, f] : random_families()) names += (names.empty() ? "" : ", ") + name;
    cmd->add_option("--family", opt->family, "Or a family's small test shape: " + names)
        ->check(CLI::IsMember(random_families()))
        ->excludes(config);
    cmd->add_option("--layers", opt->layers, "Keep only the first N layers (default: all the config has)");
    cmd->add_option("--vocab", opt->vocab, "Shrink the vocabulary to N tokens (the embedding and head; the layers keep their shape)");
    cmd->add_option("--seed", opt->seed, "Seed of the weights")->capture_default_str();
    cmd->add_option("--dtype", opt->dtype_name, "Weight dtype: f32, f16, bf16 (q8_0, q4_0, q4_k, q6_k with --gguf)")
        ->capture_default_str()
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"}));
    cmd->add_flag("--gguf", opt->gguf, "Write DIR/model.gguf instead of a Hugging Face directory");
    cmd->add_option("--out", opt->out, "Output directory")->required();
    cmd->add_flag("--json", opt->json, "Print what was written as JSON");
    cmd->callback([opt] {
        if (opt->config.empty() && opt->family.empty()) fail_input("random", "give --config FILE or --family NAME");
        model_config c = opt->config.empty() ? small_config(random_families().at(opt->family)) : config_from_file(opt->config);
        if (opt->layers < 0) fail_input("--layers", std::to_string(opt->layers) + " is negative");
        if (opt->layers > c.num_layers)
            fail_input("--layers", std::to_string(opt->layers) + " exceeds the config's " + std::to_string(c.num_layers) + " layers");
        if (opt->layers > 0) {
            c.num_layers = opt->layers;
            std::vector<int> kept;
            for (int l : c.sliding_window_layers)
                if (l <= c.num_layers) kept.push_back(l);
            const bool some = !c.sliding_window_layers.empty();
            c.sliding_window_layers = kept;
            if (some && kept.empty()) c.sliding_window = 0;
            if (static_cast<std::int64_t>(kept.size()) == c.num_layers) c.sliding_window_layers.clear();
        }
        if (opt->vocab < 0 || opt->vocab > c.vocab_size)
            fail_input("--vocab", std::to_string(opt->vocab) + " is not in 1.." + std::to_string(c.vocab_size));
        if (opt->vocab > 0) {
            if (opt->vocab < 16) fail_input("--vocab", "at least 16 tokens are needed");
            c.vocab_size = opt->vocab;
            if (c.bos_token >= c.vocab_size) c.bos_token = -1;
            if (c.eos_token >= c.vocab_size) c.eos_token = -1;
        }
        const dtype type = dtype_named(opt->dtype_name);
        if (!opt->gguf && type != dtype::f32 && type != dtype::f16 && type != dtype::bf16)
            fail_input("--dtype", opt->dtype_name + " is written only into GGUF files (add --gguf)");
        namespace fs = std::filesystem;
        std::error_code ec;
        fs::create_directories(opt->out, ec);
        if (ec) fail_input(opt->out, "cannot create directory: " + ec.message());
        const dense_weights w = random_weights(c, opt->seed);
        std::string path = opt->out;
        if (opt->gguf) {
            path = (fs::path(opt->out) / "model.gguf").string();
            write_gguf_checkpoint(path, c, w, type);
        } else {
            write_hf_checkpoint(opt->out, c, w, type);
            write_hf_tokenizer(opt->out, make_placeholder_vocabulary(c));
        }
        nlohmann::json j = {{"model", path}, {"format", opt->gguf ? "gguf" : "safetensors"}, {"dtype", opt->dtype_name},
                            {"seed", opt->seed}, {"config", to_json(c)}};
        emit(opt->json, j, [&](std::ostream& out) {
            out << "wrote " << path << " (" << family_name(c.family) << ", " << c.num_layers << " layers, hidden " << c.hidden_size
                << ", " << opt->dtype_name << ", random weights, seed " << opt->seed << ")\n";
        });
    });
}

}  // namespace sdlens::cli
