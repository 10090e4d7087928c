// RoPE scaling (model/rope.hpp): the frequencies of each Hugging Face rope_type against values
// worked out by hand from the published formulas (the YaRN correction range, longrope's and
// YaRN's attention factors), the llama3 blend's limits, and its wiring: config.json parsing,
// the rotation the forward pass applies, and commands that do not rotate running on any type.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>
#include <sdlens/model/rope.hpp>

#include "support.hpp"

using namespace sdlens;
using nlohmann::json;

namespace {

constexpr double pi = 3.14159265358979323846;

// A Llama-shaped config.json with head_dim 128 (hidden 512, 4 heads) and the given rope_scaling.
model_config llama_with(const json& rope_scaling, std::int64_t max_positions = 131072)
{
    json j = {{"model_type", "llama"}, {"hidden_size", 512}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
              {"intermediate_size", 64}, {"vocab_size", 16}, {"rope_theta", 10000.0}, {"max_position_embeddings", max_positions},
              {"rope_scaling", rope_scaling}};
    return hf_model_config(j, "config.json");
}

double unscaled(std::int64_t i, double theta = 10000.0, double dim = 128) { return std::pow(theta, -2.0 * static_cast<double>(i) / dim); }

}  // namespace

TEST_CASE("linear and dynamic NTK scaling: the closed forms")
{
    const auto linear = rope_frequencies_for(llama_with({{"rope_type", "linear"}, {"factor", 4.0}}), 10);
    REQUIRE(linear.inverse.size() == 64);
    for (std::int64_t i : {0, 17, 63}) CHECK(linear.inverse[i] == doctest::Approx(unscaled(i) / 4).epsilon(1e-14));
    CHECK(linear.attention_factor == 1);

    // Dynamic: unscaled within the trained context, base * (f n / max - (f - 1))^(d / (d - 2)) past it.
    const model_config dyn = llama_with({{"type", "dynamic"}, {"factor", 2.0}}, 4096);
    const auto inside = rope_frequencies_for(dyn, 4096), past = rope_frequencies_for(dyn, 8192);
    for (std::int64_t i : {0, 5, 63}) {
        CHECK(inside.inverse[i] == doctest::Approx(unscaled(i)).epsilon(1e-14));
        CHECK(past.inverse[i] == doctest::Approx(unscaled(i, 10000.0 * std::pow(3.0, 128.0 / 126.0))).epsilon(1e-12));
    }
}

TEST_CASE("llama3 scaling: short wavelengths kept, long ones divided by the factor, a continuous blend between")
{
    // Llama 3.1's values (factor 8, low 1, high 4, original context 8192) with theta 500000.
    json rs = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
               {"original_max_position_embeddings", 8192}};
    model_config c = llama_with(rs);
    c.rope_theta = 500000.0;
    const auto f = rope_frequencies_for(c, 100);
    int kept = 0, divided = 0, blended = 0;
    for (std::int64_t i = 0; i < 64; ++i) {
        const double base = unscaled(i, 500000.0), wavelen = 2 * pi / base, got = f.inverse[i];
        CAPTURE(i);
        if (wavelen < 8192.0 / 4) {
            CHECK(got == base);
            ++kept;
        } else if (wavelen > 8192.0) {
            CHECK(got == doctest::Approx(base / 8).epsilon(1e-15));
            ++divided;
        } else {
            CHECK((got < base && got > base / 8));
            ++blended;
        }
        if (i > 0) CHECK(got < f.inverse[i - 1]);  // still strictly decreasing
    }
    CHECK(kept > 0);
    CHECK(divided > 0);
    CHECK(blended > 0);
}

