#pragma once
// Tiny but complete models of every family, with deterministic random weights: what the tests
// write to disk, run forward and plant defects into. The generator is spelled out (mt19937_64,
// whose sequence the standard fixes, and Box-Muller) because std::normal_distribution differs
// between standard libraries, and the same seed must give the same model everywhere (up to the
// last-bit rounding of libm's log, sin and cos).
#include <cmath>
#include <cstdint>
#include <random>

#include "sdlens/model/config.hpp"
#include "sdlens/model/dense_weights.hpp"

namespace sdlens {

// Falcon comes in two layouts: the new decoder (Falcon-40B/180B: grouped key/value heads, two
// norms per parallel block) and the original one (Falcon-7B: multi-query, one shared norm).
enum class falcon_variant { new_decoder, multi_query };

// d = 64, 2 layers, 4 heads of 16, 2 key/value heads where the family has GQA, ffn 96, vocab 128,
// 64 positions; each family's own norms, activation, biases, rotary and tying conventions.
// Gemma: one key/value head of 32 (as Gemma-2B: heads wider than d / h). Gemma 2: sliding window
// 8 in layer 1, soft caps small enough to bend scores and logits of random weights. Gemma 3: 6 layers (five sliding, one global, as its pattern),
// q/k norms, linear RoPE scaling 8 on the global layer only. MPT: ALiBi (bias max 8), LayerNorm
// without bias, no biases anywhere.
inline model_config small_config(model_family f, falcon_variant falcon = falcon_variant::new_decoder)
{
    model_config c;
    c.family = f;
    c.hidden_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_size = 96;
    c.vocab_size = 128;
    c.max_positions = 64;
    c.norm = norm_kind::rms;
    c.norm_eps = 1e-5;
    c.activation = activation_kind::swiglu;
    c.rope = rope_style::half;
    c.rotary_dims = c.head_dim;
    c.rope_theta = 10000.0;
    c.bos_token = 1;
    c.eos_token = 2;
    switch (f) {
    case model_family::llama: break;
    case model_family::mistral: c.rope_theta = 1e6; break;
    case model_family::qwen2:
        c.norm_eps = 1e-6;
        c.rope_theta = 1e6;
        c.bias.qkv = true;
        c.tied_embeddings = true;  // as the small Qwen2 models are
        break;
    case model_family::phi3:
        c.rotary_dims = 12;  // partial_rotary_factor 0.75, as Phi-4-mini
        break;
    case model_family::gpt2:
        c.num_kv_heads = c.num_heads;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_tanh;
        c.rope = rope_style::none;
        c.rotary_dims = 0;
        c.learned_positions = true;
        c.tied_embeddings = true;
        c.bias = {true, true, true, true};
        c.bos_token = c.eos_token = c.vocab_size - 1;
        break;
    case model_family::neox:
        c.num_kv_heads = c.num_heads;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_erf;
        c.parallel_residual = true;
        c.rotary_dims = 4;  // rotary_pct 0.25, as Pythia
        c.bias = {true, true, true, true};
        c.bos_token = c.eos_token = 0;
        break;
    case model_family::gemma:
    case model_family::gemma2:
    case model_family::gemma3:
        c.norm_eps = 1e-6;
        c.norm_weight_offset = 1;
        c.embedding_scale = 8;  // sqrt(64)
        c.activation = activation_kind::geglu_tanh;
        c.tied_embeddings = true;
        c.bos_token = 2;
        c.eos_token = 1;
        if (f == model_family::gemma) {
            c.num_kv_heads = 1;
            c.head_dim = c.rotary_dims = 32;
            break;
        }
        c.sandwich_norms = true;
        c.sliding_window = 8;
        if (f == model_family::gemma2) {
            c.attention_scale = 0.25;  // query_pre_attn_scalar = head_dim, as llama.cpp derives it
            c.attention_softcap = 2;
            c.logit_softcap = 3;
            c.sliding_window_layers = {1};
        } else {
            c.num_layers = 6;
            c.qk_norm = true;
            c.attention_scale = 0.25;  // query_pre_attn_scalar = head_dim
            c.rope_theta = 1e6;
            c.rope_theta_local = 10000;
            c.rope_scaling.kind = rope_scaling_kind::linear;
            c.rope_scaling.name = "linear";
            c.rope_scaling.factor = 8;
            c.sliding_window_layers = {1, 2, 3, 4, 5};
        }
        break;
    case model_family::bert:
    case model_family::roberta:
    case model_family::distilbert:
        c.num_kv_heads = c.num_heads;
        c.norm = norm_kind::layer;
        c.norm_eps = 1e-12;
        c.activation = activation_kind::gelu_erf;
        c.rope = rope_style::none;
        c.rotary_dims = 0;
        c.learned_positions = true;
        c.bias = {true, true, true, true};
        c.post_norm = c.bidirectional = true;
        c.token_types = f == model_family::distilbert ? 0 : f == model_family::roberta ? 1 : 2;
        c.position_offset = f == model_family::roberta ? 2 : 0;  // padding_idx 1
        c.bos_token = f == model_family::roberta ? 0 : 101 % c.vocab_size;
        c.eos_token = f == model_family::roberta ? 2 : 102 % c.vocab_size;
        break;
    case model_family::mpt:
        c.num_kv_heads = c.num_heads;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_erf;
        c.rope = rope_style::none;
        c.rotary_dims = 0;
        c.tied_embeddings = true;
        c.alibi_bias_max = 8;
        c.bos_token = c.eos_token = 0;
        break;
    case model_family::falcon:
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_erf;
        c.parallel_residual = true;
        c.tied_embeddings = true;
        c.bias.norm = true;
        c.bos_token = c.eos_token = 11;
        if (falcon == falcon_variant::multi_query) {
            c.num_kv_heads = 1;
            c.shared_input_norm = true;
        }
        break;
    }
    return c;
}

namespace detail {

// Standard normal deviates from mt19937_64 by Box-Muller.
class portable_normal {
public:
    explicit portable_normal(std::uint64_t seed) : gen_(seed) {}
    double operator()()
    {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = (static_cast<double>(gen_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        const double u2 = static_cast<double>(gen_() >> 11) * 0x1.0p-53;          // [0, 1)
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double t = 6.283185307179586476925 * u2;
        spare_ = r * std::sin(t);
        has_spare_ = true;
        return r * std::cos(t);
    }

private:
    std::mt19937_64 gen_;
    double spare_ = 0;
    bool has_spare_ = false;
};

}  // namespace detail

// Weights for every tensor the config says exists, and no others: matrices N(0, 1/in), the
// embeddings N(0, 1/d), norm gains 1 + N(0, 0.1^2) (the stored weight less the config's offset),
// biases N(0, 0.05^2).
inline dense_weights random_weights(const model_config& c, std::uint64_t seed)
{
    detail::portable_normal normal(seed);
    const auto matrix = [&](std::int64_t rows, std::int64_t cols) {
        row_matrix<float> m(rows, cols);
        const double scale = 1.0 / std::sqrt(static_cast<double>(cols));
        for (std::int64_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(scale * normal());
        return m;
    };
    const auto vector = [&](std::int64_t n, double mean, double sd) {
        Eigen::VectorXf v(n);
        for (std::int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(mean + sd * normal());
        return v;
    };
    const double gain_mean = 1.0 - c.norm_weight_offset;
    const auto norm = [&](Eigen::VectorXf& w, Eigen::VectorXf& b) {
        w = vector(c.hidden_size, gain_mean, 0.1);
        if (c.bias.norm) b = vector(c.hidden_size, 0.0, 0.05);
    };
    const auto bias = [&](bool present, std::int64_t n) { return present ? vector(n, 0.0, 0.05) : Eigen::VectorXf(); };

    const std::int64_t d = c.hidden_size, M = c.ffn_size;
    dense_weights w;
    w.token_embedding = matrix(c.vocab_size, d);
    if (c.learned_positions) w.position_embedding = matrix(c.max_positions, d);
    if (c.token_types > 0) w.token_type_embedding = matrix(c.token_types, d);
    if (is_encoder(c.family)) norm(w.embedding_norm, w.embedding_norm_bias);
    for (std::int64_t l = 0; l < c.num_layers; ++l) {
        dense_layer x;
        norm(x.attn_norm, x.attn_norm_bias);
        x.wq = matrix(c.q_dim(), d);
        x.wk = matrix(c.kv_dim(), d);
        x.wv = matrix(c.kv_dim(), d);
        x.bq = bias(c.bias.qkv, c.q_dim());
        x.bk = bias(c.bias.qkv, c.kv_dim());
        x.bv = bias(c.bias.qkv, c.kv_dim());
        x.wo = matrix(d, c.q_dim());
        x.bo = bias(c.bias.o, d);
        if (!c.shared_input_norm) norm(x.ffn_norm, x.ffn_norm_bias);
        if (is_gated(c.activation)) x.w_gate = matrix(M, d);
        if (is_gated(c.activation)) x.b_gate = bias(c.bias.ffn, M);
        x.w_up = matrix(M, d);
        x.b_up = bias(c.bias.ffn, M);
        x.w_down = matrix(d, M);
        x.b_down = bias(c.bias.ffn, d);
        if (c.sandwich_norms) {
            x.post_attn_norm = vector(d, gain_mean, 0.1);
            x.post_ffn_norm = vector(d, gain_mean, 0.1);
        }
        if (c.qk_norm) {
            x.q_norm = vector(c.head_dim, gain_mean, 0.1);
            x.k_norm = vector(c.head_dim, gain_mean, 0.1);
        }
        w.layers.push_back(std::move(x));
    }
    if (is_encoder(c.family)) return w;  // no final norm, no language-model head
    norm(w.final_norm, w.final_norm_bias);
    if (!c.tied_embeddings) w.lm_head = matrix(c.vocab_size, d);
    return w;
}

}  // namespace sdlens
