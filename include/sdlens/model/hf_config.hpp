#pragma once
// Reads a Hugging Face config.json into a model_config, family by family, with the defaults the
// transformers config classes use for absent keys. Anything the forward pass could not reproduce
// (ALiBi, a gated MLP bias) is refused rather than silently approximated.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <string>

#include <nlohmann/json.hpp>

#include "sdlens/core/error.hpp"
#include "sdlens/model/config.hpp"

namespace sdlens {

inline const char* hf_supported_model_types() { return "llama, mistral, qwen2, phi3, gpt2, gpt_neox, falcon, gemma, gemma2, gemma3_text, mpt, bert, roberta, distilbert"; }

namespace detail {

// Typed access to config.json keys; a key may have several historical names (GPT-2's n_embd is
// also hidden_size). Absent and null are the same: the family default applies.
class hf_keys {
public:
    hf_keys(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}

    const nlohmann::json* find(std::initializer_list<const char*> names) const
    {
        for (const char* n : names) {
            auto it = j_.find(n);
            if (it != j_.end() && !it->is_null()) return &*it;
        }
        return nullptr;
    }
    bool has(std::initializer_list<const char*> names) const { return find(names) != nullptr; }
    // The key is in the file, null included (HF tells an explicit null from its default).
    bool written(const char* name) const { return j_.contains(name); }

    std::int64_t positive(std::initializer_list<const char*> names) const
    {
        const auto* v = find(names);
        if (!v) fail_input(source_, std::string("config key '") + *names.begin() + "' is missing");
        return positive_value(*v, *names.begin());
    }
    // Per-layer lists (sliding windows) are sized by it before any tensor is seen: 2^16 bounds
    // every real model.
    std::int64_t layer_count(std::initializer_list<const char*> names) const
    {
        const std::int64_t n = positive(names);
        if (n > (std::int64_t(1) << 16)) fail_input(source_, "the layer count " + std::to_string(n) + " is impossibly large");
        return n;
    }
    std::int64_t positive_or(std::initializer_list<const char*> names, std::int64_t fallback) const
    {
        const auto* v = find(names);
        return v ? positive_value(*v, *names.begin()) : fallback;
    }
    double number_or(std::initializer_list<const char*> names, double fallback) const
    {
        const auto* v = find(names);
        if (!v) return fallback;
        if (!v->is_number() || !std::isfinite(v->get<double>()))
            fail_input(source_, std::string("config key '") + *names.begin() + "' is not a finite number");
        return v->get<double>();
    }
    bool boolean_or(std::initializer_list<const char*> names, bool fallback) const
    {
        const auto* v = find(names);
        if (!v) return fallback;
        if (!v->is_boolean()) fail_input(source_, std::string("config key '") + *names.begin() + "' is not true or false");
        return v->get<bool>();
    }
    std::string string_or(std::initializer_list<const char*> names, const std::string& fallback) const
    {
        const auto* v = find(names);
        if (!v) return fallback;
        if (!v->is_string()) fail_input(source_, std::string("config key '") + *names.begin() + "' is not a string");
        return v->get<std::string>();
    }
    // bos/eos ids: an integer, or a list whose first element counts (Llama 3 lists several eos).
    std::int64_t token_id(const char* name) const
    {
        const auto* v = find({name});
        if (v && v->is_array()) v = v->empty() ? nullptr : &v->front();
        if (!v) return -1;
        if (!v->is_number_integer() || v->get<std::int64_t>() < 0)
            fail_input(source_, std::string("config key '") + name + "' is not a token id");
        return v->get<std::int64_t>();
    }
    [[noreturn]] void fail(const std::string& problem) const { fail_input(source_, problem); }
    const std::string& source() const { return source_; }
    void require(bool ok, const std::string& problem) const
    {
        if (!ok) fail(problem);
    }

private:
    std::int64_t positive_value(const nlohmann::json& v, const char* name) const
    {
        // 2^40 bounds every size a real model has while keeping products of two sizes in int64.
        if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (std::int64_t(1) << 40))
            fail_input(source_, std::string("config key '") + name + "' is not a positive integer");
        return v.get<std::int64_t>();
    }

