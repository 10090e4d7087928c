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

inline nlohmann::json hf_config_keys(const model_config& c)
{
    using nlohmann::json;
    json j;
    const bool standard_head_dim = c.num_heads > 0 && c.head_dim * c.num_heads == c.hidden_size;
    if (c.sliding_window > 0) {
        const bool windowed = c.family == model_family::mistral || c.family == model_family::qwen2 || c.family == model_family::phi3;
        if (!windowed || (!c.sliding_window_layers.empty() && c.family != model_family::qwen2))
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
    for (int s = 0; s <= static_cast<int>(hf_slot::b_down); ++s) {
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
