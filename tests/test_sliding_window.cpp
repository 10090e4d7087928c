// Sliding-window attention: config.json as transformers reads it (Mistral, Phi-3, Qwen2's
// use_sliding_window / max_window_layers / layer_types), the window a GGUF carries, and the
// forward pass against the float64 reference (reference_forward.hpp, which masks by itself) on
// sequences several windows long: whole, token by token, and as independent sequences.
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

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

using namespace sdlens;
using nlohmann::json;

namespace {

json llama_like(const std::string& type, int layers = 4)
{
    return {{"model_type", type},       {"hidden_size", 64},   {"num_hidden_layers", layers}, {"num_attention_heads", 4},
            {"intermediate_size", 96},  {"vocab_size", 32},    {"max_position_embeddings", 64}};
}

using test::hidden_at;
using test::relative_error;

}  // namespace

TEST_CASE("sliding windows in config.json, as transformers reads them")
{
    json j = llama_like("mistral");
    CHECK(hf_model_config(j, "c").sliding_window == 4096);  // MistralConfig's default
    j["sliding_window"] = nullptr;
    CHECK(hf_model_config(j, "c").sliding_window == 0);
    j["sliding_window"] = 16;
    const model_config m = hf_model_config(j, "c");
    CHECK(m.sliding_window == 16);
    CHECK(m.sliding_window_layers.empty());
    CHECK(m.attention_window(1) == 16);
    CHECK(m.attention_window(4) == 16);

    json p = llama_like("phi3");
    CHECK(hf_model_config(p, "c").sliding_window == 0);  // Phi3Config's default: none
    p["sliding_window"] = 2047;                          // Phi-3-mini-4k-instruct
    CHECK(hf_model_config(p, "c").sliding_window == 2047);

    json q = llama_like("qwen2");
    q["sliding_window"] = 8;
    q["max_window_layers"] = 2;
    CHECK(hf_model_config(q, "c").sliding_window == 0);  // use_sliding_window absent: false
    q["use_sliding_window"] = true;
    const model_config qc = hf_model_config(q, "c");
    CHECK(qc.sliding_window == 8);
    CHECK(qc.sliding_window_layers == std::vector<int>{3, 4});  // 0-based indices >= max_window_layers
    CHECK(qc.attention_window(2) == 0);
    CHECK(qc.attention_window(3) == 8);
    q["max_window_layers"] = 0;
    CHECK(hf_model_config(q, "c").sliding_window_layers.empty());  // every layer
    q["max_window_layers"] = 4;
    CHECK(hf_model_config(q, "c").sliding_window == 0);  // no layer left
    q.erase("max_window_layers");
    CHECK(hf_model_config(q, "c").sliding_window == 0);  // Qwen2Config's default 28 >= 4 layers
    q["layer_types"] = {"full_attention", "sliding_attention", "full_attention", "sliding_attention"};
    CHECK(hf_model_config(q, "c").sliding_window_layers == std::vector<int>{2, 4});
    q["layer_types"] = {"full_attention", "chunked_attention", "full_attention", "full_attention"};
    CHECK_THROWS_AS(hf_model_config(q, "c"), input_error);
    q["layer_types"] = {"full_attention"};
    CHECK_THROWS_AS(hf_model_config(q, "c"), input_error);
    q.erase("layer_types");
    q["max_window_layers"] = -1;
    CHECK_THROWS_AS(hf_model_config(q, "c"), input_error);
    q["max_window_layers"] = 1;
    q["sliding_window"] = 0;
    CHECK_THROWS_AS(hf_model_config(q, "c"), input_error);
    // Found by fuzz_hf_config: a billion layers made a billion-entry layer list before any tensor
    // was read; the count is refused first.
    q["sliding_window"] = 8;
    q["num_hidden_layers"] = 1000000000;
    CHECK_THROWS_WITH_AS(hf_model_config(q, "c"), doctest::Contains("impossibly large"), input_error);
}