TEST_CASE("yarn: the correction range and attention factor worked out by hand")
{
    // dim 128, theta 10000, original context 4096, beta 32 / 1: the dimension turning 32 times is
    // 128 ln(4096 / (64 pi)) / (2 ln 10000) = 20.94 -> 20; turning once, 128 ln(4096 / (2 pi)) /
    // (2 ln 10000) = 45.03 -> 46. Pairs up to 20 keep their frequency, from 46 on it is divided
    // by the factor. Attention factor 0.1 ln 4 + 1.
    const model_config c = llama_with({{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}}, 16384);
    const auto f = rope_frequencies_for(c, 10);
    for (std::int64_t i = 0; i <= 20; ++i) CHECK(f.inverse[i] == doctest::Approx(unscaled(i)).epsilon(1e-14));
    for (std::int64_t i = 46; i < 64; ++i) CHECK(f.inverse[i] == doctest::Approx(unscaled(i) / 4).epsilon(1e-14));
    // Pair 33 sits at (33 - 20) / 26 of the ramp: a blend with that share of the divided frequency.
    const double share = 13.0 / 26.0;
    CHECK(f.inverse[33] == doctest::Approx(unscaled(33) * (1 - share) + unscaled(33) / 4 * share).epsilon(1e-14));
    CHECK(f.attention_factor == doctest::Approx(1 + 0.1 * std::log(4.0)).epsilon(1e-15));
    // An explicit attention factor wins.
    CHECK(rope_frequencies_for(llama_with({{"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", 0.75}}), 10).attention_factor == 0.75);
}

TEST_CASE("longrope (and its old name su): short factors within the original context, long ones past it")
{
    // Phi-3-mini-128k's layout: original_max_position_embeddings at the top level, 131072 / 4096
    // = 32, attention factor sqrt(1 + ln 32 / ln 4096) = sqrt(1 + 5/12).
    std::vector<double> shorts(64), longs(64);
    for (int i = 0; i < 64; ++i) shorts[i] = 1 + 0.01 * i, longs[i] = 2 + 0.5 * i;
    for (const char* name : {"longrope", "su"}) {
        CAPTURE(name);
        json j = {{"model_type", "phi3"}, {"hidden_size", 512}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                  {"intermediate_size", 64}, {"vocab_size", 16}, {"max_position_embeddings", 131072},
                  {"original_max_position_embeddings", 4096},
                  {"rope_scaling", {{"type", name}, {"short_factor", shorts}, {"long_factor", longs}}}};
        const model_config c = hf_model_config(j, "config.json");
        const auto within = rope_frequencies_for(c, 4096), past = rope_frequencies_for(c, 4097);
        for (std::int64_t i : {0, 31, 63}) {
            CHECK(within.inverse[i] == doctest::Approx(unscaled(i) / shorts[i]).epsilon(1e-14));
            CHECK(past.inverse[i] == doctest::Approx(unscaled(i) / longs[i]).epsilon(1e-14));
        }
        CHECK(within.attention_factor == doctest::Approx(std::sqrt(1 + 5.0 / 12.0)).epsilon(1e-15));
    }
    // A factor list of the wrong length names the key and the length it needs.
    json bad = {{"rope_type", "longrope"}, {"short_factor", std::vector<double>(3, 1.0)}, {"long_factor", longs}};
    try {
        llama_with(bad);
        FAIL("a short_factor of 3 values was accepted");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).find("short_factor") != std::string::npos);
        CHECK(std::string(e.what()).find("64") != std::string::npos);
    }
}

TEST_CASE("apply_rope turns by position times the scaled frequency and carries the attention factor")
{
    model_config c = llama_with({{"rope_type", "linear"}, {"factor", 2.0}});
    const auto scaled = rope_frequencies_for(c, 8);
    c.rope_scaling = {};
    const auto plain = rope_frequencies_for(c, 8);
    row_matrix<float> x = row_matrix<float>::Random(1, 512), at2 = x, at1 = x;
    // Linear factor 2 at position 2 is the unscaled rotation at position 1.
    apply_rope(at2, 4, 128, 2, rope_style::half, 128, scaled);
    apply_rope(at1, 4, 128, 1, rope_style::half, 128, plain);
    CHECK((at2 - at1).cwiseAbs().maxCoeff() < 1e-6f);  // float rounding of cos and sin
    // At position 0 nothing turns, but the attention factor scales q and k as in HF.
    rope_frequencies yarn = plain;
    yarn.attention_factor = 1.25;
    row_matrix<float> y = x;
    apply_rope(y, 4, 128, 0, rope_style::half, 128, yarn);
    CHECK((y - 1.25f * x).cwiseAbs().maxCoeff() < 1e-6f);
}

