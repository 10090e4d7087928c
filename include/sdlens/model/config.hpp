#pragma once
// One description of a transformer, whatever file it came from. Everything downstream (forward
// pass, linearization) reads only this and the layer views in model.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/io/dtype.hpp"

namespace sdlens {

enum class model_family { llama, mistral, qwen2, phi3, gpt2, neox, falcon, gemma, gemma2, gemma3, mpt, bert, roberta, distilbert };
enum class norm_kind { rms, layer };
// swiglu: down(silu(gate x) * up x). geglu_tanh: down(gelu_tanh(gate x) * up x) (Gemma).
// gelu_*: down(gelu(up x + b)).
enum class activation_kind { swiglu, gelu_tanh, gelu_erf, geglu_tanh };
// Whether the FFN has a gate projection.
inline bool is_gated(activation_kind a) { return a == activation_kind::swiglu || a == activation_kind::geglu_tanh; }
// adjacent: pairs (2i, 2i+1) rotate together (llama2.c, GGUF llama). half: i with i + rot/2 (HF).
enum class rope_style { none, adjacent, half };

inline const char* family_name(model_family f)
{
    switch (f) {
    case model_family::llama: return "llama";
    case model_family::mistral: return "mistral";
    case model_family::qwen2: return "qwen2";
    case model_family::phi3: return "phi3";
    case model_family::gpt2: return "gpt2";
    case model_family::neox: return "neox";
    case model_family::falcon: return "falcon";
    case model_family::gemma: return "gemma";
    case model_family::gemma2: return "gemma2";
    case model_family::gemma3: return "gemma3";
    case model_family::mpt: return "mpt";
    case model_family::bert: return "bert";
    case model_family::roberta: return "roberta";
    case model_family::distilbert: return "distilbert";
    }
    return "?";
}
// Bidirectional post-norm encoders (the paper's contrast: no high-norm tokens).
inline bool is_encoder(model_family f) { return f == model_family::bert || f == model_family::roberta || f == model_family::distilbert; }
inline bool is_gemma(model_family f) { return f == model_family::gemma || f == model_family::gemma2 || f == model_family::gemma3; }
inline const char* norm_name(norm_kind n) { return n == norm_kind::rms ? "rmsnorm" : "layernorm"; }
inline const char* activation_name(activation_kind a)
{
    switch (a) {
    case activation_kind::swiglu: return "swiglu";
    case activation_kind::gelu_tanh: return "gelu_tanh";
    case activation_kind::gelu_erf: return "gelu";
    case activation_kind::geglu_tanh: return "geglu_tanh";
    }
    return "?";
}
inline const char* rope_style_name(rope_style r)
{
    switch (r) {
    case rope_style::none: return "none";
    case rope_style::adjacent: return "adjacent";
    case rope_style::half: return "half";
    }
    return "?";
}

// How a checkpoint changes RoPE's frequencies for long contexts (model/rope.hpp computes them).
// The kinds are Hugging Face's rope_type values, plus GGUF's per-frequency divisors
// (rope_freqs.weight, which llama.cpp's converter writes for Llama 3.1 and later); `unsupported`
// keeps a type sdlens does not implement, so that the forward pass refuses it while everything
// that does not rotate (the linearization at position 0, the weight analyses) still runs.
enum class rope_scaling_kind { none, linear, dynamic, yarn, longrope, llama3, divisors, unsupported };

struct rope_scaling_config {
    rope_scaling_kind kind = rope_scaling_kind::none;
    std::string name;                        // as the checkpoint spells it ("su", "type": "linear", ...)
    double factor = 1;                       // linear, dynamic, yarn, llama3; longrope: for the attention factor
    std::int64_t original_max_positions = 0; // pre-extension context (0: not given)
    double low_freq_factor = 1, high_freq_factor = 4;  // llama3
    double beta_fast = 32, beta_slow = 1;    // yarn
    bool truncate = true;                    // yarn: correction range rounded to whole dimensions
    double attention_factor = 0;             // yarn, longrope: given explicitly (0: derived)
    double mscale = 0, mscale_all_dim = 0;   // yarn (DeepSeek style attention factor)
    std::vector<double> short_factor, long_factor;  // longrope, one per rotary pair
    std::vector<double> divisors;            // divisors: frequency i is theta^(-2i/rot) / divisors[i]
};

inline const char* rope_scaling_name(rope_scaling_kind k)
{
    switch (k) {
    case rope_scaling_kind::none: return "none";
    case rope_scaling_kind::linear: return "linear";
    case rope_scaling_kind::dynamic: return "dynamic";
    case rope_scaling_kind::yarn: return "yarn";
    case rope_scaling_kind::longrope: return "longrope";
    case rope_scaling_kind::llama3: return "llama3";
    case rope_scaling_kind::divisors: return "frequency divisors";
    case rope_scaling_kind::unsupported: return "unsupported";
    }
    return "?";
}

struct model_config {
    model_family family = model_family::llama;
    std::int64_t hidden_size = 0;   // d
    std::int64_t num_layers = 0;    // L
    std::int64_t num_heads = 0;     // h
    std::int64_t num_kv_heads = 0;  // h_kv
    std::int64_t head_dim = 0;      // hd (h * hd may differ from d in some models)
    std::int64_t ffn_size = 0;      // M
    std::int64_t vocab_size = 0;
    std::int64_t max_positions = 0;  // context length; size of the learned position table if any