    const nlohmann::json& j_;
    std::string source_;
};

inline model_family hf_family(const hf_keys& k)
{
    struct entry {
        const char* model_type;
        const char* architecture;
        model_family family;
    };
    static constexpr entry known[] = {
        {"llama", "LlamaForCausalLM", model_family::llama},    {"mistral", "MistralForCausalLM", model_family::mistral},
        {"qwen2", "Qwen2ForCausalLM", model_family::qwen2},    {"phi3", "Phi3ForCausalLM", model_family::phi3},
        {"gpt2", "GPT2LMHeadModel", model_family::gpt2},       {"gpt_neox", "GPTNeoXForCausalLM", model_family::neox},
        {"falcon", "FalconForCausalLM", model_family::falcon},  {"gemma", "GemmaForCausalLM", model_family::gemma},
        {"gemma2", "Gemma2ForCausalLM", model_family::gemma2}, {"gemma3_text", "Gemma3ForCausalLM", model_family::gemma3},
        {"mpt", "MptForCausalLM", model_family::mpt},          {"bert", "BertModel", model_family::bert},
        {"roberta", "RobertaModel", model_family::roberta},    {"distilbert", "DistilBertModel", model_family::distilbert},
    };
    const std::string type = k.string_or({"model_type"}, "");
    std::string arch;
    if (const auto* a = k.find({"architectures"}); a && a->is_array() && !a->empty() && a->front().is_string())
        arch = a->front().get<std::string>();
    for (const auto& e : known)
        if (type == e.model_type || (type.empty() && arch == e.architecture)) return e.family;
    if (type == "gemma3")
        k.fail("model_type 'gemma3' is the multimodal Gemma 3 (Gemma3ForConditionalGeneration); its text model "
               "(model_type 'gemma3_text', Gemma3ForCausalLM, as the 1B model ships) is supported");
    k.fail("unsupported model_type '" + (type.empty() ? arch : type) + "' (supported: " + hf_supported_model_types() + ")");
}

inline activation_kind hf_gelu(const hf_keys& k, const std::string& act)
{
    if (act == "gelu") return activation_kind::gelu_erf;
    if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") return activation_kind::gelu_tanh;
    k.fail("unsupported activation '" + act + "'");
}

// rope_scaling (rope_parameters in transformers v5) as transformers reads it: rope_type (or its
// old name type), with the keys each type needs; a type sdlens does not implement is kept as
// `unsupported`, so that only the forward pass refuses the model. Needs rotary_dims.
inline void hf_rope_scaling(const hf_keys& k, model_config& c)
{
    const nlohmann::json* r = k.find({"rope_scaling", "rope_parameters"});
    if (!r || c.rope == rope_style::none) return;
    if (!r->is_object()) k.fail("config key 'rope_scaling' is not an object");
    // transformers v5 keeps one set of parameters per layer type (Gemma 3): the global layers'
    // scaling, and the sliding layers' base (they are never scaled).
    if (r->contains("full_attention") || r->contains("sliding_attention")) {
        for (const auto& [type, sub] : r->items())
            if (type != "full_attention" && type != "sliding_attention")
                k.fail("config key 'rope_parameters' has parameters for layer type '" + type + "'");
        if (const auto it = r->find("sliding_attention"); it != r->end()) {
            if (!it->is_object()) k.fail("config key 'rope_parameters.sliding_attention' is not an object");
            const hf_keys local(*it, k.source() + ": rope_parameters.sliding_attention");
            const std::string type = local.string_or({"rope_type", "type"}, "default");
            local.require(type == "default", "sliding layers with rope_type '" + type + "' are unsupported");
            c.rope_theta_local = local.number_or({"rope_theta"}, c.rope_theta_local);
        }
        const auto it = r->find("full_attention");
        if (it == r->end()) return;
        r = &*it;
        if (!r->is_object()) k.fail("config key 'rope_parameters.full_attention' is not an object");
    }
    const hf_keys s(*r, k.source() + ": rope_scaling");
    if (s.has({"rope_theta"})) c.rope_theta = s.number_or({"rope_theta"}, c.rope_theta);
    rope_scaling_config& o = c.rope_scaling;
    o.name = s.string_or({"rope_type", "type"}, "default");
    const std::string& type = o.name;
    if (type == "default") return;
    auto factor = [&](bool required) {
        if (required && !s.has({"factor"})) s.fail("'factor' is missing for rope_type '" + type + "'");
        const double f = s.number_or({"factor"}, 1.0);
        s.require(f > 0 && f < 1e6, "'factor' must be in (0, 1e6)");
        return f;
    };
    // Phi-3 keeps the pre-extension context at the top level; later configs inside rope_scaling.
    o.original_max_positions = k.positive_or({"original_max_position_embeddings"}, s.positive_or({"original_max_position_embeddings"}, 0));
    const std::int64_t pairs = c.rotary_dims / 2;
    if (type == "linear") {
        o.kind = rope_scaling_kind::linear;
        o.factor = factor(true);
    } else if (type == "dynamic") {
        o.kind = rope_scaling_kind::dynamic;
        o.factor = factor(true);
        s.require(c.rotary_dims > 2, "dynamic RoPE needs more than 2 rotary dimensions");
    } else if (type == "llama3") {
        o.kind = rope_scaling_kind::llama3;
        o.factor = factor(true);
        s.require(o.original_max_positions > 0, "'original_max_position_embeddings' is missing for rope_type 'llama3'");
        s.require(s.has({"low_freq_factor"}) && s.has({"high_freq_factor"}), "'low_freq_factor' and 'high_freq_factor' are needed for rope_type 'llama3'");
        o.low_freq_factor = s.number_or({"low_freq_factor"}, 1);
        o.high_freq_factor = s.number_or({"high_freq_factor"}, 4);
        s.require(o.low_freq_factor > 0 && o.high_freq_factor > o.low_freq_factor, "llama3 needs 0 < low_freq_factor < high_freq_factor");
    } else if (type == "yarn") {
        o.kind = rope_scaling_kind::yarn;
        o.factor = factor(true);
        o.attention_factor = s.number_or({"attention_factor"}, 0);
        s.require(o.attention_factor >= 0, "'attention_factor' must be positive");
        o.beta_fast = s.number_or({"beta_fast"}, 32);
        o.beta_slow = s.number_or({"beta_slow"}, 1);
        s.require(o.beta_fast > 0 && o.beta_slow > 0, "'beta_fast' and 'beta_slow' must be positive");
        o.mscale = s.number_or({"mscale"}, 0);
        o.mscale_all_dim = s.number_or({"mscale_all_dim"}, 0);
        o.truncate = s.boolean_or({"truncate"}, true);
        s.require(c.rope_theta > 1, "yarn needs rope_theta > 1");
    } else if (type == "longrope" || type == "su") {
        o.kind = rope_scaling_kind::longrope;
        o.factor = factor(false);
        o.attention_factor = s.number_or({"attention_factor"}, 0);
        s.require(o.attention_factor >= 0, "'attention_factor' must be positive");
        for (auto [key, out] : {std::pair{"short_factor", &o.short_factor}, std::pair{"long_factor", &o.long_factor}}) {
            const nlohmann::json* v = s.find({key});
            s.require(v && v->is_array() && static_cast<std::int64_t>(v->size()) == pairs,
                      std::string("'") + key + "' must be a list of " + std::to_string(pairs) + " numbers (one per rotary pair)");
            for (const auto& x : *v) {
                s.require(x.is_number() && std::isfinite(x.get<double>()) && x.get<double>() > 0, std::string("'") + key + "' holds a value that is not a positive number");
                out->push_back(x.get<double>());
            }
        }
    } else {
        o.kind = rope_scaling_kind::unsupported;
    }
}

// Llama, Mistral, Qwen2 and Phi-3 share one layout of keys.
inline void hf_llama_like(const hf_keys& k, model_config& c)
{
    c.hidden_size = k.positive({"hidden_size"});
    c.num_layers = k.layer_count({"num_hidden_layers"});
    c.num_heads = k.positive({"num_attention_heads"});
    c.num_kv_heads = k.positive_or({"num_key_value_heads"}, c.num_heads);
    c.ffn_size = k.positive({"intermediate_size"});
    c.vocab_size = k.positive({"vocab_size"});
    c.max_positions = k.positive_or({"max_position_embeddings"}, 2048);
    c.norm = norm_kind::rms;
    c.norm_eps = k.number_or({"rms_norm_eps"}, 1e-6);
    const auto act = k.string_or({"hidden_act"}, "silu");
    k.require(act == "silu", "unsupported hidden_act '" + act + "' (only silu gated MLPs)");
    c.activation = activation_kind::swiglu;
    c.rope = rope_style::half;
    c.rope_theta = k.number_or({"rope_theta"}, 10000.0);
    c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, false);
}

