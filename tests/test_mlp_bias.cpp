// Llama variants with mlp_bias (biased gate, up and down projections): config.json, the
// Hugging Face and GGUF tensor layouts, the forward pass against the float64 reference, and the
// linearization, which does not implement biased gated FFNs and says so.
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/linearize/ffn_linearization.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

using namespace sdlens;

namespace {

model_config biased_llama()
{
    model_config c = small_config(model_family::llama);
    c.bias.ffn = true;
    return c;
}

using test::relative_error;

void check_forward(const model& m)
{
    const dense_weights dense = materialize(m);
    REQUIRE(dense.layers[0].b_gate.size() == m.config.ffn_size);
    REQUIRE(dense.layers[0].b_up.size() == m.config.ffn_size);
    REQUIRE(dense.layers[0].b_down.size() == m.config.hidden_size);
    std::vector<int> tokens;
    for (int t = 0; t < 9; ++t) tokens.push_back((3 + 5 * t) % static_cast<int>(m.config.vocab_size));
    forward_options o;
    o.logits = forward_options::logits_mode::all;
    const forward_result r = forward(m, tokens, o);
    const auto ref = test::reference_forward(m.config, dense, tokens);
    // float32 products of <= 96 terms over two layers (test_forward.cpp's bound).
    CHECK(relative_error(r.logits.cast<double>(), ref.logits) <= 1e-5);
    // The biases matter: without the gate's the reference moves well past that bound.
    dense_weights no_gate_bias = dense;
    for (auto& l : no_gate_bias.layers) l.b_gate.resize(0);
    CHECK(relative_error(test::reference_forward(m.config, no_gate_bias, tokens).logits, ref.logits) > 1e-3);
}

}  // namespace

TEST_CASE("mlp_bias: config.json turns on the FFN biases of a Llama")
{
    nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                        {"intermediate_size", 96}, {"vocab_size", 32}};
    CHECK_FALSE(hf_model_config(j, "c").bias.ffn);
    j["mlp_bias"] = true;
    CHECK(hf_model_config(j, "c").bias.ffn);
}

TEST_CASE("mlp_bias: Hugging Face and GGUF checkpoints load their biases and the forward pass uses them")
{
    const model_config c = biased_llama();
    const dense_weights w = random_weights(c, 9);
    test::temp_dir dir;
    write_hf_checkpoint((dir.path() / "hf").string(), c, w, dtype::f32);
    const model hf = load_model((dir.path() / "hf").string());
    CHECK(hf.config.bias.ffn);
    check_forward(hf);
    write_gguf_checkpoint((dir.path() / "m.gguf").string(), c, w, dtype::f32);
    const model gg = load_model((dir.path() / "m.gguf").string());
    check_forward(gg);
    // The same biases through both layouts.
    CHECK((to_dense(gg.layers[1].b_gate) - to_dense(hf.layers[1].b_gate)).norm() == 0.0f);
}

TEST_CASE("mlp_bias: the exact linearization refuses a biased gated FFN instead of dropping its biases")
{
    const model_config c = biased_llama();
    test::temp_dir dir;
    write_hf_checkpoint(dir.path().string(), c, random_weights(c, 2), dtype::f32);
    const model m = load_model(dir.path().string());
    CHECK_THROWS_WITH_AS(exact_ffn_row_scales(m.config, m.layers[0]), doctest::Contains("mlp_bias"), input_error);
#ifdef SDLENS_CLI
    const auto r = test::run_cli("directions '" + dir.path().string() + "'");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("mlp_bias") != std::string::npos);
#endif
}
