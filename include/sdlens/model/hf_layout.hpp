#pragma once
// Where each canonical weight lives in a Hugging Face checkpoint, family by family: the stored
// tensor's name and shape, whether it is stored (in, out) (GPT-2's Conv1D), and which runs of its
// stored output rows make which canonical piece (fused q/k/v, fused gate/up). The reader turns
// this table into views, the writer into tensors, so the two cannot disagree about a layout.
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "sdlens/core/error.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

// The canonical pieces of model and dense_weights (same member names in both).
enum class hf_slot {
    token_embedding, position_embedding, final_norm, final_norm_bias, lm_head,
    token_type_embedding, embedding_norm, embedding_norm_bias,
    wq, wk, wv, wo, bq, bk, bv, bo,
    attn_norm, attn_norm_bias, ffn_norm, ffn_norm_bias,
    w_gate, w_up, w_down, b_up, b_down, b_gate,
    post_attn_norm, post_ffn_norm, q_norm, k_norm,
};
inline constexpr hf_slot hf_last_slot = hf_slot::k_norm;

inline const char* hf_slot_name(hf_slot s)
{
    static constexpr const char* names[] = {
        "token_embedding", "position_embedding", "final_norm", "final_norm_bias", "lm_head",
        "token_type_embedding", "embedding_norm", "embedding_norm_bias",
        "wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo",
        "attn_norm", "attn_norm_bias", "ffn_norm", "ffn_norm_bias",
        "w_gate", "w_up", "w_down", "b_up", "b_down", "b_gate",
        "post_attn_norm", "post_ffn_norm", "q_norm", "k_norm",
    };
    return names[static_cast<int>(s)];
}

inline bool hf_slot_is_global(hf_slot s) { return s <= hf_slot::embedding_norm_bias; }

// Calls f with the member of m (a model or a dense_weights) that slot s names in layer `layer`.
template <class Model, class F>
void visit_slot(Model& m, std::int64_t layer, hf_slot s, F&& f)
{
    switch (s) {
    case hf_slot::token_embedding: f(m.token_embedding); return;
    case hf_slot::position_embedding: f(m.position_embedding); return;
    case hf_slot::final_norm: f(m.final_norm); return;
    case hf_slot::final_norm_bias: f(m.final_norm_bias); return;
    case hf_slot::lm_head: f(m.lm_head); return;
    case hf_slot::token_type_embedding: f(m.token_type_embedding); return;
    case hf_slot::embedding_norm: f(m.embedding_norm); return;
    case hf_slot::embedding_norm_bias: f(m.embedding_norm_bias); return;
    default: break;
    }
    auto& l = m.layers[static_cast<std::size_t>(layer)];
    switch (s) {
    case hf_slot::wq: f(l.wq); return;
    case hf_slot::wk: f(l.wk); return;
    case hf_slot::wv: f(l.wv); return;
    case hf_slot::wo: f(l.wo); return;
    case hf_slot::bq: f(l.bq); return;
    case hf_slot::bk: f(l.bk); return;
    case hf_slot::bv: f(l.bv); return;
    case hf_slot::bo: f(l.bo); return;
    case hf_slot::attn_norm: f(l.attn_norm); return;
    case hf_slot::attn_norm_bias: f(l.attn_norm_bias); return;
    case hf_slot::ffn_norm: f(l.ffn_norm); return;
    case hf_slot::ffn_norm_bias: f(l.ffn_norm_bias); return;
    case hf_slot::w_gate: f(l.w_gate); return;
    case hf_slot::w_up: f(l.w_up); return;
    case hf_slot::w_down: f(l.w_down); return;
    case hf_slot::b_up: f(l.b_up); return;
    case hf_slot::b_down: f(l.b_down); return;
    case hf_slot::b_gate: f(l.b_gate); return;
    case hf_slot::post_attn_norm: f(l.post_attn_norm); return;
    case hf_slot::post_ffn_norm: f(l.post_ffn_norm); return;
    case hf_slot::q_norm: f(l.q_norm); return;
    case hf_slot::k_norm: f(l.k_norm); return;
    default: return;
    }
}

struct hf_part {
    hf_slot slot;
    std::vector<matrix_view::run> runs;  // stored output indices, in canonical order
};