// The 1-based layers that layer_types (one entry per layer) names "sliding_attention".
inline std::vector<int> hf_sliding_layers(const hf_keys& k, const nlohmann::json& types, std::int64_t num_layers)
{
    k.require(types.is_array() && static_cast<std::int64_t>(types.size()) == num_layers,
              "config key 'layer_types' is not a list of " + std::to_string(num_layers) + " layer types");
    std::vector<int> layers;
    for (std::size_t i = 0; i < types.size(); ++i) {
        const auto& t = types[i];
        k.require(t.is_string() && (t == "sliding_attention" || t == "full_attention"),
                  "config key 'layer_types' has an entry that is neither 'sliding_attention' nor 'full_attention'");
        if (t == "sliding_attention") layers.push_back(static_cast<int>(i + 1));
    }
    return layers;
}

// A window in the layers listed: none when no layer slides, every layer when all do.
inline void set_window(model_config& c, std::int64_t window, const std::vector<int>& layers)
{
    if (layers.empty()) return;
    c.sliding_window = window;
    if (static_cast<std::int64_t>(layers.size()) < c.num_layers) c.sliding_window_layers = layers;
}

// Sliding-window attention as transformers reads it: Mistral's window applies to every layer
// (default 4096 when the key is absent, none when null), Phi-3's likewise (default none);
// Qwen2's only with use_sliding_window, in the layers layer_types names "sliding_attention" or,
// without layer_types, from max_window_layers (0-based; default 28) on.
inline void hf_sliding_window(const hf_keys& k, model_config& c)
{
    if (c.family == model_family::mistral || c.family == model_family::phi3) {
        if (k.has({"sliding_window"})) c.sliding_window = k.positive({"sliding_window"});
        else if (c.family == model_family::mistral && !k.written("sliding_window")) c.sliding_window = 4096;
        return;
    }
    if (c.family != model_family::qwen2 || !k.boolean_or({"use_sliding_window"}, false) || !k.has({"sliding_window"})) return;
    const std::int64_t window = k.positive({"sliding_window"});
    std::vector<int> layers;
    if (const auto* types = k.find({"layer_types"})) {
        layers = hf_sliding_layers(k, *types, c.num_layers);
    } else {
        std::int64_t first = 28;
        if (const auto* m = k.find({"max_window_layers"})) {
            k.require(m->is_number_integer() && m->get<std::int64_t>() >= 0, "config key 'max_window_layers' is not a count of layers");
            first = m->get<std::int64_t>();
        }
        for (std::int64_t i = first; i < c.num_layers; ++i) layers.push_back(static_cast<int>(i + 1));
    }
    set_window(c, window, layers);
}

