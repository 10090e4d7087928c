// sdlens plant --out DIR: writes a random model with planted singular defects as a real
// checkpoint (Hugging Face directory, or GGUF with --gguf) and DIR/ground_truth.json, the
// explosion and decay layers, the defect and trigger directions and the trigger tokens that the
// analyses must find (see include/sdlens/model/plant.hpp for how each property is built).
// Either checkpoint carries a tokenizer (include/sdlens/model/tokenizer_writer.hpp) whose "."
// is the delimiter token, so text runs through the model and every sentence ends in a trigger.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/plant.hpp>
#include <sdlens/model/tokenizer_writer.hpp>

#include "cli.hpp"

namespace sdlens::cli {

namespace {

const std::map<std::string, model_family>& plant_families()
{
    static const std::map<std::string, model_family> m{{"llama", model_family::llama}, {"qwen2", model_family::qwen2},
                                                       {"phi3", model_family::phi3},   {"gpt2", model_family::gpt2},
                                                       {"neox", model_family::neox},   {"falcon", model_family::falcon},
                                                       {"mpt", model_family::mpt}};
    return m;
}

const std::map<std::string, dtype>& plant_dtypes()
{
    static const std::map<std::string, dtype> m{
        {"f32", dtype::f32}, {"f16", dtype::f16}, {"bf16", dtype::bf16}, {"q8_0", dtype::q8_0}};
    return m;
}

}  // namespace

// Writes the planted model and its ground truth; returns the ground truth JSON (with "model",
// the path load_model takes). Shared with `sdlens demo`.
nlohmann::json write_planted_model(const planted_model& p, const std::string& out_dir, dtype type, bool gguf)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) fail_input(out_dir, "cannot create directory: " + ec.message());
    std::string model_path = out_dir;
    if (gguf) {
        model_path = (fs::path(out_dir) / "model.gguf").string();
        write_gguf_checkpoint(model_path, p.config, p.weights, type, p.truth.delimiter_token);
    } else {
        write_hf_checkpoint(out_dir, p.config, p.weights, type);
        write_hf_tokenizer(out_dir, make_placeholder_vocabulary(p.config, p.truth.delimiter_token));
    }
    nlohmann::json j = to_json(p.truth);
    j["model"] = model_path;
    j["format"] = gguf ? "gguf" : "safetensors";
    j["dtype"] = dtype_name(type);
    j["config"] = to_json(p.config);
    j["config"]["dtype"] = dtype_name(type);
    const std::string truth_path = (fs::path(out_dir) / "ground_truth.json").string();
    std::ofstream f(truth_path, std::ios::trunc);
    f << j.dump(2) << '\n';
    f.close();
    if (!f) fail_input(truth_path, "write failed");
    return j;
}

void register_plant(CLI::App& app)
{
    struct options {
        std::string family = "llama", dtype_name = "f32", out;
        plant_sizes sizes;
        plant_options plant;
        bool gguf = false, json = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("plant", "Write a random model with planted singular defects and its ground truth");
    cmd->add_option("--family", opt->family,
                    "Architecture: llama, qwen2, phi3, gpt2, neox, falcon (new decoder: grouped key/value heads, two norms) or mpt (ALiBi)")
        ->capture_default_str()
        ->check(CLI::IsMember(plant_families()));
    cmd->add_option("--hidden", opt->sizes.hidden, "Hidden size d (multiple of 4; default 64)");
    cmd->add_option("--layers", opt->sizes.layers, "Number of layers")->capture_default_str();
    cmd->add_option("--heads", opt->sizes.heads, "Attention heads (default 4)");
    cmd->add_option("--kv-heads", opt->sizes.kv_heads, "Key/value heads (default: half the heads for llama, qwen2, phi3, falcon)");
    cmd->add_option("--ffn", opt->sizes.ffn, "FFN inner size (default 1.5 d)");
    cmd->add_option("--vocab", opt->sizes.vocab, "Vocabulary size (default 128)");
    cmd->add_option("--explode", opt->plant.explosion_layer,
                    "Explosion layer E, 1-based (default: the first layer at which any token at position 0 can trigger: "
                    "2 with learned positions, else 3, or 4 with parallel blocks)");
    cmd->add_option("--decay", opt->plant.decay_layer, "Decay layer D, 1-based, E < D <= layers (default: the last layer)");
    cmd->add_option("--seed", opt->plant.seed, "Seed of the random weights and planted directions")->capture_default_str();
    cmd->add_option("--dtype", opt->dtype_name, "Weight dtype: f32, f16, bf16 (q8_0 with --gguf)")
        ->capture_default_str()
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
    cmd->add_flag("--gguf", opt->gguf, "Write DIR/model.gguf (llama.cpp loads it) instead of a Hugging Face directory");
    cmd->add_option("--out", opt->out, "Output directory")->required();
    cmd->add_flag("--json", opt->json, "Print the ground truth as JSON");
    cmd->callback([opt] {
        const model_family family = plant_families().at(opt->family);
        const dtype type = plant_dtypes().at(opt->dtype_name);
        if (type == dtype::q8_0 && !opt->gguf) fail_input("--dtype", "q8_0 is written only into GGUF files (add --gguf)");
        const model_config c = plant_model_config(family, opt->sizes);
        if (!is_gated(c.activation) && !c.bias.ffn && type != dtype::f32)
            fail_input("--dtype", std::string("a planted ") + opt->family + " model (GELU without FFN biases) keeps its defects only in f32: "
                       "rounded random weights leak into the planted neurons' linear response (ordinary tokens reach ~3% of the "
                       "explosion norm in bf16)");
        if (opt->plant.decay_layer < 0) fail_input("--decay", "layers are 1-based");
        if (opt->plant.explosion_layer < 0) fail_input("--explode", "layers are 1-based");
        const planted_model p = plant_random_model(c, opt->plant);
        const nlohmann::json j = write_planted_model(p, opt->out, type, opt->gguf);
        emit(opt->json, j, [&](std::ostream& out) {
            out << "wrote " << j["model"].get<std::string>() << " (" << opt->family << ", " << c.num_layers << " layers, hidden "
                << c.hidden_size << ", " << opt->dtype_name << ")\n"
                << "  explosion at layer " << p.truth.explosion_layer << ", decay at layer " << p.truth.decay_layer
                << " (1-based); trigger tokens";
            for (auto id : p.truth.trigger_tokens) out << ' ' << id;
            if (p.truth.position0_triggers) out << " and every token at position 0";
            else out << " (position 0 triggers from --explode " << first_initial_explosion_layer(c) << " on, where it fits)";
            out << "\n  ground truth: " << (std::filesystem::path(opt->out) / "ground_truth.json").string() << "\n";
        });
    });
}

}  // namespace sdlens::cli
