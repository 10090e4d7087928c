#pragma once
// Writes a model as a Hugging Face checkpoint directory: config.json with the keys the family's
// real configs use, and model.safetensors laid out as the family's real files are (fused q/k/v,
// GPT-2's transposed Conv1D, per-head interleaving, no lm_head when tied). Every tensor, norms
// and biases included, is stored in the one dtype asked for, so reading the directory back gives
// exactly the dense weights rounded to that dtype.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/core/compiled.hpp"
#include "sdlens/io/safetensors_writer.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/hf_config.hpp"
#include "sdlens/model/hf_layout.hpp"

namespace sdlens {

inline const char* torch_dtype_name(dtype t)
{
    switch (t) {
    case dtype::f32: return "float32";
    case dtype::f16: return "float16";
    case dtype::bf16: return "bfloat16";
    default: return "?";
    }
}

namespace detail {

inline nlohmann::json token_or_null(std::int64_t id) { return id < 0 ? nlohmann::json(nullptr) : nlohmann::json(id); }

inline const char* hf_activation_value(activation_kind a)
{
    switch (a) {
    case activation_kind::swiglu: return "silu";
    case activation_kind::gelu_tanh: return "gelu_new";
    case activation_kind::gelu_erf: return "gelu";
    case activation_kind::geglu_tanh: return "gelu_pytorch_tanh";
    }
    return "?";
}

// A fraction f with int(hd * f) == rotary_dims, as transformers computes it.
inline double rotary_fraction(const model_config& c)
{
    double f = static_cast<double>(c.rotary_dims) / static_cast<double>(c.head_dim);
    if (static_cast<std::int64_t>(static_cast<double>(c.head_dim) * f) < c.rotary_dims) f = std::nextafter(f, 2.0);
    return f;
}

// rope_scaling as transformers writes it; divisors (a GGUF form) have none.
inline nlohmann::json hf_rope_scaling_value(const model_config& c)
{
    using nlohmann::json;
    const rope_scaling_config& r = c.rope_scaling;
    json j;
    switch (r.kind) {
    case rope_scaling_kind::none: return nullptr;
    case rope_scaling_kind::linear:
    case rope_scaling_kind::dynamic:
        j = {{"rope_type", rope_scaling_name(r.kind)}, {"factor", r.factor}};
        if (r.original_max_positions > 0) j["original_max_position_embeddings"] = r.original_max_positions;
        break;
    case rope_scaling_kind::llama3:
        j = {{"rope_type", "llama3"}, {"factor", r.factor}, {"low_freq_factor", r.low_freq_factor},
             {"high_freq_factor", r.high_freq_factor}, {"original_max_position_embeddings", r.original_max_positions}};
        break;
    case rope_scaling_kind::yarn:
        j = {{"rope_type", "yarn"}, {"factor", r.factor}, {"beta_fast", r.beta_fast}, {"beta_slow", r.beta_slow}, {"truncate", r.truncate}};
        if (r.attention_factor > 0) j["attention_factor"] = r.attention_factor;
        if (r.mscale != 0) j["mscale"] = r.mscale;
        if (r.mscale_all_dim != 0) j["mscale_all_dim"] = r.mscale_all_dim;
        if (r.original_max_positions > 0) j["original_max_position_embeddings"] = r.original_max_positions;
        break;
    case rope_scaling_kind::longrope:
        j = {{"rope_type", "longrope"}, {"short_factor", r.short_factor}, {"long_factor", r.long_factor}};
        if (r.factor != 1) j["factor"] = r.factor;
        if (r.attention_factor > 0) j["attention_factor"] = r.attention_factor;
        if (r.original_max_positions > 0) j["original_max_position_embeddings"] = r.original_max_positions;
        break;
    case rope_scaling_kind::divisors:
    case rope_scaling_kind::unsupported:
        throw input_error(std::string("RoPE scaling '") + (r.name.empty() ? rope_scaling_name(r.kind) : r.name) + "' has no config.json form sdlens writes");
    }
    return j;
}

inline nlohmann::json hf_config_keys(const model_config& c)
{
    using nlohmann::json;
    json j;
    const bool standard_head_dim = c.num_heads > 0 && c.head_dim * c.num_heads == c.hidden_size;
    if (c.sliding_window > 0) {
        const bool per_layer = c.family == model_family::qwen2 || c.family == model_family::gemma2 || c.family == model_family::gemma3;
        const bool windowed = per_layer || c.family == model_family::mistral || c.family == model_family::phi3;
        if (!windowed || (!c.sliding_window_layers.empty() && !per_layer))
            throw input_error(std::string("a sliding window") + (windowed ? " in some layers only" : "") + " has no " +
                              family_name(c.family) + " config.json form");
    }
    switch (c.family) {
    case model_family::llama:
    case model_family::mistral:
    case model_family::qwen2:
    case model_family::phi3: {
        static constexpr const char* arch[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Phi3ForCausalLM"};
        j["architectures"] = {arch[static_cast<int>(c.family)]};
        j["model_type"] = family_name(c.family);
        j["hidden_size"] = c.hidden_size;
        j["intermediate_size"] = c.ffn_size;
        j["num_hidden_layers"] = c.num_layers;
        j["num_attention_heads"] = c.num_heads;
        j["num_key_value_heads"] = c.num_kv_heads;
        if (c.family == model_family::llama || c.family == model_family::mistral || !standard_head_dim) j["head_dim"] = c.head_dim;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["rms_norm_eps"] = c.norm_eps;
        j["rope_theta"] = c.rope_theta;
        j["rope_scaling"] = nullptr;
        j["hidden_act"] = hf_activation_value(c.activation);
        j["tie_word_embeddings"] = c.tied_embeddings;
        if (c.family == model_family::llama) {
            j["attention_bias"] = c.bias.qkv;
            j["mlp_bias"] = c.bias.ffn;
        }
        const nlohmann::json window = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
        if (c.family == model_family::mistral) j["sliding_window"] = window;
        if (c.family == model_family::qwen2) {
            j["use_sliding_window"] = c.sliding_window > 0;
            j["sliding_window"] = c.sliding_window > 0 ? c.sliding_window : c.max_positions;
            if (c.sliding_window > 0) {
                std::vector<std::string> types;
                for (int l = 1; l <= c.num_layers; ++l) types.push_back(c.attention_window(l) > 0 ? "sliding_attention" : "full_attention");
                j["layer_types"] = types;
            }
            j["max_window_layers"] = c.num_layers;
        }
        if (c.family == model_family::phi3) {
            j["original_max_position_embeddings"] = c.max_positions;
            j["sliding_window"] = window;
            if (c.rotary_dims != c.head_dim) j["partial_rotary_factor"] = rotary_fraction(c);
        }
        break;
    }
    case model_family::gemma:
    case model_family::gemma2:
    case model_family::gemma3: {
        static constexpr const char* arch[] = {"GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM"};
        static constexpr const char* type[] = {"gemma", "gemma2", "gemma3_text"};
        const int v = static_cast<int>(c.family) - static_cast<int>(model_family::gemma);
        j["architectures"] = {arch[v]};
        j["model_type"] = type[v];
        j["hidden_size"] = c.hidden_size;
        j["intermediate_size"] = c.ffn_size;
        j["num_hidden_layers"] = c.num_layers;
        j["num_attention_heads"] = c.num_heads;
        j["num_key_value_heads"] = c.num_kv_heads;
        j["head_dim"] = c.head_dim;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["rms_norm_eps"] = c.norm_eps;
        j["rope_theta"] = c.rope_theta;
        j["rope_scaling"] = nullptr;
        j["hidden_act"] = j["hidden_activation"] = hf_activation_value(c.activation);
        j["tie_word_embeddings"] = c.tied_embeddings;
        j["attention_bias"] = c.bias.qkv;
        if (c.family == model_family::gemma) break;
        // query_pre_attn_scalar is an integer in every released config: write the one the
        // scale came from, so that reading it back gives the same scale.
        double scalar = 1 / (c.score_scale() * c.score_scale());
        if (std::abs(scalar - std::round(scalar)) < 1e-9 * scalar) scalar = std::round(scalar);
        j["query_pre_attn_scalar"] = scalar;
        j["attn_logit_softcapping"] = c.attention_softcap > 0 ? json(c.attention_softcap) : json(nullptr);
        j["final_logit_softcapping"] = c.logit_softcap > 0 ? json(c.logit_softcap) : json(nullptr);
        j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
        if (c.sliding_window > 0) {
            std::vector<std::string> types;
            for (int l = 1; l <= c.num_layers; ++l) types.push_back(c.attention_window(l) > 0 ? "sliding_attention" : "full_attention");
            j["layer_types"] = types;
        }
        if (c.family == model_family::gemma3) j["rope_local_base_freq"] = c.rope_theta_local;
        break;
    }
    case model_family::bert:
    case model_family::roberta:
        j["architectures"] = {c.family == model_family::bert ? "BertModel" : "RobertaModel"};
        j["model_type"] = family_name(c.family);
        j["hidden_size"] = c.hidden_size;
        j["num_hidden_layers"] = c.num_layers;
        j["num_attention_heads"] = c.num_heads;
        j["intermediate_size"] = c.ffn_size;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["type_vocab_size"] = c.token_types;
        j["layer_norm_eps"] = c.norm_eps;
        j["hidden_act"] = hf_activation_value(c.activation);
        j["position_embedding_type"] = "absolute";
        if (c.family == model_family::roberta) j["pad_token_id"] = c.position_offset - 1;
        break;
    case model_family::distilbert:
        j["architectures"] = {"DistilBertModel"};
        j["model_type"] = "distilbert";
        j["dim"] = c.hidden_size;
        j["n_layers"] = c.num_layers;
        j["n_heads"] = c.num_heads;
        j["hidden_dim"] = c.ffn_size;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["activation"] = hf_activation_value(c.activation);
        break;
    case model_family::mpt:
        j["architectures"] = {"MptForCausalLM"};
        j["model_type"] = "mpt";
        j["d_model"] = c.hidden_size;
        j["n_heads"] = c.num_heads;
        j["n_layers"] = c.num_layers;
        j["expansion_ratio"] = c.ffn_size % c.hidden_size == 0 ? json(c.ffn_size / c.hidden_size)
                                                              : json(static_cast<double>(c.ffn_size) / static_cast<double>(c.hidden_size));
        j["max_seq_len"] = c.max_positions;
        j["vocab_size"] = c.vocab_size;
        j["layer_norm_epsilon"] = c.norm_eps;
        j["no_bias"] = true;
        j["attn_config"] = {{"alibi", true}, {"alibi_bias_max", c.alibi_bias_max},
                            {"softmax_scale", c.attention_scale > 0 ? json(c.attention_scale) : json(nullptr)}};
        j["tie_word_embeddings"] = c.tied_embeddings;
        break;
    case model_family::gpt2:
        j["architectures"] = {"GPT2LMHeadModel"};
        j["model_type"] = "gpt2";
        j["n_embd"] = c.hidden_size;
        j["n_layer"] = c.num_layers;
        j["n_head"] = c.num_heads;
        j["n_inner"] = c.ffn_size == 4 * c.hidden_size ? json(nullptr) : json(c.ffn_size);
        j["n_positions"] = c.max_positions;
        j["n_ctx"] = c.max_positions;
        j["vocab_size"] = c.vocab_size;
        j["layer_norm_epsilon"] = c.norm_eps;
        j["activation_function"] = hf_activation_value(c.activation);
        j["tie_word_embeddings"] = c.tied_embeddings;
        break;
    case model_family::neox:
        j["architectures"] = {"GPTNeoXForCausalLM"};
        j["model_type"] = "gpt_neox";
        j["hidden_size"] = c.hidden_size;
        j["intermediate_size"] = c.ffn_size;
        j["num_hidden_layers"] = c.num_layers;
        j["num_attention_heads"] = c.num_heads;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["rotary_pct"] = rotary_fraction(c);
        j["rotary_emb_base"] = c.rope_theta;
        j["layer_norm_eps"] = c.norm_eps;
        j["use_parallel_residual"] = c.parallel_residual;
        j["hidden_act"] = hf_activation_value(c.activation);
        j["attention_bias"] = c.bias.qkv;
        j["tie_word_embeddings"] = c.tied_embeddings;
        break;
    case model_family::falcon: {
        const auto style = falcon_style_of(c);
        j["architectures"] = {"FalconForCausalLM"};
        j["model_type"] = "falcon";
        j["hidden_size"] = c.hidden_size;
        j["num_hidden_layers"] = c.num_layers;
        j["num_attention_heads"] = c.num_heads;
        j["new_decoder_architecture"] = style.new_decoder_architecture;
        j["multi_query"] = style.multi_query;
        j["parallel_attn"] = c.parallel_residual;
        if (style.new_decoder_architecture) {
            j["num_kv_heads"] = c.num_kv_heads;
            j["num_ln_in_parallel_attn"] = style.num_ln_in_parallel_attn;
        }
        j["bias"] = c.bias.qkv;
        j["alibi"] = false;
        j["ffn_hidden_size"] = c.ffn_size;
        j["vocab_size"] = c.vocab_size;
        j["max_position_embeddings"] = c.max_positions;
        j["layer_norm_epsilon"] = c.norm_eps;
        j["rope_theta"] = c.rope_theta;
        j["rope_scaling"] = nullptr;
        j["activation"] = hf_activation_value(c.activation);
        j["tie_word_embeddings"] = c.tied_embeddings;
        break;
    }
    }
    if (j.contains("rope_scaling") || c.rope_scaling.kind != rope_scaling_kind::none) {
        j["rope_scaling"] = hf_rope_scaling_value(c);
        // Phi-3 reads the pre-extension context at the top level first.
        if (j.contains("original_max_position_embeddings") && c.rope_scaling.original_max_positions > 0)
            j["original_max_position_embeddings"] = c.rope_scaling.original_max_positions;
    }
    j["bos_token_id"] = token_or_null(c.bos_token);
    j["eos_token_id"] = token_or_null(c.eos_token);
    j["torch_dtype"] = torch_dtype_name(c.weight_dtype);
    return j;
}

}  // namespace detail

// config.json for this config. A config the family's files cannot express (a Mistral with
// biases, a GPT-2 with RoPE) is refused: reading the keys back must give the same config.
inline nlohmann::json hf_config_json(const model_config& c)
{
    const std::string source = std::string(family_name(c.family)) + " config.json";
    auto j = detail::hf_config_keys(c);
    auto want = to_json(c), got = to_json(hf_model_config(j, source));
    want.erase("dtype");
    got.erase("dtype");
    if (want != got) {
        std::string keys;
        for (const auto& [key, value] : want.items())
            if (got[key] != value) keys += (keys.empty() ? "" : ", ") + key + " " + value.dump() + " (would read back " + got[key].dump() + ")";
        fail_input(source, "cannot express " + keys);
    }
    return j;
}

// The tensors of a checkpoint of this config, laid out as the family stores them, in dtype t.
inline std::vector<tensor_bytes> hf_tensors(const model_config& c, const dense_weights& w, dtype t)
{
    const std::string source = std::string(family_name(c.family)) + " weights";
    if (static_cast<std::int64_t>(w.layers.size()) != c.num_layers)
        fail_input(source, std::to_string(w.layers.size()) + " layers, the config says " + std::to_string(c.num_layers));
    std::vector<tensor_bytes> out;
    std::set<std::pair<std::int64_t, hf_slot>> written;
    for (const auto& e : hf_layout(c)) {
        const std::int64_t out_dim = e.transposed ? e.shape[1] : e.shape[0];
        const std::int64_t in_dim = e.shape.size() == 2 ? (e.transposed ? e.shape[0] : e.shape[1]) : 1;
        std::vector<float> stored(static_cast<std::size_t>(out_dim * in_dim));
        for (const auto& part : e.parts) {
            std::int64_t rows = 0;
            for (const auto& u : part.runs) rows += u.count;
            visit_slot(w, e.layer, part.slot, [&](const auto& x) {
                const std::int64_t cols = std::is_same_v<std::decay_t<decltype(x)>, Eigen::VectorXf> ? 1 : x.cols();
                if (x.rows() != rows || cols != in_dim)
                    fail_input(source, std::string(hf_slot_name(part.slot)) + (e.layer >= 0 ? " of layer " + std::to_string(e.layer) : "") +
                                           " is " + std::to_string(x.rows()) + " x " + std::to_string(cols) + ", the config implies " +
                                           std::to_string(rows) + " x " + std::to_string(in_dim));
                std::int64_t r = 0;
                for (const auto& u : part.runs)
                    for (std::int64_t s = u.first; s < u.first + u.count; ++s, ++r)
                        for (std::int64_t k = 0; k < in_dim; ++k)
                            stored[static_cast<std::size_t>(e.transposed ? k * out_dim + s : s * in_dim + k)] = x(r, k);
            });
            written.insert({hf_slot_is_global(part.slot) ? -1 : e.layer, part.slot});
        }
        out.push_back({e.name, t, e.shape, encode_floats(stored.data(), static_cast<std::int64_t>(stored.size()), t)});
    }
    // A weight the layout has no place for would be silently dropped: refuse it instead.
    for (int s = 0; s <= static_cast<int>(hf_last_slot); ++s) {
        const auto slot = static_cast<hf_slot>(s);
        const std::int64_t first = hf_slot_is_global(slot) ? -1 : 0, last = hf_slot_is_global(slot) ? -1 : c.num_layers - 1;
        for (std::int64_t l = first; l <= last; ++l)
            visit_slot(w, l, slot, [&](const auto& x) {
                if (x.size() != 0 && !written.count({l, slot}))
                    fail_input(source, std::string(hf_slot_name(slot)) + (l >= 0 ? " of layer " + std::to_string(l) : "") +
                                           " is given but a " + family_name(c.family) + " checkpoint of this config has no place for it");
            });
    }
    return out;
}

template <class = void>  // compiled where it is called (core/compiled.hpp)
void write_hf_checkpoint(const std::string& dir, const model_config& config, const dense_weights& w, dtype t)
{
    if (t != dtype::f32 && t != dtype::f16 && t != dtype::bf16)
        fail_input(dir, std::string("Hugging Face checkpoints are written in f32, f16 or bf16, not ") + dtype_name(t));
    model_config c = config;
    c.weight_dtype = t;
    const auto cfg = hf_config_json(c);
    const auto tensors = hf_tensors(c, w, t);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail_input(dir, "cannot create directory: " + ec.message());
    const auto config_file = (std::filesystem::path(dir) / "config.json").string();
    std::ofstream out(config_file, std::ios::trunc);
    out << cfg.dump(2) << '\n';
    out.close();
    if (!out) fail_input(config_file, "write failed");
    write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_HF_WRITER_INSTANTIATIONS(X) \
    X(void write_hf_checkpoint(const std::string&, const model_config&, const dense_weights&, dtype))
SDLENS_HF_WRITER_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