// Gemma, Gemma 2 and Gemma 3 (text): Llama's keys with Gemma's defaults, a GeGLU FFN with
// tanh GELU, RMSNorm gains 1 + w, embeddings times sqrt(d); Gemma 2 and 3 add the sandwich
// norms, query_pre_attn_scalar and alternating sliding windows (every other layer from the
// first in Gemma 2; five of every six in Gemma 3, whose sliding layers rotate with
// rope_local_base_freq), Gemma 2 the tanh soft-capping of scores and logits, Gemma 3 q/k norms.
inline void hf_gemma(const hf_keys& k, model_config& c)
{
    const bool v2 = c.family == model_family::gemma2, v3 = c.family == model_family::gemma3;
    c.hidden_size = k.positive({"hidden_size"});
    c.num_layers = k.layer_count({"num_hidden_layers"});
    c.num_heads = k.positive({"num_attention_heads"});
    c.num_kv_heads = k.positive_or({"num_key_value_heads"}, c.num_heads);
    c.head_dim = k.positive_or({"head_dim"}, 256);
    c.ffn_size = k.positive({"intermediate_size"});
    c.vocab_size = k.positive({"vocab_size"});
    c.max_positions = k.positive_or({"max_position_embeddings"}, v3 ? 131072 : 8192);
    c.norm = norm_kind::rms;
    c.norm_eps = k.number_or({"rms_norm_eps"}, 1e-6);
    c.norm_weight_offset = 1;
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
    // transformers reads hidden_activation (absent: the tanh approximation Gemma was trained with).
    const auto act = k.string_or({"hidden_activation"}, "gelu_pytorch_tanh");
    k.require(act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast",
              "unsupported hidden_activation '" + act + "' (Gemma's gated MLP with the tanh GELU is)");
    c.activation = activation_kind::geglu_tanh;
    c.rope = rope_style::half;
    c.rotary_dims = c.head_dim;
    c.rope_theta = k.number_or({"rope_theta"}, v3 ? 1e6 : 10000.0);
    c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, true);
    c.bias.qkv = c.bias.o = k.boolean_or({"attention_bias"}, false);
    if (!v2 && !v3) return;
    c.sandwich_norms = true;
    c.qk_norm = v3;
    const double scalar = k.number_or({"query_pre_attn_scalar"}, 256);
    k.require(scalar > 0, "config key 'query_pre_attn_scalar' must be positive");
    c.attention_scale = 1 / std::sqrt(scalar);
    // Gemma 2 caps by default; an explicit null turns a cap off.
    c.attention_softcap = k.written("attn_logit_softcapping") ? k.number_or({"attn_logit_softcapping"}, 0) : v2 ? 50.0 : 0.0;
    c.logit_softcap = k.written("final_logit_softcapping") ? k.number_or({"final_logit_softcapping"}, 0) : v2 ? 30.0 : 0.0;
    k.require(c.attention_softcap >= 0 && c.logit_softcap >= 0, "soft-capping values must not be negative");
    if (v3) c.rope_theta_local = k.number_or({"rope_local_base_freq"}, 10000.0);
    // The window: 4096 by default; null means none (every layer global).
    if (k.written("sliding_window") && !k.has({"sliding_window"})) return;
    const std::int64_t window = k.positive_or({"sliding_window"}, 4096);
    std::vector<int> layers;
    if (const auto* types = k.find({"layer_types"})) {
        layers = hf_sliding_layers(k, *types, c.num_layers);
    } else {
        // transformers' default: layer i (0-based) slides unless (i + 1) is a multiple of the period.
        const std::int64_t period = v2 ? 2 : k.positive_or({"sliding_window_pattern"}, 6);
        for (std::int64_t i = 0; i < c.num_layers; ++i)
            if ((i + 1) % period != 0) layers.push_back(static_cast<int>(i + 1));
    }
    set_window(c, window, layers);
}