    norm_kind norm = norm_kind::rms;
    double norm_eps = 1e-5;
    // Gemma's RMSNorm multiplies by (1 + w): the stored weight w plus this offset is the gain.
    // Every norm of the model (q/k norms included) has it; GGUF files store 1 + w instead.
    double norm_weight_offset = 0;
    // Gemma multiplies the embedding rows by sqrt(d) before the first layer.
    double embedding_scale = 1;
    // Gemma 2/3 norm each branch's output too: x + norm_post(attn(norm x)), the same for the FFN.
    bool sandwich_norms = false;
    // Gemma 3 (and Qwen3): RMSNorm over each query and key head before RoPE.
    bool qk_norm = false;
    // Encoders (BERT): x = norm(x + attn(x)), x = norm(x + ffn(x)); the layer's attn_norm and
    // ffn_norm are these post-norms. Every query sees every key (no causal mask). The
    // embedding is norm(token + position + token type 0) (embedding_norm in the model).
    bool post_norm = false;
    bool bidirectional = false;
    std::int64_t token_types = 0;      // rows of the token-type table (0: none)
    std::int64_t position_offset = 0;  // RoBERTa: position p reads row p + padding_idx + 1
    activation_kind activation = activation_kind::swiglu;
    // Parallel blocks: x + attn(norm1 x) + ffn(norm2 x) (GPT-NeoX, Falcon-7B).
    bool parallel_residual = false;
    // Parallel blocks whose two branches share one norm (Falcon-7B): no separate ffn_norm.
    bool shared_input_norm = false;

    rope_style rope = rope_style::none;
    std::int64_t rotary_dims = 0;  // per head; < head_dim for partial rotary (Pythia)
    double rope_theta = 10000.0;
    rope_scaling_config rope_scaling;
    // Sliding-window layers rotate with this base and no scaling (Gemma 3); 0: as the others.
    double rope_theta_local = 0;
    bool learned_positions = false;  // GPT-2
    bool tied_embeddings = false;
    // Sliding-window attention (Mistral v0.1, Phi-3, Qwen2 with use_sliding_window): a query
    // at position p sees the keys at p - window + 1 .. p, as Hugging Face's masks and llama.cpp
    // do; 0 = every earlier key. In the layers listed (1-based), or in every layer when empty.
    std::int64_t sliding_window = 0;
    std::vector<int> sliding_window_layers;
    // Attention scores are q.k * attention_scale (0: 1/sqrt(head_dim); Gemma 2/3 take
    // query_pre_attn_scalar^-1/2), then cap * tanh(s / cap) when attention_softcap > 0 (Gemma 2).
    double attention_scale = 0;
    double attention_softcap = 0;
    double logit_softcap = 0;  // likewise on the final logits (Gemma 2)
    // ALiBi (MPT): head h adds slope_h * (k - p) to the score of key k at query p, slopes
    // 2^(-alibi_bias_max * i / n) as alibi_slopes() lists them; 0 = no ALiBi.
    double alibi_bias_max = 0;

    struct biases {
        bool qkv = false;    // q, k and v projections
        bool o = false;      // attention output
        bool ffn = false;    // up (and gate) and down projections
        bool norm = false;   // LayerNorm beta
    } bias;

    dtype weight_dtype = dtype::f32;  // the dtype of most matrices, for reporting
    std::int64_t bos_token = -1;
    std::int64_t eos_token = -1;