TEST_CASE("sliding windows: the forward pass matches the float64 reference over several windows")
{
    struct variant {
        model_family family;
        std::int64_t window;
        std::vector<int> layers;
    };
    // 17 tokens, 3 layers: windows of 3 to 5 slide over most of the sequence; 64 covers it.
    const variant variants[] = {{model_family::mistral, 3, {}}, {model_family::qwen2, 5, {2, 3}}, {model_family::qwen2, 4, {1}},
                                {model_family::phi3, 4, {}}, {model_family::mistral, 64, {}}};
    for (const variant& v : variants) {
        CAPTURE(family_name(v.family));
        CAPTURE(v.window);
        model_config c = small_config(v.family);
        c.num_layers = 3;
        c.sliding_window = v.window;
        c.sliding_window_layers = v.layers;
        test::temp_dir dir;
        write_hf_checkpoint(dir.path().string(), c, random_weights(c, 5), dtype::f32);
        const model m = load_model(dir.path().string());
        REQUIRE(m.config.sliding_window == v.window);  // through config.json
        REQUIRE(m.config.sliding_window_layers == v.layers);
        const dense_weights dense = materialize(m);
        std::vector<int> tokens;
        for (int t = 0; t < 17; ++t) tokens.push_back((5 + 7 * t) % static_cast<int>(c.vocab_size));

        forward_options o;
        o.hidden_states = true;
        o.logits = forward_options::logits_mode::all;
        const forward_result r = forward(m, tokens, o);
        const auto ref = test::reference_forward(m.config, dense, tokens);
        // The float32 tolerance of test_forward.cpp: products of <= 96 terms, a few layers.
        for (std::size_t l = 0; l <= static_cast<std::size_t>(c.num_layers); ++l) {
            CAPTURE(l);
            CHECK(relative_error(hidden_at(r, l), ref.hidden[l]) <= 1e-5);
        }
        CHECK(relative_error(r.logits.cast<double>(), ref.logits) <= 1e-5);

        // The window is what changes the result (or, covering the sequence, changes nothing).
        model_config full = m.config;
        full.sliding_window = 0;
        const auto unwindowed = test::reference_forward(full, dense, tokens);
        if (v.window < 17) CHECK(relative_error(unwindowed.logits, ref.logits) > 1e-3);
        else CHECK(relative_error(unwindowed.logits, ref.logits) < 1e-12);

        // Token by token through the KV cache, and as two independent sequences of 17.
        session s(m);
        row_matrix<float> stepwise(tokens.size(), c.vocab_size);
        for (std::size_t t = 0; t < tokens.size(); ++t) stepwise.row(t) = s.next(tokens[t]).transpose();
        CHECK(relative_error(stepwise.cast<double>(), ref.logits) <= 1e-5);
        std::vector<int> twice = tokens;
        twice.insert(twice.end(), tokens.begin(), tokens.end());
        forward_options seq;
        seq.logits = forward_options::logits_mode::all;
        seq.sequence_length = 17;
        const forward_result both = forward(m, twice, seq);
        CHECK(relative_error(both.logits.bottomRows(17).cast<double>(), ref.logits) <= 1e-5);
    }
}

TEST_CASE("sliding windows: GGUF carries Phi-3's, and writers refuse windows their format cannot say")
{
    model_config c = small_config(model_family::phi3);
    c.sliding_window = 6;
    test::temp_dir dir;
    const std::string path = (dir.path() / "m.gguf").string();
    write_gguf_checkpoint(path, c, random_weights(c, 3), dtype::f32);
    CHECK(load_model(path).config.sliding_window == 6);

    model_config l = small_config(model_family::llama);
    l.sliding_window = 6;
    CHECK_THROWS_AS(write_hf_checkpoint((dir.path() / "l").string(), l, random_weights(l, 3), dtype::f32), input_error);
    CHECK_THROWS_AS(write_gguf_checkpoint((dir.path() / "l.gguf").string(), l, random_weights(l, 3), dtype::f32), input_error);
    model_config m = small_config(model_family::mistral);
    m.sliding_window = 6;
    m.sliding_window_layers = {1};  // Mistral's config.json has one window for every layer
    CHECK_THROWS_AS(write_hf_checkpoint((dir.path() / "m").string(), m, random_weights(m, 3), dtype::f32), input_error);
}