// MPT as transformers' MptForCausalLM computes it: LayerNorm without bias (transformers drops
// the bias even where a file has one), exact GELU, no biases at all (no_bias), fused Wqkv, and
// ALiBi with alibi_bias_max (8) in place of any position embedding. What transformers' MPT does
// not compute either (no ALiBi, clip_qkv, qk_ln, prefix_lm, logit_scale) is refused.
inline void hf_mpt(const hf_keys& k, model_config& c)
{
    c.hidden_size = k.positive({"d_model", "hidden_size"});
    c.num_layers = k.layer_count({"n_layers", "num_hidden_layers"});
    c.num_heads = k.positive({"n_heads", "num_attention_heads"});
    c.num_kv_heads = c.num_heads;
    const double ratio = k.number_or({"expansion_ratio"}, 4);
    const double ffn = ratio * static_cast<double>(c.hidden_size);
    k.require(ratio > 0 && ffn == std::floor(ffn) && ffn <= double(std::int64_t(1) << 40),
              "config key 'expansion_ratio' times d_model is not a whole FFN size");
    c.ffn_size = static_cast<std::int64_t>(ffn);
    c.vocab_size = k.positive({"vocab_size"});
    c.max_positions = k.positive_or({"max_seq_len", "max_position_embeddings"}, 2048);
    c.norm = norm_kind::layer;
    c.norm_eps = k.number_or({"layer_norm_epsilon"}, 1e-5);
    const std::string norm = k.string_or({"norm_type"}, "low_precision_layernorm");
    k.require(norm == "low_precision_layernorm" || norm == "layernorm", "unsupported norm_type '" + norm + "'");
    c.activation = activation_kind::gelu_erf;
    c.rope = rope_style::none;
    c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, true);
    k.require(k.boolean_or({"no_bias"}, true), "config key 'no_bias' is false: transformers' MPT has no biases");
    k.require(!k.has({"logit_scale"}), "config key 'logit_scale' is set: unsupported");
    const nlohmann::json* a = k.find({"attn_config"});
    const nlohmann::json none = nlohmann::json::object();
    if (a && !a->is_object()) k.fail("config key 'attn_config' is not an object");
    const hf_keys attn(a ? *a : none, k.source() + ": attn_config");
    attn.require(attn.boolean_or({"alibi"}, true), "'alibi' is false: MPT without ALiBi is unsupported");
    attn.require(!attn.has({"clip_qkv"}), "'clip_qkv' is set: clamping q, k and v is unsupported");
    attn.require(!attn.boolean_or({"qk_ln"}, false), "'qk_ln' is true: unsupported");
    attn.require(!attn.boolean_or({"prefix_lm"}, false), "'prefix_lm' is true: a bidirectional prefix is unsupported");
    c.alibi_bias_max = attn.number_or({"alibi_bias_max"}, 8);
    attn.require(c.alibi_bias_max > 0, "'alibi_bias_max' must be positive");
    c.attention_scale = attn.number_or({"softmax_scale"}, 0);
    attn.require(c.attention_scale >= 0, "'softmax_scale' must be positive");
}