    std::int64_t kv_dim() const { return num_kv_heads * head_dim; }
    // Keys a query sees at this layer (1-based), itself included; 0 = all earlier ones.
    std::int64_t attention_window(int layer) const
    {
        if (sliding_window <= 0) return 0;
        if (sliding_window_layers.empty()) return sliding_window;
        for (int l : sliding_window_layers)
            if (l == layer) return sliding_window;
        return 0;
    }
    std::int64_t q_dim() const { return num_heads * head_dim; }
    double score_scale() const { return attention_scale > 0 ? attention_scale : 1.0 / std::sqrt(static_cast<double>(head_dim)); }
};

// ALiBi's slope for each head, as ggml computes it: with n2 the largest power of two <= heads and
// b = alibi_bias_max, heads h < n2 get 2^(-b (h + 1) / n2), the others 2^(-b (2 (h - n2) + 1) / (2 n2))
// (for a power-of-two head count, transformers' MPT's 2^(-b i / n), i = 1..n). Empty without ALiBi.
inline std::vector<float> alibi_slopes(const model_config& c)
{
    std::vector<float> slopes;
    if (c.alibi_bias_max <= 0) return slopes;
    std::int64_t n2 = 1;
    while (2 * n2 <= c.num_heads) n2 *= 2;
    const double b = c.alibi_bias_max, nd = static_cast<double>(n2);
    for (std::int64_t h = 0; h < c.num_heads; ++h)
        slopes.push_back(static_cast<float>(h < n2 ? std::pow(2.0, -b * static_cast<double>(h + 1) / nd)
                                                   : std::pow(2.0, -b * static_cast<double>(2 * (h - n2) + 1) / (2 * nd))));
    return slopes;
}

// The token id planted models use as their delimiter trigger, and the piece "." of their
// placeholder vocabulary (model/tokenizer_writer.hpp): the largest id up to 13 (GPT-2's "." is
// id 13) that is neither BOS nor EOS; -1 when the vocabulary has none.
inline std::int64_t default_delimiter_token(const model_config& c)
{
    for (std::int64_t id = std::min<std::int64_t>(13, c.vocab_size - 1); id >= 0; --id)
        if (id != c.bos_token && id != c.eos_token) return id;
    return -1;
}

inline nlohmann::json to_json(const model_config& c)
{
    return nlohmann::json{
        {"family", family_name(c.family)},
        {"hidden_size", c.hidden_size},
        {"num_layers", c.num_layers},
        {"num_heads", c.num_heads},
        {"num_kv_heads", c.num_kv_heads},
        {"head_dim", c.head_dim},
        {"ffn_size", c.ffn_size},
        {"vocab_size", c.vocab_size},
        {"max_positions", c.max_positions},
        {"norm", norm_name(c.norm)},
        {"norm_eps", c.norm_eps},
        {"norm_weight_offset", c.norm_weight_offset},
        {"embedding_scale", c.embedding_scale},
        {"sandwich_norms", c.sandwich_norms},
        {"qk_norm", c.qk_norm},
        {"post_norm", c.post_norm},
        {"bidirectional", c.bidirectional},
        {"token_types", c.token_types},
        {"position_offset", c.position_offset},
        {"activation", activation_name(c.activation)},
        {"parallel_residual", c.parallel_residual},
        {"shared_input_norm", c.shared_input_norm},
        {"rope", rope_style_name(c.rope)},
        {"rotary_dims", c.rotary_dims},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", c.rope_scaling.kind == rope_scaling_kind::none ? nlohmann::json(nullptr)
                         : nlohmann::json{{"type", rope_scaling_name(c.rope_scaling.kind)}, {"name", c.rope_scaling.name},
                                          {"factor", c.rope_scaling.factor},
                                          {"original_max_positions", c.rope_scaling.original_max_positions}}},
        {"sliding_window", c.sliding_window > 0 ? nlohmann::json{{"window", c.sliding_window}, {"layers", c.sliding_window_layers.empty() ? nlohmann::json("all") : nlohmann::json(c.sliding_window_layers)}}
                                                : nlohmann::json(nullptr)},
        {"rope_theta_local", c.rope_theta_local},
        {"attention_scale", c.attention_scale},
        {"attention_softcap", c.attention_softcap},
        {"logit_softcap", c.logit_softcap},
        {"alibi_bias_max", c.alibi_bias_max},
        {"learned_positions", c.learned_positions},
        {"tied_embeddings", c.tied_embeddings},
        {"bias", {{"qkv", c.bias.qkv}, {"o", c.bias.o}, {"ffn", c.bias.ffn}, {"norm", c.bias.norm}}},
        {"dtype", dtype_name(c.weight_dtype)},
        {"bos_token", c.bos_token},
        {"eos_token", c.eos_token},
    };
}

}  // namespace sdlens