TEST_CASE("forward pass: llama3 scaling changes what later positions see, not position 0")
{
    model_config c = small_config(model_family::llama);
    const dense_weights w = random_weights(c, 11);
    sdlens::test::temp_dir plain_dir, scaled_dir;
    write_hf_checkpoint(plain_dir.path().string(), c, w, dtype::f32);
    write_hf_checkpoint(scaled_dir.path().string(), c, w, dtype::f32);
    const auto config_file = scaled_dir / "config.json";
    json j;
    std::ifstream(config_file) >> j;
    // Original context 8 with this model's head size: most frequencies change.
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8}};
    std::ofstream(config_file) << j.dump();
    const model plain = load_model(plain_dir.path().string()), scaled = load_model(scaled_dir.path().string());
    REQUIRE(scaled.config.rope_scaling.kind == rope_scaling_kind::llama3);
    const std::vector<int> tokens{1, 5, 9, 3, 7};
    forward_options o;
    o.logits = forward_options::logits_mode::all;
    const auto a = forward(plain, tokens, o), b = forward(scaled, tokens, o);
    CHECK((a.logits.row(0) - b.logits.row(0)).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((a.logits.row(4) - b.logits.row(4)).cwiseAbs().maxCoeff() > 1e-4f);
}

TEST_CASE("GGUF: llama3 stored as rope_freqs divisors and linear as rope.scaling give the Hugging Face rotation back")
{
    // The writer stores llama3's blend as llama.cpp's converter does (unscaled / scaled frequency
    // per pair); read back, the divisors path must rotate as the llama3 path does.
    for (const char* type : {"llama3", "linear"}) {
        CAPTURE(type);
        model_config c = small_config(model_family::llama);
        c.rope_scaling.name = type;
        if (std::string(type) == "llama3") {
            c.rope_scaling.kind = rope_scaling_kind::llama3;
            c.rope_scaling.factor = 8, c.rope_scaling.low_freq_factor = 1, c.rope_scaling.high_freq_factor = 4;
            c.rope_scaling.original_max_positions = 8;
        } else {
            c.rope_scaling.kind = rope_scaling_kind::linear;
            c.rope_scaling.factor = 3;
        }
        const dense_weights w = random_weights(c, 12);
        sdlens::test::temp_dir dir;
        const std::string path = (dir / "m.gguf").string();
        write_gguf_checkpoint(path, c, w, dtype::f32);
        const model g = load_model(path);
        CHECK(g.config.rope_scaling.kind == (std::string(type) == "llama3" ? rope_scaling_kind::divisors : rope_scaling_kind::linear));
        const auto want = rope_frequencies_for(c, 16), got = rope_frequencies_for(g.config, 16);
        REQUIRE(got.inverse.size() == want.inverse.size());
        // The divisors are stored in f32: 2^-24 relative.
        for (std::size_t i = 0; i < want.inverse.size(); ++i) CHECK(got.inverse[i] == doctest::Approx(want.inverse[i]).epsilon(1e-7));
    }
    // Types llama.cpp stores its own way are refused by the writer, not written unscaled.
    model_config c = small_config(model_family::llama);
    c.rope_scaling.kind = rope_scaling_kind::yarn;
    c.rope_scaling.factor = 4;
    sdlens::test::temp_dir dir;
    CHECK_THROWS_AS(write_gguf_checkpoint((dir / "y.gguf").string(), c, random_weights(c, 1), dtype::f32), input_error);
}

#ifdef SDLENS_CLI
TEST_CASE("a RoPE type sdlens does not implement: the linearization runs, the forward pass says why it cannot")
{
    sdlens::test::temp_dir dir;
    const std::string model = (dir / "m").string();
    REQUIRE(sdlens::test::run_cli("plant --family llama --out '" + model + "'").exit_code == 0);
    const auto config_file = dir / "m" / "config.json";
    json j;
    std::ifstream(config_file) >> j;
    j["rope_scaling"] = {{"rope_type", "mrope"}, {"mrope_section", {8, 4, 4}}};
    std::ofstream(config_file) << j.dump();
    CHECK(sdlens::test::run_cli("directions '" + model + "' --k 1").exit_code == 0);
    const auto fwd = sdlens::test::run_cli("forward '" + model + "' --tokens 1,2,3");
    CHECK(fwd.exit_code == 2);
    CHECK(fwd.err.find("mrope") != std::string::npos);
    CHECK(std::count(fwd.err.begin(), fwd.err.end(), '\n') == 1);
}
#endif