// BERT, RoBERTa and DistilBERT encoders: post-LayerNorm blocks with biases everywhere, learned
// absolute positions (RoBERTa's start at pad_token_id + 1), token type 0 added (BERT, RoBERTa),
// LayerNorm of the embedding sum, bidirectional attention. Only the encoder is read (no task head).
inline void hf_encoder(const hf_keys& k, model_config& c)
{
    const bool distil = c.family == model_family::distilbert;
    c.hidden_size = k.positive({distil ? "dim" : "hidden_size"});
    c.num_layers = k.layer_count({distil ? "n_layers" : "num_hidden_layers"});
    c.num_heads = k.positive({distil ? "n_heads" : "num_attention_heads"});
    c.num_kv_heads = c.num_heads;
    c.ffn_size = k.positive({distil ? "hidden_dim" : "intermediate_size"});
    c.vocab_size = k.positive({"vocab_size"});
    c.max_positions = k.positive_or({"max_position_embeddings"}, 512);
    c.norm = norm_kind::layer;
    c.norm_eps = distil ? 1e-12 : k.number_or({"layer_norm_eps"}, 1e-12);
    c.activation = hf_gelu(k, k.string_or({distil ? "activation" : "hidden_act"}, "gelu"));
    c.rope = rope_style::none;
    c.learned_positions = true;
    c.bias = {true, true, true, true};
    c.post_norm = c.bidirectional = true;
    if (!distil) {
        const std::string pos = k.string_or({"position_embedding_type"}, "absolute");
        k.require(pos == "absolute", "position_embedding_type '" + pos + "' is unsupported (absolute is)");
        c.token_types = k.positive_or({"type_vocab_size"}, 2);
    }
    if (c.family == model_family::roberta) {
        const auto* pad = k.find({"pad_token_id"});
        const std::int64_t padding = pad ? (pad->is_number_integer() && pad->get<std::int64_t>() >= 0 ? pad->get<std::int64_t>() : -1) : 1;
        k.require(padding >= 0 && padding < c.max_positions, "config key 'pad_token_id' is not a position index");
        c.position_offset = padding + 1;
    }
}

