// Today's checkpoints by their config.json (tests/configs/, written from the public model cards):
// Llama-3.2-1B (llama3 RoPE scaling, tied head, GQA 32/8) and Phi-3-mini-128k (longrope with
// short/long factors, a sliding window key) load with every option read; `sdlens random` writes
// random weights of exactly those layer shapes, and `sdlens directions` runs on them. Gemma 2's
// family goes the same way through the CLI.
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/model/hf_config.hpp>

#include "support.hpp"

using namespace sdlens;
using nlohmann::json;

namespace {

std::filesystem::path config_file(const char* name) { return std::filesystem::path(SDLENS_SOURCE_DIR) / "tests" / "configs" / name; }

json read(const std::filesystem::path& p)
{
    std::ifstream in(p);
    REQUIRE(in);
    return json::parse(in);
}

}  // namespace

TEST_CASE("real configs: Llama-3.2-1B and Phi-3-mini-128k load with their RoPE scaling")
{
    const auto llama_path = config_file("llama-3.2-1b.json");
    const model_config l = hf_model_config(read(llama_path), llama_path.string());
    CHECK(l.family == model_family::llama);
    CHECK(l.hidden_size == 2048);
    CHECK(l.num_layers == 16);
    CHECK(l.num_heads == 32);
    CHECK(l.num_kv_heads == 8);
    CHECK(l.head_dim == 64);
    CHECK(l.ffn_size == 8192);
    CHECK(l.vocab_size == 128256);
    CHECK(l.tied_embeddings);
    CHECK(l.rope_theta == 500000.0);
    CHECK(l.rope_scaling.kind == rope_scaling_kind::llama3);
    CHECK(l.rope_scaling.factor == 32);
    CHECK(l.rope_scaling.original_max_positions == 8192);

    const auto phi_path = config_file("phi-3-mini-128k-instruct.json");
    const model_config p = hf_model_config(read(phi_path), phi_path.string());
    CHECK(p.family == model_family::phi3);
    CHECK(p.hidden_size == 3072);
    CHECK(p.head_dim == 96);
    CHECK(p.num_kv_heads == 32);
    CHECK(p.rope_scaling.kind == rope_scaling_kind::longrope);
    CHECK(p.rope_scaling.name == "longrope");
    CHECK(p.rope_scaling.original_max_positions == 4096);
    CHECK(p.rope_scaling.short_factor.size() == 48);
    CHECK(p.rope_scaling.long_factor.size() == 48);
    CHECK(p.sliding_window == 262144);
    CHECK(!p.tied_embeddings);
}

#ifdef SDLENS_CLI
TEST_CASE("real configs: sdlens random writes their layer shapes and directions runs on them")
{
    using test::run_cli;
    for (const char* name : {"llama-3.2-1b.json", "phi-3-mini-128k-instruct.json"}) {
        CAPTURE(name);
        test::temp_dir tmp;
        const auto dir = (tmp / "m").string();
        // One layer, a vocabulary of 512: the layer is the released shape, the file ~0.1-0.2 GB.
        const auto w = run_cli("random --config \"" + config_file(name).string() + "\" --layers 1 --vocab 512 --out \"" + dir + "\" --json");
        REQUIRE(w.exit_code == 0);
        const json written = json::parse(w.out);
        const json config = read(config_file(name));
        CHECK(written["config"]["hidden_size"] == config["hidden_size"]);
        CHECK(written["config"]["ffn_size"] == config["intermediate_size"]);
        CHECK(written["config"]["num_kv_heads"] == config["num_key_value_heads"]);
        CHECK(written["config"]["num_layers"] == 1);
        CHECK(written["config"]["rope_scaling"]["type"] != nullptr);  // written back, read again
        const auto d = run_cli("directions \"" + dir + "\" --k 1 --vectors --json");
        CAPTURE(d.err);
        REQUIRE(d.exit_code == 0);
        const json j = json::parse(d.out);
        REQUIRE(j["layers"].size() == 1);
        CHECK(j["layers"][0]["sigma"][0].get<double>() > 0);
        CHECK(j["layers"][0]["u"].size() == config["hidden_size"].get<std::size_t>());
    }
}

TEST_CASE("real configs: Gemma 2 and 3 through the CLI: random, forward, directions")
{
    using test::run_cli;
    for (const char* family : {"gemma", "gemma2", "gemma3"}) {
        CAPTURE(family);
        test::temp_dir tmp;
        for (const char* format : {"", " --gguf"}) {
            CAPTURE(format);
            const auto dir = (tmp / (std::string("m") + (format[0] ? "g" : "h"))).string();
            REQUIRE(run_cli(std::string("random --family ") + family + format + " --dtype f32 --out \"" + dir + "\"").exit_code == 0);
            const std::string model = format[0] ? dir + "/model.gguf" : dir;
            const auto f = run_cli("forward \"" + model + "\" --text \"a b c d e f g h i j k l\" --json");
            CAPTURE(f.err);
            CHECK(f.exit_code == 0);
            const auto d = run_cli("directions \"" + model + "\" --k 1 --json");
            CAPTURE(d.err);
            REQUIRE(d.exit_code == 0);
            CHECK(json::parse(d.out)["layers"].size() == (std::string(family) == "gemma3" ? 6u : 2u));
        }
    }
    const auto refused = run_cli("plant --family gemma2 --out x");
    CHECK(refused.exit_code == 2);
}
#endif