struct hf_tensor_layout {
    std::string name;
    std::int64_t layer = -1;           // -1: not per layer
    std::vector<std::int64_t> shape;   // as stored
    bool transposed = false;           // stored (in, out)
    std::vector<hf_part> parts;
};

// How Falcon stores a config: new_decoder_architecture groups (kv, n_rep + 2, hd) and has one or
// two norms per block; the older layout is multi-query [q; k; v] or per head (h, 3, hd).
struct falcon_style {
    bool new_decoder_architecture = false;
    bool multi_query = false;
    std::int64_t num_ln_in_parallel_attn = 0;  // new_decoder_architecture only
};

inline falcon_style falcon_style_of(const model_config& c)
{
    falcon_style s;
    const bool mha_or_mqa = c.num_kv_heads == 1 || c.num_kv_heads == c.num_heads;
    if (c.parallel_residual && (!c.shared_input_norm || !mha_or_mqa)) {
        s.new_decoder_architecture = true;
        s.num_ln_in_parallel_attn = c.shared_input_norm ? 1 : 2;
    } else {
        if (!mha_or_mqa) fail_input("falcon", "grouped key/value heads need parallel attention (new_decoder_architecture)");
        s.multi_query = c.num_kv_heads == 1 && c.num_heads > 1;
    }
    return s;
}

namespace detail {

using runs_t = std::vector<matrix_view::run>;

struct qkv_runs {
    runs_t q, k, v;
};

// [q; k; v] one after another (Phi-3, multi-query Falcon).
inline qkv_runs stacked_qkv(const model_config& c)
{
    return {{{0, c.q_dim()}}, {{c.q_dim(), c.kv_dim()}}, {{c.q_dim() + c.kv_dim(), c.kv_dim()}}};
}

// Groups of (n_rep query heads, one key head, one value head), each head hd rows: GPT-NeoX and
// old Falcon with n_rep = 1, i.e. (h, 3, hd); Falcon's new decoder (kv, n_rep + 2, hd).
inline qkv_runs grouped_qkv(const model_config& c)
{
    const std::int64_t hd = c.head_dim, rep = c.num_heads / c.num_kv_heads;
    qkv_runs r;
    for (std::int64_t g = 0; g < c.num_kv_heads; ++g) {
        const std::int64_t base = g * (rep + 2) * hd;
        r.q.push_back({base, rep * hd});
        r.k.push_back({base + rep * hd, hd});
        r.v.push_back({base + (rep + 1) * hd, hd});
    }
    return r;
}

class layout_builder {
public:
    std::vector<hf_tensor_layout> out;

    void matrix(std::string name, std::int64_t layer, hf_slot s, std::int64_t rows, std::int64_t cols)
    {
        out.push_back({std::move(name), layer, {rows, cols}, false, {{s, {{0, rows}}}}});
    }
    // A Conv1D weight: canonical (rows, cols) stored as (cols, rows).
    void conv1d(std::string name, std::int64_t layer, hf_slot s, std::int64_t rows, std::int64_t cols)
    {
        out.push_back({std::move(name), layer, {cols, rows}, true, {{s, {{0, rows}}}}});
    }
    void vector(std::string name, std::int64_t layer, hf_slot s, std::int64_t n)
    {
        out.push_back({std::move(name), layer, {n}, false, {{s, {{0, n}}}}});
    }
    void fused_qkv(const std::string& name, std::int64_t layer, const model_config& c, const qkv_runs& r, bool transposed = false)
    {
        const std::int64_t total = c.q_dim() + 2 * c.kv_dim();
        out.push_back({name + ".weight", layer, transposed ? std::vector<std::int64_t>{c.hidden_size, total} : std::vector<std::int64_t>{total, c.hidden_size},
                       transposed, {{hf_slot::wq, r.q}, {hf_slot::wk, r.k}, {hf_slot::wv, r.v}}});
        if (c.bias.qkv)
            out.push_back({name + ".bias", layer, {total}, false, {{hf_slot::bq, r.q}, {hf_slot::bk, r.k}, {hf_slot::bv, r.v}}});
    }
    void linear(const std::string& name, std::int64_t layer, hf_slot w, hf_slot b, bool bias, std::int64_t rows, std::int64_t cols)
    {
        matrix(name + ".weight", layer, w, rows, cols);
        if (bias) vector(name + ".bias", layer, b, rows);
    }
    void norm(const std::string& name, std::int64_t layer, hf_slot w, hf_slot b, const model_config& c)
    {
        vector(name + ".weight", layer, w, c.hidden_size);
        if (c.bias.norm) vector(name + ".bias", layer, b, c.hidden_size);
    }
};

}  // namespace detail

