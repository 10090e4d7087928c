// MPT: the released MPT-7B config.json read as transformers' MptForCausalLM reads it, ALiBi's
// slopes (ggml's formula in the forward pass against transformers' in the test reference, for
// every head count up to 64), and Hugging Face and GGUF checkpoints run against the float64
// reference (reference_forward.hpp adds the ALiBi bias by itself), power-of-two head counts or not.
#include <cmath>
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
using test::hidden_at;
using test::relative_error;

namespace {

json mpt_7b()
{
    return {{"architectures", {"MPTForCausalLM"}},
            {"attn_config", {{"alibi", true}, {"alibi_bias_max", 8}, {"attn_impl", "torch"}, {"attn_pdrop", 0}, {"attn_type", "multihead_attention"},
                             {"attn_uses_sequence_id", false}, {"clip_qkv", nullptr}, {"prefix_lm", false}, {"qk_ln", false}, {"softmax_scale", nullptr}}},
            {"d_model", 4096}, {"emb_pdrop", 0}, {"embedding_fraction", 1.0}, {"expansion_ratio", 4}, {"init_device", "cpu"},
            {"learned_pos_emb", true}, {"logit_scale", nullptr}, {"max_seq_len", 2048}, {"model_type", "mpt"}, {"n_heads", 32},
            {"n_layers", 32}, {"no_bias", true}, {"norm_type", "low_precision_layernorm"}, {"resid_pdrop", 0},
            {"tokenizer_name", "EleutherAI/gpt-neox-20b"}, {"torch_dtype", "bfloat16"}, {"vocab_size", 50432}};
}

std::vector<int> tokens_of(const model_config& c, int T)
{
    std::vector<int> t(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) t[static_cast<std::size_t>(i)] = static_cast<int>((7u + 31u * static_cast<unsigned>(i * i)) % c.vocab_size);
    return t;
}

// float32 against float64 over two layers of d <= 96 products (see test_forward.cpp).
constexpr double tolerance = 1e-5;

void check_model(const model& m, const std::vector<int>& tokens, bool attention)
{
    test::check_against_reference(m, tokens, attention, tolerance);
}

}  // namespace

TEST_CASE("mpt: MPT-7B's config.json, and what transformers' MPT does not compute is refused")
{
    const model_config c = hf_model_config(mpt_7b(), "mpt-7b/config.json");
    CHECK(c.family == model_family::mpt);
    CHECK(c.hidden_size == 4096);
    CHECK(c.ffn_size == 16384);
    CHECK(c.num_heads == 32);
    CHECK(c.num_kv_heads == 32);
    CHECK(c.head_dim == 128);
    CHECK(c.norm == norm_kind::layer);
    CHECK(!c.bias.norm);
    CHECK(!c.bias.qkv);
    CHECK(c.activation == activation_kind::gelu_erf);
    CHECK(c.rope == rope_style::none);
    CHECK(!c.learned_positions);  // transformers' MPT has no position table: ALiBi only
    CHECK(c.alibi_bias_max == 8);
    CHECK(c.tied_embeddings);
    struct refused {
        const char* key;
        json value;
    };
    for (const refused& r : {refused{"clip_qkv", 6.0}, refused{"alibi", false}, refused{"qk_ln", true}, refused{"prefix_lm", true}}) {
        const std::string key = r.key;
        CAPTURE(key);
        json j = mpt_7b();
        j["attn_config"][key] = r.value;
        test::expect_input_error([&] { hf_model_config(j, "config.json"); }, {"config.json", key});
    }
    json j = mpt_7b();
    j["no_bias"] = false;
    test::expect_input_error([&] { hf_model_config(j, "config.json"); }, {"no_bias"});
}

TEST_CASE("mpt: ALiBi slopes, ggml's formula against transformers', every head count to 64")
{
    // Two different constructions of the same sequence: exact powers of two in double, rounded
    // once to float in the production code; 1e-7 relative is float rounding.
    for (double bias_max : {8.0, 4.0}) {
        for (int heads = 1; heads <= 64; ++heads) {
            CAPTURE(heads);
            model_config c;
            c.num_heads = heads;
            c.alibi_bias_max = bias_max;
            const std::vector<float> got = alibi_slopes(c);
            const std::vector<double> want = test::ref::hf_alibi_slopes(c);
            REQUIRE(got.size() == want.size());
            for (std::size_t h = 0; h < got.size(); ++h) CHECK(std::abs(got[h] - want[h]) <= 1e-7 * want[h]);
        }
    }
}

TEST_CASE("mpt: Hugging Face and GGUF checkpoints run as the float64 reference says")
{
    model_config six = small_config(model_family::mpt);  // 6 heads: not a power of two
    six.hidden_size = 96;
    six.num_heads = six.num_kv_heads = 6;
    six.ffn_size = 192;
    for (const model_config& c : {small_config(model_family::mpt), six}) {
        CAPTURE(c.num_heads);
        test::temp_dir dir;
        const dense_weights w = random_weights(c, 21);
        write_hf_checkpoint((dir / "hf").string(), c, w, dtype::f32);
        write_gguf_checkpoint((dir / "m.gguf").string(), c, w, dtype::f32);
        const model hf = load_model((dir / "hf").string());
        const model gg = load_model((dir / "m.gguf").string());
        CHECK(gg.config.alibi_bias_max == 8);
        const auto tokens = tokens_of(c, 24);
        for (bool attention : {true, false}) {
            CAPTURE(attention);
            check_model(hf, tokens, attention);
            check_model(gg, tokens, attention);
        }
        session s(hf);
        forward_options o;
        o.logits = forward_options::logits_mode::all;
        const auto whole = forward(hf, tokens, o);
        row_matrix<float> stepwise(static_cast<Eigen::Index>(tokens.size()), c.vocab_size);
        for (std::size_t t = 0; t < tokens.size(); ++t) stepwise.row(static_cast<Eigen::Index>(t)) = s.next(tokens[t]).transpose();
        CHECK(relative_error(stepwise.cast<double>(), whole.logits.cast<double>()) <= tolerance);
        // Without the bias the reference is another model: the comparison above can see ALiBi.
        model_config plain = hf.config;
        plain.alibi_bias_max = 0;
        const dense_weights dw = materialize(hf);
        CHECK(relative_error(test::reference_forward(plain, dw, tokens).logits, test::reference_forward(hf.config, dw, tokens).logits) > 1e-2);
    }
}
