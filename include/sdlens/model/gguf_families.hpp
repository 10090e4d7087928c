#pragma once
// GGUF models as llama.cpp lays them out, and llama2.c checkpoints (whose tensors the reader
// names the same way): metadata to model_config, tensors to canonical views, and the writer
// that produces such files from dense weights.
//
// Tensor names: token_embd, position_embd (gpt2), output_norm, output (absent when tied, but
// for GPT-2, whose files carry a copy),
// blk.N.{attn_norm, attn_norm_2 (falcon with separate norms), attn_q, attn_k, attn_v | attn_qkv,
// attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, each .weight and optionally .bias.
// A GGUF matrix with ne = (in, out) is row-major (out, in): already canonical.
//
// RoPE: llama.cpp rotates adjacent pairs for arch "llama" and halves (NEOX) for qwen2, phi3,
// gptneox and falcon. convert_hf_to_gguf permutes Llama's Q and K rows so that adjacent-pair
// rotation of the stored rows equals Hugging Face's half rotation of the original ones; files
// converted from llama2.c are not permuted because llama2.c already rotates adjacent pairs.
// Either way the stored rows are right for adjacent rotation, so the model says rope adjacent
// and the views read the rows as stored.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "sdlens/core/compiled.hpp"
#include "sdlens/io/gguf.hpp"
#include "sdlens/io/gguf_writer.hpp"
#include "sdlens/io/llama2c.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/model.hpp"
#include "sdlens/model/rope.hpp"
#include "sdlens/model/tokenizer_writer.hpp"