inline void hf_head_dim(const hf_keys& k, model_config& c, bool from_config)
{
    if (from_config && k.has({"head_dim"})) {
        c.head_dim = k.positive({"head_dim"});
    } else {
        k.require(c.hidden_size % c.num_heads == 0, "hidden size " + std::to_string(c.hidden_size) +
                                                        " is not a multiple of the head count " + std::to_string(c.num_heads));
        c.head_dim = c.hidden_size / c.num_heads;
    }
}

}  // namespace detail

// The model_config a config.json describes; weight_dtype is left for the tensors to tell.
inline model_config hf_model_config(const nlohmann::json& config, const std::string& source)
{
    if (!config.is_object()) fail_input(source, "config is not a JSON object");
    const detail::hf_keys k(config, source);
    model_config c;
    c.family = detail::hf_family(k);
    c.bos_token = k.token_id("bos_token_id");
    c.eos_token = k.token_id("eos_token_id");
    switch (c.family) {
    case model_family::llama:
    case model_family::mistral:
    case model_family::qwen2:
    case model_family::phi3: {
        detail::hf_llama_like(k, c);
        detail::hf_head_dim(k, c, true);
        c.rotary_dims = c.head_dim;
        if (c.family == model_family::phi3) {
            const double factor = k.number_or({"partial_rotary_factor"}, 1.0);
            k.require(factor > 0 && factor <= 1, "config key 'partial_rotary_factor' is not in (0, 1]");
            c.rotary_dims = static_cast<std::int64_t>(static_cast<double>(c.head_dim) * factor);
        }
        if (c.family == model_family::qwen2) c.bias.qkv = true;
        if (c.family == model_family::llama) {
            c.bias.qkv = c.bias.o = k.boolean_or({"attention_bias"}, false);
            c.bias.ffn = k.boolean_or({"mlp_bias"}, false);
        }
        break;
    }
    case model_family::gemma:
    case model_family::gemma2:
    case model_family::gemma3:
        detail::hf_gemma(k, c);
        break;
    case model_family::mpt:
        detail::hf_mpt(k, c);
        detail::hf_head_dim(k, c, false);
        break;
    case model_family::bert:
    case model_family::roberta:
    case model_family::distilbert:
        detail::hf_encoder(k, c);
        detail::hf_head_dim(k, c, false);
        break;
    case model_family::gpt2: {
        c.hidden_size = k.positive({"n_embd", "hidden_size"});
        c.num_layers = k.layer_count({"n_layer", "num_hidden_layers"});
        c.num_heads = k.positive({"n_head", "num_attention_heads"});
        c.num_kv_heads = c.num_heads;
        detail::hf_head_dim(k, c, false);
        c.ffn_size = k.positive_or({"n_inner"}, 4 * c.hidden_size);
        c.vocab_size = k.positive({"vocab_size"});
        c.max_positions = k.positive({"n_positions", "max_position_embeddings"});
        c.norm = norm_kind::layer;
        c.norm_eps = k.number_or({"layer_norm_epsilon"}, 1e-5);
        c.activation = detail::hf_gelu(k, k.string_or({"activation_function"}, "gelu_new"));
        c.rope = rope_style::none;
        c.learned_positions = true;
        c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, true);
        c.bias = {true, true, true, true};
        k.require(!k.boolean_or({"scale_attn_by_inverse_layer_idx"}, false),
                  "config key 'scale_attn_by_inverse_layer_idx' is true: unsupported");
        k.require(k.boolean_or({"scale_attn_weights"}, true), "config key 'scale_attn_weights' is false: unsupported");
        break;
    }
    case model_family::neox: {
        c.hidden_size = k.positive({"hidden_size"});
        c.num_layers = k.layer_count({"num_hidden_layers"});
        c.num_heads = k.positive({"num_attention_heads"});
        c.num_kv_heads = c.num_heads;
        detail::hf_head_dim(k, c, false);
        c.ffn_size = k.positive({"intermediate_size"});
        c.vocab_size = k.positive({"vocab_size"});
        c.max_positions = k.positive_or({"max_position_embeddings"}, 2048);
        c.norm = norm_kind::layer;
        c.norm_eps = k.number_or({"layer_norm_eps"}, 1e-5);
        c.activation = detail::hf_gelu(k, k.string_or({"hidden_act"}, "gelu"));
        c.parallel_residual = k.boolean_or({"use_parallel_residual"}, true);
        c.rope = rope_style::half;
        const double pct = k.number_or({"rotary_pct", "partial_rotary_factor"}, 0.25);
        k.require(pct > 0 && pct <= 1, "config key 'rotary_pct' is not in (0, 1]");
        c.rotary_dims = static_cast<std::int64_t>(static_cast<double>(c.head_dim) * pct);  // int() as transformers does
        c.rope_theta = k.number_or({"rope_theta", "rotary_emb_base"}, 10000.0);
        c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, false);
        const bool attention_bias = k.boolean_or({"attention_bias"}, true);
        c.bias = {attention_bias, attention_bias, true, true};
        break;
    }
    case model_family::falcon: {
        k.require(!k.boolean_or({"alibi"}, false), "config key 'alibi' is true: ALiBi Falcon models are unsupported");
        k.require(!k.boolean_or({"apply_residual_connection_post_layernorm"}, false),
                  "config key 'apply_residual_connection_post_layernorm' is true: unsupported");
        c.hidden_size = k.positive({"hidden_size", "n_embd"});
        c.num_layers = k.layer_count({"num_hidden_layers", "n_layer"});
        c.num_heads = k.positive({"num_attention_heads", "n_head"});
        detail::hf_head_dim(k, c, false);
        const bool new_arch = k.boolean_or({"new_decoder_architecture"}, false);
        const bool multi_query = k.boolean_or({"multi_query"}, true);
        const bool parallel = k.boolean_or({"parallel_attn"}, true);
        const std::int64_t kv = k.positive_or({"num_kv_heads", "n_head_kv"}, c.num_heads);
        if (new_arch) {
            k.require(c.num_heads % kv == 0, "num_attention_heads is not a multiple of num_kv_heads");
            const std::int64_t lns = k.positive_or({"num_ln_in_parallel_attn"}, 2);
            k.require(lns == 1 || lns == 2, "config key 'num_ln_in_parallel_attn' is neither 1 nor 2");
            k.require(parallel, "new_decoder_architecture without parallel_attn is unsupported");
            c.num_kv_heads = kv;
            c.parallel_residual = true;
            c.shared_input_norm = lns == 1;
        } else {
            c.num_kv_heads = multi_query ? 1 : c.num_heads;
            k.require(multi_query || kv == c.num_heads, "num_kv_heads differs from num_attention_heads without multi_query");
            c.parallel_residual = parallel;
            c.shared_input_norm = parallel;
        }
        c.ffn_size = k.positive_or({"ffn_hidden_size"}, 4 * c.hidden_size);
        c.vocab_size = k.positive({"vocab_size"});
        c.max_positions = k.positive_or({"max_position_embeddings"}, 2048);
        c.norm = norm_kind::layer;
        c.norm_eps = k.number_or({"layer_norm_epsilon"}, 1e-5);
        c.activation = detail::hf_gelu(k, k.string_or({"activation"}, "gelu"));
        c.rope = rope_style::half;
        c.rotary_dims = c.head_dim;
        c.rope_theta = k.number_or({"rope_theta"}, 10000.0);
        c.tied_embeddings = k.boolean_or({"tie_word_embeddings"}, true);
        const bool bias = k.boolean_or({"bias"}, false);
        c.bias = {bias, bias, bias, true};
        break;
    }
    }
    k.require(c.head_dim <= (std::int64_t(1) << 40) / c.num_heads, "heads x head_dim is impossibly large");
    k.require(c.num_heads % c.num_kv_heads == 0, "the head count " + std::to_string(c.num_heads) +
                                                     " is not a multiple of the key/value head count " + std::to_string(c.num_kv_heads));
    k.require(c.rotary_dims % 2 == 0 && c.rotary_dims <= c.head_dim,
              "rotary dimensions " + std::to_string(c.rotary_dims) + " are odd or exceed the head size");
    detail::hf_rope_scaling(k, c);
    detail::hf_sliding_window(k, c);
    return c;
}

}  // namespace sdlens