// The prefix of a family's base-model tensors as the writer stores them: GPT-2's
// "transformer." (GPT2LMHeadModel), none for an encoder (BertModel saves without "bert.").
inline std::string hf_default_prefix(const model_config& c) { return c.family == model_family::gpt2 ? "transformer." : ""; }

// Every tensor a checkpoint of this config holds (a tied lm_head is not one; encoders have none).
// prefix: GPT-2's "transformer." (GPT2LMHeadModel) or "" (the original OpenAI conversion);
// an encoder's "bert.", "roberta.", "distilbert." (task heads) or "" (the base model).
inline std::vector<hf_tensor_layout> hf_layout(const model_config& c, const std::string& prefix)
{
    const std::string& gpt2_prefix = prefix;
    using S = hf_slot;
    detail::layout_builder b;
    const std::int64_t d = c.hidden_size, M = c.ffn_size, V = c.vocab_size;
    const auto layer_name = [](const std::string& prefix, std::int64_t l) { return prefix + std::to_string(l) + "."; };
    std::string lm_head = "lm_head.weight";

    switch (c.family) {
    case model_family::llama:
    case model_family::mistral:
    case model_family::qwen2:
    case model_family::phi3:
        b.matrix("model.embed_tokens.weight", -1, S::token_embedding, V, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name("model.layers.", l);
            b.norm(p + "input_layernorm", l, S::attn_norm, S::attn_norm_bias, c);
            if (c.family == model_family::phi3) {
                b.fused_qkv(p + "self_attn.qkv_proj", l, c, detail::stacked_qkv(c));
                b.out.push_back({p + "mlp.gate_up_proj.weight", l, {2 * M, d}, false, {{S::w_gate, {{0, M}}}, {S::w_up, {{M, M}}}}});
            } else {
                b.linear(p + "self_attn.q_proj", l, S::wq, S::bq, c.bias.qkv, c.q_dim(), d);
                b.linear(p + "self_attn.k_proj", l, S::wk, S::bk, c.bias.qkv, c.kv_dim(), d);
                b.linear(p + "self_attn.v_proj", l, S::wv, S::bv, c.bias.qkv, c.kv_dim(), d);
                b.linear(p + "mlp.gate_proj", l, S::w_gate, S::b_gate, c.bias.ffn, M, d);
                b.linear(p + "mlp.up_proj", l, S::w_up, S::b_up, c.bias.ffn, M, d);
            }
            b.linear(p + "self_attn.o_proj", l, S::wo, S::bo, c.bias.o, d, c.q_dim());
            b.linear(p + "mlp.down_proj", l, S::w_down, S::b_down, c.bias.ffn, d, M);
            b.norm(p + "post_attention_layernorm", l, S::ffn_norm, S::ffn_norm_bias, c);
        }
        b.norm("model.norm", -1, S::final_norm, S::final_norm_bias, c);
        break;
    case model_family::gemma:
    case model_family::gemma2:
    case model_family::gemma3:
        // Gemma's post_attention_layernorm is the FFN's input norm; Gemma 2 and 3 renamed that
        // pre_feedforward_layernorm and use the old name for the norm of the attention output.
        b.matrix("model.embed_tokens.weight", -1, S::token_embedding, V, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name("model.layers.", l);
            b.norm(p + "input_layernorm", l, S::attn_norm, S::attn_norm_bias, c);
            b.linear(p + "self_attn.q_proj", l, S::wq, S::bq, c.bias.qkv, c.q_dim(), d);
            b.linear(p + "self_attn.k_proj", l, S::wk, S::bk, c.bias.qkv, c.kv_dim(), d);
            b.linear(p + "self_attn.v_proj", l, S::wv, S::bv, c.bias.qkv, c.kv_dim(), d);
            b.linear(p + "self_attn.o_proj", l, S::wo, S::bo, c.bias.o, d, c.q_dim());
            if (c.qk_norm) {
                b.vector(p + "self_attn.q_norm.weight", l, S::q_norm, c.head_dim);
                b.vector(p + "self_attn.k_norm.weight", l, S::k_norm, c.head_dim);
            }
            if (c.sandwich_norms) {
                b.norm(p + "post_attention_layernorm", l, S::post_attn_norm, S::attn_norm_bias, c);
                b.norm(p + "pre_feedforward_layernorm", l, S::ffn_norm, S::ffn_norm_bias, c);
                b.norm(p + "post_feedforward_layernorm", l, S::post_ffn_norm, S::ffn_norm_bias, c);
            } else {
                b.norm(p + "post_attention_layernorm", l, S::ffn_norm, S::ffn_norm_bias, c);
            }
            b.linear(p + "mlp.gate_proj", l, S::w_gate, S::b_gate, c.bias.ffn, M, d);
            b.linear(p + "mlp.up_proj", l, S::w_up, S::b_up, c.bias.ffn, M, d);
            b.linear(p + "mlp.down_proj", l, S::w_down, S::b_down, c.bias.ffn, d, M);
        }
        b.norm("model.norm", -1, S::final_norm, S::final_norm_bias, c);
        break;
    case model_family::bert:
    case model_family::roberta: {
        const auto& e = prefix;
        b.matrix(e + "embeddings.word_embeddings.weight", -1, S::token_embedding, V, d);
        b.matrix(e + "embeddings.position_embeddings.weight", -1, S::position_embedding, c.max_positions, d);
        b.matrix(e + "embeddings.token_type_embeddings.weight", -1, S::token_type_embedding, c.token_types, d);
        b.vector(e + "embeddings.LayerNorm.weight", -1, S::embedding_norm, d);
        b.vector(e + "embeddings.LayerNorm.bias", -1, S::embedding_norm_bias, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name(e + "encoder.layer.", l);
            b.linear(p + "attention.self.query", l, S::wq, S::bq, true, c.q_dim(), d);
            b.linear(p + "attention.self.key", l, S::wk, S::bk, true, c.kv_dim(), d);
            b.linear(p + "attention.self.value", l, S::wv, S::bv, true, c.kv_dim(), d);
            b.linear(p + "attention.output.dense", l, S::wo, S::bo, true, d, c.q_dim());
            b.norm(p + "attention.output.LayerNorm", l, S::attn_norm, S::attn_norm_bias, c);
            b.linear(p + "intermediate.dense", l, S::w_up, S::b_up, true, M, d);
            b.linear(p + "output.dense", l, S::w_down, S::b_down, true, d, M);
            b.norm(p + "output.LayerNorm", l, S::ffn_norm, S::ffn_norm_bias, c);
        }
        break;
    }
    case model_family::distilbert: {
        const auto& e = prefix;
        b.matrix(e + "embeddings.word_embeddings.weight", -1, S::token_embedding, V, d);
        b.matrix(e + "embeddings.position_embeddings.weight", -1, S::position_embedding, c.max_positions, d);
        b.vector(e + "embeddings.LayerNorm.weight", -1, S::embedding_norm, d);
        b.vector(e + "embeddings.LayerNorm.bias", -1, S::embedding_norm_bias, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name(e + "transformer.layer.", l);
            b.linear(p + "attention.q_lin", l, S::wq, S::bq, true, c.q_dim(), d);
            b.linear(p + "attention.k_lin", l, S::wk, S::bk, true, c.kv_dim(), d);
            b.linear(p + "attention.v_lin", l, S::wv, S::bv, true, c.kv_dim(), d);
            b.linear(p + "attention.out_lin", l, S::wo, S::bo, true, d, c.q_dim());
            b.norm(p + "sa_layer_norm", l, S::attn_norm, S::attn_norm_bias, c);
            b.linear(p + "ffn.lin1", l, S::w_up, S::b_up, true, M, d);
            b.linear(p + "ffn.lin2", l, S::w_down, S::b_down, true, d, M);
            b.norm(p + "output_layer_norm", l, S::ffn_norm, S::ffn_norm_bias, c);
        }
        break;
    }
    case model_family::mpt:
        b.matrix("transformer.wte.weight", -1, S::token_embedding, V, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name("transformer.blocks.", l);
            b.norm(p + "norm_1", l, S::attn_norm, S::attn_norm_bias, c);
            b.fused_qkv(p + "attn.Wqkv", l, c, detail::stacked_qkv(c));
            b.matrix(p + "attn.out_proj.weight", l, S::wo, d, c.q_dim());
            b.norm(p + "norm_2", l, S::ffn_norm, S::ffn_norm_bias, c);
            b.matrix(p + "ffn.up_proj.weight", l, S::w_up, M, d);
            b.matrix(p + "ffn.down_proj.weight", l, S::w_down, d, M);
        }
        b.norm("transformer.norm_f", -1, S::final_norm, S::final_norm_bias, c);
        break;
    case model_family::gpt2: {
        const auto& t = gpt2_prefix;
        b.matrix(t + "wte.weight", -1, S::token_embedding, V, d);
        b.matrix(t + "wpe.weight", -1, S::position_embedding, c.max_positions, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name(t + "h.", l);
            b.norm(p + "ln_1", l, S::attn_norm, S::attn_norm_bias, c);
            b.fused_qkv(p + "attn.c_attn", l, c, detail::stacked_qkv(c), true);
            b.conv1d(p + "attn.c_proj.weight", l, S::wo, d, c.q_dim());
            b.vector(p + "attn.c_proj.bias", l, S::bo, d);
            b.norm(p + "ln_2", l, S::ffn_norm, S::ffn_norm_bias, c);
            b.conv1d(p + "mlp.c_fc.weight", l, S::w_up, M, d);
            b.vector(p + "mlp.c_fc.bias", l, S::b_up, M);
            b.conv1d(p + "mlp.c_proj.weight", l, S::w_down, d, M);
            b.vector(p + "mlp.c_proj.bias", l, S::b_down, d);
        }
        b.norm(t + "ln_f", -1, S::final_norm, S::final_norm_bias, c);
        break;
    }
    case model_family::neox:
        b.matrix("gpt_neox.embed_in.weight", -1, S::token_embedding, V, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name("gpt_neox.layers.", l);
            b.norm(p + "input_layernorm", l, S::attn_norm, S::attn_norm_bias, c);
            b.norm(p + "post_attention_layernorm", l, S::ffn_norm, S::ffn_norm_bias, c);
            b.fused_qkv(p + "attention.query_key_value", l, c, detail::grouped_qkv(c));
            b.linear(p + "attention.dense", l, S::wo, S::bo, c.bias.o, d, c.q_dim());
            b.linear(p + "mlp.dense_h_to_4h", l, S::w_up, S::b_up, c.bias.ffn, M, d);
            b.linear(p + "mlp.dense_4h_to_h", l, S::w_down, S::b_down, c.bias.ffn, d, M);
        }
        b.norm("gpt_neox.final_layer_norm", -1, S::final_norm, S::final_norm_bias, c);
        lm_head = "embed_out.weight";
        break;
    case model_family::falcon: {
        const auto style = falcon_style_of(c);
        b.matrix("transformer.word_embeddings.weight", -1, S::token_embedding, V, d);
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const auto p = layer_name("transformer.h.", l);
            if (c.parallel_residual && !c.shared_input_norm) {
                b.norm(p + "ln_attn", l, S::attn_norm, S::attn_norm_bias, c);
                b.norm(p + "ln_mlp", l, S::ffn_norm, S::ffn_norm_bias, c);
            } else {
                b.norm(p + "input_layernorm", l, S::attn_norm, S::attn_norm_bias, c);
                if (!c.parallel_residual) b.norm(p + "post_attention_layernorm", l, S::ffn_norm, S::ffn_norm_bias, c);
            }
            b.fused_qkv(p + "self_attention.query_key_value", l, c,
                        style.multi_query ? detail::stacked_qkv(c) : detail::grouped_qkv(c));
            b.linear(p + "self_attention.dense", l, S::wo, S::bo, c.bias.o, d, c.q_dim());
            b.linear(p + "mlp.dense_h_to_4h", l, S::w_up, S::b_up, c.bias.ffn, M, d);
            b.linear(p + "mlp.dense_4h_to_h", l, S::w_down, S::b_down, c.bias.ffn, d, M);
        }
        b.norm("transformer.ln_f", -1, S::final_norm, S::final_norm_bias, c);
        break;
    }
    }
    if (!c.tied_embeddings && !is_encoder(c.family)) b.matrix(lm_head, -1, S::lm_head, V, d);
    return std::move(b.out);
}
inline std::vector<hf_tensor_layout> hf_layout(const model_config& c) { return hf_layout(c, hf_default_prefix(c)); }

}  // namespace sdlens