namespace sdlens {

namespace detail {

inline const nlohmann::json* gguf_find(const checkpoint& ck, const std::string& key)
{
    auto it = ck.metadata.find(key);
    return it == ck.metadata.end() ? nullptr : &*it;
}

inline std::int64_t gguf_int(const checkpoint& ck, const std::string& key, std::optional<std::int64_t> fallback = {})
{
    const auto* v = gguf_find(ck, key);
    if (!v) {
        if (fallback) return *fallback;
        fail_input(ck.path, "missing metadata '" + key + "'");
    }
    if (v->is_array()) fail_input(ck.path, "metadata '" + key + "' is an array (per-layer values are not supported)");
    if (v->is_number_unsigned()) {
        const auto u = v->get<std::uint64_t>();
        if (u > (std::uint64_t(1) << 62)) fail_input(ck.path, "metadata '" + key + "' is out of range");
        return static_cast<std::int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<std::int64_t>();
    fail_input(ck.path, "metadata '" + key + "' is not an integer");
}

inline double gguf_float(const checkpoint& ck, const std::string& key, double fallback)
{
    const auto* v = gguf_find(ck, key);
    if (!v) return fallback;
    if (!v->is_number()) fail_input(ck.path, "metadata '" + key + "' is not a number");
    return v->get<double>();
}

// RoPE scaling as llama.cpp reads it: rope.scaling.type linear (freq_scale = 1 / factor) and the
// per-frequency divisors of rope_freqs.weight (Llama 3.1 and later; theta_i / rope_freqs[i]).
// yarn and longrope are kept as unsupported: llama.cpp's formulas for them are its own, and
// the forward pass refuses them rather than compute Hugging Face's instead.
inline void gguf_rope_scaling(const checkpoint& ck, const std::string& p, model_config& c)
{
    rope_scaling_config& o = c.rope_scaling;
    std::string type = "none";
    if (const auto* v = gguf_find(ck, p + "rope.scaling.type")) {
        const auto s = gguf_string_bytes(*v);
        if (!s) fail_input(ck.path, "metadata '" + p + "rope.scaling.type' is not a string");
        type = *s;
    }
    o.name = type;
    o.original_max_positions = std::max<std::int64_t>(0, gguf_int(ck, p + "rope.scaling.original_context_length", 0));
    if (type == "linear") {
        o.kind = rope_scaling_kind::linear;
        o.factor = gguf_float(ck, p + "rope.scaling.factor", 1.0);
        if (!(o.factor > 0 && o.factor < 1e6)) fail_input(ck.path, "metadata '" + p + "rope.scaling.factor' must be in (0, 1e6)");
    } else if (type != "none") {
        o.kind = rope_scaling_kind::unsupported;
    }
    if (const tensor_info* f = ck.tensors.find("rope_freqs.weight")) {
        const std::int64_t pairs = c.rotary_dims / 2;
        if (f->type != dtype::f32 || f->numel() != pairs || f->nbytes != static_cast<std::uint64_t>(pairs) * 4)
            fail_input(ck.path, "tensor 'rope_freqs.weight' must be " + std::to_string(pairs) + " f32 values (one per rotary pair)");
        if (o.kind == rope_scaling_kind::unsupported) return;
        o.divisors.resize(static_cast<std::size_t>(pairs));
        for (std::int64_t i = 0; i < pairs; ++i) {
            float v;
            std::memcpy(&v, f->data + 4 * i, 4);
            if (!(v > 0) || !std::isfinite(v)) fail_input(ck.path, "tensor 'rope_freqs.weight' holds a value that is not a positive number");
            o.divisors[static_cast<std::size_t>(i)] = v;
        }
        if (o.kind == rope_scaling_kind::none) o.name = "rope_freqs";
        o.kind = rope_scaling_kind::divisors;
    }
}

inline const char* gguf_arch_name(model_family f)
{
    switch (f) {
    case model_family::llama:
    case model_family::mistral: return "llama";
    case model_family::qwen2: return "qwen2";
    case model_family::phi3: return "phi3";
    case model_family::gpt2: return "gpt2";
    case model_family::neox: return "gptneox";
    case model_family::falcon: return "falcon";
    case model_family::gemma: return "gemma";
    case model_family::gemma2: return "gemma2";
    case model_family::gemma3: return "gemma3";
    case model_family::mpt: return "mpt";
    case model_family::bert:
    case model_family::roberta:
    case model_family::distilbert: return "bert";
    }
    return "?";
}

// llama.cpp's Gemma 2 and 3 scale queries by 1/sqrt(n_embd / n_head) in the 27B models (which it
// tells by their layer counts, 46 and 62) and by 1/sqrt(head_dim) otherwise; GGUF has no key
// for it. Gemma 1 always by 1/sqrt(head_dim).
inline double gguf_gemma_attention_scale(const model_config& c)
{
    const bool is_27b = (c.family == model_family::gemma2 && c.num_layers == 46) || (c.family == model_family::gemma3 && c.num_layers == 62);
    const double per_head = is_27b ? static_cast<double>(c.hidden_size / c.num_heads) : static_cast<double>(c.head_dim);
    return 1 / std::sqrt(per_head);
}
// Gemma 2 slides in every other layer, Gemma 3 in five of every six (llama.cpp's default
// sliding_window_pattern): layer i (0-based) slides when i % period < period - 1.
inline std::int64_t gguf_gemma_window_period(model_family f) { return f == model_family::gemma2 ? 2 : 6; }
inline std::vector<int> gguf_window_layers(std::int64_t period, std::int64_t layers)
{
    std::vector<int> out;
    for (std::int64_t i = 0; i < layers; ++i)
        if (i % period < period - 1) out.push_back(static_cast<int>(i + 1));
    return out;
}

// The rotation llama.cpp applies to each architecture's stored rows.
inline rope_style gguf_rope_style(model_family f)
{
    switch (f) {
    case model_family::llama:
    case model_family::mistral: return rope_style::adjacent;
    case model_family::gpt2:
    case model_family::mpt: return rope_style::none;
    default: return rope_style::half;
    }
}

inline std::string blk(std::int64_t l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

// Fills the views of m from tensors named as llama.cpp names them, checking every shape against
// m.config.
inline void attach_gguf_views(model& m)
{
    const checkpoint& ck = *m.source;
    const auto& c = m.config;
    const auto& ts = ck.tensors;
    auto bad_shape = [&](const std::string& name, std::int64_t r, std::int64_t k, std::int64_t wr, std::int64_t wk) {
        fail_input(ck.path, "tensor '" + name + "' is (" + std::to_string(r) + ", " + std::to_string(k) +
                                "), expected (" + std::to_string(wr) + ", " + std::to_string(wk) + ")");
    };
    auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
        const auto& t = ts.at(name);
        if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols)
            bad_shape(name, t.shape.empty() ? 0 : t.shape[0], t.shape.size() > 1 ? t.shape[1] : 0, rows, cols);
        return whole(t);
    };
    auto vec = [&](const std::string& name, std::int64_t n) {
        const auto& t = ts.at(name);
        if (t.numel() != n)
            fail_input(ck.path, "tensor '" + name + "' has " + std::to_string(t.numel()) + " elements, expected " + std::to_string(n));
        if (is_block_quantized(t.type)) fail_input(ck.path, "tensor '" + name + "' is a vector but block-quantized");
        return whole_vector(t);
    };
    auto opt_vec = [&](const std::string& name, std::int64_t n) { return ts.find(name) ? vec(name, n) : vector_view{}; };

    const std::int64_t d = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim(), M = c.ffn_size;
    m.token_embedding = matrix("token_embd.weight", c.vocab_size, d);
    m.lm_head = ts.find("output.weight") && !c.tied_embeddings ? matrix("output.weight", c.vocab_size, d) : m.token_embedding;
    if (c.learned_positions) m.position_embedding = matrix("position_embd.weight", c.max_positions, d);
    m.final_norm = vec("output_norm.weight", d);
    m.final_norm_bias = opt_vec("output_norm.bias", d);

    // Every block has several tensors: a block count beyond the tensor count is corrupt (and
    // must not size an allocation).
    if (c.num_layers > static_cast<std::int64_t>(ts.tensors().size()))
        fail_input(ck.path, "block count " + std::to_string(c.num_layers) + " exceeds the " +
                                std::to_string(ts.tensors().size()) + " tensors in the file");
    m.layers.resize(static_cast<std::size_t>(c.num_layers));
    for (std::int64_t l = 0; l < c.num_layers; ++l) {
        auto& w = m.layers[static_cast<std::size_t>(l)];
        auto name = [&](const char* what) { return blk(l, what); };
        w.attn_norm = vec(name("attn_norm.weight"), d);
        w.attn_norm_bias = opt_vec(name("attn_norm.bias"), d);
        if (ts.find(name("ffn_norm.weight"))) {
            w.ffn_norm = vec(name("ffn_norm.weight"), d);
            w.ffn_norm_bias = opt_vec(name("ffn_norm.bias"), d);
        } else if (ts.find(name("attn_norm_2.weight"))) {
            w.ffn_norm = vec(name("attn_norm_2.weight"), d);
            w.ffn_norm_bias = opt_vec(name("attn_norm_2.bias"), d);
        } else if (!c.shared_input_norm) {
            ts.at(name("ffn_norm.weight"));  // reports it missing
        }

        if (const auto* qkv = ts.find(name("attn_qkv.weight"))) {
            const auto n = name("attn_qkv.weight");
            if (qkv->shape.size() != 2 || qkv->shape[0] != qd + 2 * kvd || qkv->shape[1] != d)
                bad_shape(n, qkv->shape[0], qkv->shape.size() > 1 ? qkv->shape[1] : 0, qd + 2 * kvd, d);
            w.wq = row_slice(*qkv, 0, qd);
            w.wk = row_slice(*qkv, qd, kvd);
            w.wv = row_slice(*qkv, qd + kvd, kvd);
            if (const auto* b = ts.find(name("attn_qkv.bias"))) {
                vec(name("attn_qkv.bias"), qd + 2 * kvd);
                w.bq = vector_slice(*b, 0, qd);
                w.bk = vector_slice(*b, qd, kvd);
                w.bv = vector_slice(*b, qd + kvd, kvd);
            }
        } else {
            w.wq = matrix(name("attn_q.weight"), qd, d);
            w.wk = matrix(name("attn_k.weight"), kvd, d);
            w.wv = matrix(name("attn_v.weight"), kvd, d);
            w.bq = opt_vec(name("attn_q.bias"), qd);
            w.bk = opt_vec(name("attn_k.bias"), kvd);
            w.bv = opt_vec(name("attn_v.bias"), kvd);
        }
        w.wo = matrix(name("attn_output.weight"), d, qd);
        w.bo = opt_vec(name("attn_output.bias"), d);

        if (is_gated(c.activation) && !ts.find(name("ffn_gate.weight"))) {
            // Phi-3 keeps gate and up in one tensor, gate first (as Hugging Face's gate_up_proj).
            const auto& up = ts.at(name("ffn_up.weight"));
            if (up.shape.size() != 2 || up.shape[0] != 2 * M || up.shape[1] != d)
                bad_shape(name("ffn_up.weight"), up.shape[0], up.shape.size() > 1 ? up.shape[1] : 0, 2 * M, d);
            w.w_gate = row_slice(up, 0, M);
            w.w_up = row_slice(up, M, M);
        } else {
            if (is_gated(c.activation)) {
                w.w_gate = matrix(name("ffn_gate.weight"), M, d);
                w.b_gate = opt_vec(name("ffn_gate.bias"), M);
            }
            w.w_up = matrix(name("ffn_up.weight"), M, d);
            w.b_up = opt_vec(name("ffn_up.bias"), M);
        }
        w.w_down = matrix(name("ffn_down.weight"), d, M);
        w.b_down = opt_vec(name("ffn_down.bias"), d);
        if (c.sandwich_norms) {
            w.post_attn_norm = vec(name("attn_post_norm.weight"), d);
            w.post_ffn_norm = vec(name("ffn_post_norm.weight"), d);
        }
        if (c.qk_norm) {
            w.q_norm = vec(name("attn_q_norm.weight"), c.head_dim);
            w.k_norm = vec(name("attn_k_norm.weight"), c.head_dim);
        }
    }
}

}  // namespace detail

inline model build_gguf_model(std::shared_ptr<const checkpoint> ck)
{
    const auto& path = ck->path;
    const auto* arch_v = detail::gguf_find(*ck, "general.architecture");
    if (!arch_v || !arch_v->is_string()) fail_input(path, "missing metadata 'general.architecture'");
    const auto arch = arch_v->get<std::string>();
    model_config c;
    if (arch == "llama") c.family = model_family::llama;
    else if (arch == "qwen2") c.family = model_family::qwen2;
    else if (arch == "phi3") c.family = model_family::phi3;
    else if (arch == "gpt2") c.family = model_family::gpt2;
    else if (arch == "gptneox") c.family = model_family::neox;
    else if (arch == "falcon") c.family = model_family::falcon;
    else if (arch == "gemma") c.family = model_family::gemma;
    else if (arch == "gemma2") c.family = model_family::gemma2;
    else if (arch == "gemma3") c.family = model_family::gemma3;
    else if (arch == "mpt") c.family = model_family::mpt;
    else fail_input(path, "GGUF architecture '" + arch + "' is not supported (llama, qwen2, phi3, gpt2, gptneox, falcon, gemma, gemma2, gemma3, mpt are)");

    const std::string p = arch + ".";
    auto positive = [&](const std::string& key, std::optional<std::int64_t> fallback = {}) {
        const auto v = detail::gguf_int(*ck, p + key, fallback);
        if (v < 1 || v > (std::int64_t(1) << 32)) fail_input(path, "metadata '" + p + key + "' is " + std::to_string(v));
        return v;
    };
    c.hidden_size = positive("embedding_length");
    c.num_layers = positive("block_count");
    // Every block has several tensors: a block count beyond the tensor count is corrupt, and must
    // not size anything (per-layer window lists below, the layer views).
    if (c.num_layers > static_cast<std::int64_t>(ck->tensors.tensors().size()))
        fail_input(path, "block count " + std::to_string(c.num_layers) + " exceeds the " + std::to_string(ck->tensors.tensors().size()) +
                             " tensors in the file");
    c.ffn_size = positive("feed_forward_length");
    c.num_heads = positive("attention.head_count");
    c.num_kv_heads = positive("attention.head_count_kv", c.num_heads);
    if (c.num_heads % c.num_kv_heads != 0)
        fail_input(path, "head count " + std::to_string(c.num_heads) + " is not a multiple of the kv head count " +
                             std::to_string(c.num_kv_heads));
    if (!detail::gguf_find(*ck, p + "attention.key_length") && c.hidden_size % c.num_heads != 0)
        fail_input(path, "embedding length is not a multiple of the head count");
    c.head_dim = positive("attention.key_length", c.hidden_size / c.num_heads);
    c.max_positions = std::max<std::int64_t>(0, detail::gguf_int(*ck, p + "context_length", 0));

    const bool layer_norm = c.family == model_family::gpt2 || c.family == model_family::neox || c.family == model_family::falcon ||
                            c.family == model_family::mpt;
    c.norm = layer_norm ? norm_kind::layer : norm_kind::rms;
    c.norm_eps = detail::gguf_float(*ck, p + (layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"), 1e-5);
    c.activation = c.family == model_family::gpt2 ? activation_kind::gelu_tanh
                   : layer_norm                  ? activation_kind::gelu_erf
                   : is_gemma(c.family)          ? activation_kind::geglu_tanh
                                                 : activation_kind::swiglu;
    if (c.family == model_family::neox) {
        const auto* par = detail::gguf_find(*ck, p + "use_parallel_residual");
        if (par && !par->is_boolean()) fail_input(path, "metadata '" + p + "use_parallel_residual' is not a bool");
        c.parallel_residual = !par || par->get<bool>();
    }
    if (c.family == model_family::falcon) c.parallel_residual = true;
    c.rope = detail::gguf_rope_style(c.family);
    if (c.rope != rope_style::none) {
        c.rotary_dims = positive("rope.dimension_count", c.head_dim);
        if (c.rotary_dims > c.head_dim || c.rotary_dims % 2 != 0)
            fail_input(path, "rope dimension count " + std::to_string(c.rotary_dims) + " does not fit head size " +
                                 std::to_string(c.head_dim));
        c.rope_theta = detail::gguf_float(*ck, p + "rope.freq_base", 10000.0);
        detail::gguf_rope_scaling(*ck, p, c);
    }
    c.learned_positions = c.family == model_family::gpt2 || (c.family == model_family::mpt && ck->tensors.find("position_embd.weight"));
    if (c.family == model_family::mpt) {
        // llama.cpp's MPT: ALiBi when max_alibi_bias > 0; clamped q/k/v and q/k norms sdlens does not run.
        c.alibi_bias_max = detail::gguf_float(*ck, p + "attention.max_alibi_bias", 0.0);
        if (!(c.alibi_bias_max >= 0)) fail_input(path, "metadata '" + p + "attention.max_alibi_bias' is negative");
        if (detail::gguf_float(*ck, p + "attention.clamp_kqv", 0.0) != 0)
            fail_input(path, "metadata '" + p + "attention.clamp_kqv' is set: clamping q, k and v is unsupported");
        if (ck->tensors.find("blk.0.attn_q_norm.weight")) fail_input(path, "MPT with q/k LayerNorms (qk_ln) is unsupported");
    }
    // A window in the file is applied to every layer, as llama.cpp does for these architectures.
    c.sliding_window = std::max<std::int64_t>(0, detail::gguf_int(*ck, p + "attention.sliding_window", 0));
    if (is_gemma(c.family)) {
        // As llama.cpp runs Gemma: the converter stored the norm gains as 1 + w, the embedding
        // is scaled by sqrt(n_embd); Gemma 2 caps scores and logits (default 50 and 30) and
        // slides in every other layer (default window 4096); Gemma 3 slides where the file
        // has a window, with its own RoPE base there.
        c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
        c.sandwich_norms = c.family != model_family::gemma;
        c.qk_norm = c.family == model_family::gemma3;
        c.attention_scale = detail::gguf_gemma_attention_scale(c);
        if (c.family == model_family::gemma2) {
            c.attention_softcap = detail::gguf_float(*ck, p + "attn_logit_softcapping", 50.0);
            c.logit_softcap = detail::gguf_float(*ck, p + "final_logit_softcapping", 30.0);
            if (!detail::gguf_find(*ck, p + "attention.sliding_window")) c.sliding_window = 4096;
        }
        if (c.family == model_family::gemma3) {
            c.logit_softcap = detail::gguf_float(*ck, p + "final_logit_softcapping", 0.0);
            if (c.sliding_window > 0) c.rope_theta_local = detail::gguf_float(*ck, p + "rope.freq_base_swa", 10000.0);
        }
        if (!(c.attention_softcap >= 0 && c.logit_softcap >= 0)) fail_input(path, "soft-capping values must not be negative");
        if (c.family != model_family::gemma && c.sliding_window > 0) {
            const std::int64_t period = detail::gguf_int(*ck, p + "attention.sliding_window_pattern", detail::gguf_gemma_window_period(c.family));
            if (period < 1 || period > c.num_layers + 1)
                fail_input(path, "metadata '" + p + "attention.sliding_window_pattern' is " + std::to_string(period));
            c.sliding_window_layers = detail::gguf_window_layers(period, c.num_layers);
            if (c.sliding_window_layers.empty()) c.sliding_window = 0;
            if (static_cast<std::int64_t>(c.sliding_window_layers.size()) == c.num_layers) c.sliding_window_layers.clear();
        }
    }

    const auto& emb = ck->tensors.at("token_embd.weight");
    if (emb.shape.size() != 2) fail_input(path, "tensor 'token_embd.weight' is not a matrix");
    c.vocab_size = emb.shape[0];
    // llama.cpp's Gemma and Gemma 2 always read the token embedding as the output matrix.
    c.tied_embeddings = ck->tensors.find("output.weight") == nullptr || c.family == model_family::gemma || c.family == model_family::gemma2;
    if (c.learned_positions) {
        const auto& pos = ck->tensors.at("position_embd.weight");
        if (pos.shape.size() == 2) c.max_positions = pos.shape[0];
    }
    const auto& ts = ck->tensors;
    c.shared_input_norm = c.family == model_family::falcon && !ts.find("blk.0.attn_norm_2.weight") && !ts.find("blk.0.ffn_norm.weight");
    c.bias.qkv = ts.find("blk.0.attn_q.bias") || ts.find("blk.0.attn_qkv.bias");
    c.bias.o = ts.find("blk.0.attn_output.bias") != nullptr;
    c.bias.ffn = ts.find("blk.0.ffn_up.bias") || ts.find("blk.0.ffn_down.bias");
    c.bias.norm = ts.find("blk.0.attn_norm.bias") != nullptr;
    if (const auto* q = ts.find("blk.0.attn_q.weight")) c.weight_dtype = q->type;
    else if (const auto* qkv = ts.find("blk.0.attn_qkv.weight")) c.weight_dtype = qkv->type;
    // Ids outside the vocabulary (llama.cpp writes 2^32-1 for "none") mean no such token.
    auto token_id = [&](const char* key) {
        const auto v = detail::gguf_int(*ck, key, -1);
        return v >= 0 && v < c.vocab_size ? v : std::int64_t{-1};
    };
    c.bos_token = token_id("tokenizer.ggml.bos_token_id");
    c.eos_token = token_id("tokenizer.ggml.eos_token_id");

    model m;
    m.config = c;
    m.source = std::move(ck);
    detail::attach_gguf_views(m);
    return m;
}

// A llama2.c checkpoint read by read_llama2c: a Llama with adjacent-pair RoPE (llama2.c's own
// rotation of its own rows), RMSNorm eps 1e-5 and BOS 1 / EOS 2 as run.c hard-codes them.
inline model build_llama2c_model(std::shared_ptr<const checkpoint> ck)
{
    const auto& md = ck->metadata;
    model_config c;
    c.family = model_family::llama;
    c.hidden_size = md.at("dim").get<std::int64_t>();
    c.ffn_size = md.at("hidden_dim").get<std::int64_t>();
    c.num_layers = md.at("n_layers").get<std::int64_t>();
    c.num_heads = md.at("n_heads").get<std::int64_t>();
    c.num_kv_heads = md.at("n_kv_heads").get<std::int64_t>();
    c.head_dim = c.hidden_size / c.num_heads;
    c.vocab_size = md.at("vocab_size").get<std::int64_t>();
    c.max_positions = md.at("seq_len").get<std::int64_t>();
    c.norm = norm_kind::rms;
    c.norm_eps = 1e-5;
    c.activation = activation_kind::swiglu;
    c.rope = rope_style::adjacent;
    c.rotary_dims = c.head_dim;
    c.rope_theta = 10000.0;
    c.tied_embeddings = md.at("shared_classifier").get<bool>();
    c.weight_dtype = dtype::f32;
    c.bos_token = 1;
    c.eos_token = 2;
    model m;
    m.config = c;
    m.source = std::move(ck);
    detail::attach_gguf_views(m);
    return m;
}

namespace detail {

// The dtype a matrix with `cols` columns is written in when `want` is asked for: block types need
// whole blocks along a row, so like llama.cpp we fall back (k-quants to Q8_0, then to F16).
inline dtype gguf_matrix_dtype(dtype want, std::int64_t cols)
{
    if (cols % layout_of(want).block_elems == 0) return want;
    if (is_block_quantized(want) && want != dtype::q8_0 && cols % 32 == 0) return dtype::q8_0;
    return dtype::f16;
}

// llama.cpp's general.file_type for a dtype (LLAMA_FTYPE_*).
inline std::uint32_t gguf_file_type(dtype t)
{
    switch (t) {
    case dtype::f32: return 0;
    case dtype::f16: return 1;
    case dtype::q4_0: return 2;
    case dtype::q8_0: return 7;
    case dtype::q4_k: return 15;  // Q4_K_M
    case dtype::q6_k: return 18;
    case dtype::bf16: return 32;
    }
    return 0;
}

// Reorders the rows of each head between half rotation (i with i + rot/2) and adjacent rotation
// (2i with 2i + 1), as convert_hf_to_gguf's permute does; to_adjacent = false undoes it.
template <class Rows>
Rows rope_permute_rows(const Rows& x, std::int64_t heads, std::int64_t head_dim, std::int64_t rot, bool to_adjacent)
{
    Rows y = x;
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < rot / 2; ++i) {
            const std::int64_t half_lo = h * head_dim + i, half_hi = half_lo + rot / 2;
            const std::int64_t adj_lo = h * head_dim + 2 * i, adj_hi = adj_lo + 1;
            if (to_adjacent) {
                y.row(adj_lo) = x.row(half_lo);
                y.row(adj_hi) = x.row(half_hi);
            } else {
                y.row(half_lo) = x.row(adj_lo);
                y.row(half_hi) = x.row(adj_hi);
            }
        }
    return y;
}

template <class A, class B>
row_matrix<float> stack_rows(const A& a, const B& b)
{
    row_matrix<float> s(a.rows() + b.rows(), a.cols());
    s << a, b;
    return s;
}

}  // namespace detail

// Writes dense weights as llama.cpp would store the model: norms and biases F32, matrices in
// `type` (F16 or Q8_0 for matrices whose rows are not whole blocks of it). The config's rope
// style says how the given Q and K rows expect to be rotated; rows are reordered to the rotation
// llama.cpp applies for the architecture (Hugging Face Llama weights, rope half, get
// convert_hf_to_gguf's permutation; read back they describe the same model with rope adjacent).
// The file carries the placeholder vocabulary (model/tokenizer_writer.hpp), so llama.cpp loads it
// and text tokenizes; its "." is delimiter_token (-1 = default_delimiter_token(c)).
template <class = void>  // compiled where it is called (core/compiled.hpp)
void write_gguf_checkpoint(const std::string& path, const model_config& c, const dense_weights& w, dtype type,
                           std::int64_t delimiter_token = -1)
{
    if (is_encoder(c.family))
        fail_input(path, std::string("sdlens writes no GGUF form of ") + family_name(c.family) + " encoders (llama.cpp's bert layout is not implemented)");
    const std::string arch = detail::gguf_arch_name(c.family);
    const std::string p = arch + ".";
    gguf_writer g;
    g.add_string("general.architecture", arch);
    g.add_string("general.name", "sdlens");
    g.add_u32("general.file_type", detail::gguf_file_type(type));
    g.add_u32(p + "context_length", static_cast<std::uint32_t>(c.max_positions));
    g.add_u32(p + "embedding_length", static_cast<std::uint32_t>(c.hidden_size));
    g.add_u32(p + "block_count", static_cast<std::uint32_t>(c.num_layers));
    g.add_u32(p + "feed_forward_length", static_cast<std::uint32_t>(c.ffn_size));
    g.add_u32(p + "attention.head_count", static_cast<std::uint32_t>(c.num_heads));
    g.add_u32(p + "attention.head_count_kv", static_cast<std::uint32_t>(c.num_kv_heads));
    if (c.head_dim * c.num_heads != c.hidden_size || is_gemma(c.family)) {
        g.add_u32(p + "attention.key_length", static_cast<std::uint32_t>(c.head_dim));
        g.add_u32(p + "attention.value_length", static_cast<std::uint32_t>(c.head_dim));
    }
    g.add_f32(p + (c.norm == norm_kind::rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon"),
              static_cast<float>(c.norm_eps));
    const rope_style target = detail::gguf_rope_style(c.family);
    if (target != rope_style::none) {
        g.add_u32(p + "rope.dimension_count", static_cast<std::uint32_t>(c.rotary_dims > 0 ? c.rotary_dims : c.head_dim));
        g.add_f32(p + "rope.freq_base", static_cast<float>(c.rope_theta));
        // RoPE scaling the way llama.cpp's converter stores it: linear as rope.scaling.*, Llama 3's
        // blend as per-frequency divisors (unscaled / scaled frequency) in rope_freqs.weight.
        const rope_scaling_config& r = c.rope_scaling;
        if (r.kind == rope_scaling_kind::linear || (r.kind == rope_scaling_kind::divisors && r.factor != 1)) {
            g.add_string(p + "rope.scaling.type", "linear");
            g.add_f32(p + "rope.scaling.factor", static_cast<float>(r.factor));
        }
        if (r.kind == rope_scaling_kind::llama3 || r.kind == rope_scaling_kind::divisors) {
            model_config unscaled = c;
            unscaled.rope_scaling = {};
            const std::vector<double> plain = rope_frequencies_for(unscaled, 1).inverse, scaled = rope_frequencies_for(c, 1).inverse;
            std::vector<float> divisors(plain.size());
            for (std::size_t i = 0; i < plain.size(); ++i)
                divisors[i] = r.kind == rope_scaling_kind::divisors ? static_cast<float>(r.divisors[i]) : static_cast<float>(plain[i] / scaled[i]);
            g.add_tensor("rope_freqs.weight", dtype::f32, {static_cast<std::int64_t>(divisors.size())}, divisors.data());
        } else if (r.kind != rope_scaling_kind::none && r.kind != rope_scaling_kind::linear) {
            fail_input(path, std::string("RoPE scaling '") + rope_scaling_name(r.kind) + "' has no GGUF form sdlens writes");
        }
    }
    if (c.family == model_family::neox) g.add_bool(p + "use_parallel_residual", c.parallel_residual);
    if (c.alibi_bias_max > 0) {
        if (c.family != model_family::mpt) fail_input(path, std::string("ALiBi has no GGUF form for ") + family_name(c.family) + " that sdlens writes");
        g.add_f32(p + "attention.max_alibi_bias", static_cast<float>(c.alibi_bias_max));
    }
    if (c.family == model_family::mpt && std::abs(c.score_scale() - 1 / std::sqrt(static_cast<double>(c.head_dim))) > 1e-12)
        fail_input(path, "an attention scale other than 1/sqrt(head_dim): llama.cpp's mpt has no GGUF form for it");
    if (is_gemma(c.family)) {
        // What llama.cpp derives for Gemma rather than reads must already be so.
        auto refuse = [&](const std::string& what) { fail_input(path, what + ": llama.cpp's " + arch + " has no GGUF form for it"); };
        if (c.embedding_scale != std::sqrt(static_cast<double>(c.hidden_size))) refuse("an embedding scale other than sqrt(d)");
        if (c.sandwich_norms != (c.family != model_family::gemma) || c.qk_norm != (c.family == model_family::gemma3))
            refuse("this arrangement of norms");
        if (std::abs(c.score_scale() - detail::gguf_gemma_attention_scale(c)) > 1e-12 * c.score_scale())
            refuse("an attention scale of " + std::to_string(c.score_scale()));
        if (c.attention_softcap > 0 && c.family != model_family::gemma2) refuse("attention soft-capping");
        if (c.logit_softcap > 0 && c.family == model_family::gemma) refuse("logit soft-capping");
        if (c.family == model_family::gemma2 && (c.attention_softcap == 0 || c.logit_softcap == 0)) refuse("Gemma 2 without soft-capping");
        if (!c.tied_embeddings && c.family != model_family::gemma3) refuse("an output matrix apart from the embedding");
        if (c.attention_softcap > 0) g.add_f32(p + "attn_logit_softcapping", static_cast<float>(c.attention_softcap));
        if (c.logit_softcap > 0) g.add_f32(p + "final_logit_softcapping", static_cast<float>(c.logit_softcap));
        if (c.sliding_window > 0) {
            if (c.family == model_family::gemma) refuse("a sliding window");
            const auto layers = detail::gguf_window_layers(detail::gguf_gemma_window_period(c.family), c.num_layers);
            if ((c.sliding_window_layers.empty() ? static_cast<std::int64_t>(layers.size()) != c.num_layers : c.sliding_window_layers != layers))
                refuse("sliding windows in other layers than every " + std::to_string(detail::gguf_gemma_window_period(c.family)) + "-layer pattern");
            g.add_u32(p + "attention.sliding_window", static_cast<std::uint32_t>(c.sliding_window));
            if (c.family == model_family::gemma3) g.add_f32(p + "rope.freq_base_swa", static_cast<float>(c.rope_theta_local > 0 ? c.rope_theta_local : c.rope_theta));
        } else if (c.family == model_family::gemma2) {
            refuse("Gemma 2 without sliding windows");
        }
        if (c.family == model_family::gemma2 && c.rope_theta_local > 0 && c.rope_theta_local != c.rope_theta) refuse("a RoPE base of its own in sliding layers");
    }
    // llama.cpp's Phi-3 will not load without a window (a window of the whole context is none);
    // llama.cpp reads no window for the other families sdlens writes.
    if (c.sliding_window > 0 && !is_gemma(c.family) && (c.family != model_family::phi3 || !c.sliding_window_layers.empty()))
        fail_input(path, std::string("a sliding window has no GGUF form for ") + family_name(c.family) + " that llama.cpp reads");
    if (c.family == model_family::phi3)
        g.add_u32(p + "attention.sliding_window", static_cast<std::uint32_t>(c.sliding_window > 0 ? c.sliding_window : c.max_positions));
    const placeholder_vocabulary vocab = make_placeholder_vocabulary(c, delimiter_token);
    g.add_string("tokenizer.ggml.model", "llama");
    g.add_string_array("tokenizer.ggml.tokens", vocab.tokens);
    g.add_f32_array("tokenizer.ggml.scores", vocab.scores);
    g.add_i32_array("tokenizer.ggml.token_type", vocab.types);
    if (vocab.unknown >= 0) g.add_u32("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(vocab.unknown));
    if (c.bos_token >= 0) g.add_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(c.bos_token));
    if (c.eos_token >= 0) g.add_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(c.eos_token));
    g.add_bool("tokenizer.ggml.add_bos_token", vocab.add_bos);

    auto put_matrix = [&](const std::string& name, const row_matrix<float>& m) {
        if (m.size() == 0) return;
        g.add_tensor(name, detail::gguf_matrix_dtype(type, m.cols()), {m.rows(), m.cols()}, m.data());
    };
    auto put_vector = [&](const std::string& name, const Eigen::VectorXf& v) {
        if (v.size() == 0) return;
        g.add_tensor(name, dtype::f32, {v.size()}, v.data());
    };
    auto concat = [](std::initializer_list<const Eigen::VectorXf*> parts) {
        Eigen::Index n = 0;
        for (auto* v : parts) n += v->size();
        Eigen::VectorXf out(n);
        n = 0;
        for (auto* v : parts) {
            out.segment(n, v->size()) = *v;
            n += v->size();
        }
        return out;
    };

    const bool permute = c.rope != rope_style::none && target != rope_style::none && c.rope != target;
    const bool to_adjacent = target == rope_style::adjacent;
    const std::int64_t rot = c.rotary_dims > 0 ? c.rotary_dims : c.head_dim;
    auto rope_rows = [&](const auto& x, std::int64_t heads) {
        using T = std::decay_t<decltype(x)>;
        if (!permute || x.size() == 0) return T(x);
        return detail::rope_permute_rows(x, heads, c.head_dim, rot, to_adjacent);
    };

    // llama.cpp multiplies by the norm weights as stored: Gemma's 1 + w is stored, as its converter does.
    auto put_norm = [&](const std::string& name, const Eigen::VectorXf& v) {
        if (v.size() == 0) return;
        put_vector(name, (v.array() + static_cast<float>(c.norm_weight_offset)).matrix());
    };
    put_matrix("token_embd.weight", w.token_embedding);
    put_matrix("position_embd.weight", w.position_embedding);
    put_norm("output_norm.weight", w.final_norm);
    put_vector("output_norm.bias", w.final_norm_bias);
    // llama.cpp's GPT-2 requires output.weight: as convert_hf_to_gguf does, the tied embedding is
    // written again (read back, the model has an untied head equal to the embedding).
    if (!c.tied_embeddings) put_matrix("output.weight", w.lm_head);
    else if (c.family == model_family::gpt2) put_matrix("output.weight", w.token_embedding);

    const bool fused_qkv = c.family == model_family::phi3 || c.family == model_family::gpt2 || c.family == model_family::neox ||
                           c.family == model_family::falcon || c.family == model_family::mpt;
    for (std::size_t i = 0; i < w.layers.size(); ++i) {
        const auto& L = w.layers[i];
        const auto l = static_cast<std::int64_t>(i);
        auto name = [&](const char* what) { return detail::blk(l, what); };
        put_norm(name("attn_norm.weight"), L.attn_norm);
        put_vector(name("attn_norm.bias"), L.attn_norm_bias);
        put_norm(name("attn_post_norm.weight"), L.post_attn_norm);
        put_norm(name("ffn_post_norm.weight"), L.post_ffn_norm);
        put_norm(name("attn_q_norm.weight"), L.q_norm);
        put_norm(name("attn_k_norm.weight"), L.k_norm);
        if (!c.shared_input_norm) {
            const bool falcon = c.family == model_family::falcon;
            put_norm(name(falcon ? "attn_norm_2.weight" : "ffn_norm.weight"), L.ffn_norm);
            put_vector(name(falcon ? "attn_norm_2.bias" : "ffn_norm.bias"), L.ffn_norm_bias);
        }
        const row_matrix<float> wq = rope_rows(L.wq, c.num_heads), wk = rope_rows(L.wk, c.num_kv_heads);
        const Eigen::VectorXf bq = rope_rows(L.bq, c.num_heads), bk = rope_rows(L.bk, c.num_kv_heads);
        if (fused_qkv) {
            put_matrix(name("attn_qkv.weight"), detail::stack_rows(detail::stack_rows(wq, wk), L.wv));
            if (bq.size() || bk.size() || L.bv.size()) put_vector(name("attn_qkv.bias"), concat({&bq, &bk, &L.bv}));
        } else {
            put_matrix(name("attn_q.weight"), wq);
            put_matrix(name("attn_k.weight"), wk);
            put_matrix(name("attn_v.weight"), L.wv);
            put_vector(name("attn_q.bias"), bq);
            put_vector(name("attn_k.bias"), bk);
            put_vector(name("attn_v.bias"), L.bv);
        }
        put_matrix(name("attn_output.weight"), L.wo);
        put_vector(name("attn_output.bias"), L.bo);
        if (c.family == model_family::phi3) {
            put_matrix(name("ffn_up.weight"), detail::stack_rows(L.w_gate, L.w_up));
        } else {
            put_matrix(name("ffn_gate.weight"), L.w_gate);
            put_vector(name("ffn_gate.bias"), L.b_gate);
            put_matrix(name("ffn_up.weight"), L.w_up);
        }
        put_vector(name("ffn_up.bias"), L.b_up);
        put_matrix(name("ffn_down.weight"), L.w_down);
        put_vector(name("ffn_down.bias"), L.b_down);
    }
    g.write(path);
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_GGUF_WRITER_INSTANTIATIONS(X) \
    X(void write_gguf_checkpoint(const std::string&, const model_config&, const dense_weights&, dtype, std::int64_t))
SDLENS_GGUF_WRITER_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
