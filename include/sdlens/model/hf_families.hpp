#pragma once
// A Hugging Face checkpoint as a model: config.json read family by family (hf_config.hpp), then
// every tensor the family's layout names (hf_layout.hpp) checked for shape and viewed in place.
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/safetensors.hpp"
#include "sdlens/model/hf_config.hpp"
#include "sdlens/model/hf_layout.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

inline std::string shape_string(const std::vector<std::int64_t>& shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// The dtype holding the most bytes: what a checkpoint "is" (F16 with F32 norms is F16).
inline dtype predominant_dtype(const tensor_store& store)
{
    std::map<dtype, std::uint64_t> bytes;
    for (const auto& t : store.tensors()) bytes[t.type] += t.nbytes;
    dtype best = dtype::f32;
    std::uint64_t most = 0;
    for (const auto& [t, n] : bytes)
        if (n > most) best = t, most = n;
    return best;
}

inline model build_hf_model(std::shared_ptr<const checkpoint> ckpt)
{
    const std::string& source = ckpt->path;
    const tensor_store& store = ckpt->tensors;
    model m;
    m.source = ckpt;
    m.config = hf_model_config(ckpt->metadata, hf_config_path(source));
    m.config.weight_dtype = predominant_dtype(store);
    // The config alone must not size anything: a layer needs a tensor, the query projection its
    // elements. Real checkpoints pass trivially; a corrupt config fails here, not in an allocation.
    std::int64_t elements = 0;
    for (const auto& t : store.tensors()) elements += t.numel();
    if (m.config.num_layers > static_cast<std::int64_t>(store.tensors().size()) ||
        m.config.q_dim() > elements / m.config.hidden_size)
        fail_input(source, "the config describes more weights than the checkpoint's " + std::to_string(store.tensors().size()) +
                               " tensors hold");
    m.layers.resize(static_cast<std::size_t>(m.config.num_layers));

    // GPT2LMHeadModel saves prefix "transformer."; the original OpenAI conversion has none.
    // An encoder's base model has none either; its task models (masked LM, classifiers) prefix
    // the family's name, and their heads are not read.
    std::string prefix = hf_default_prefix(m.config);
    if (m.config.family == model_family::gpt2 && !store.find("transformer.wte.weight") && store.find("wte.weight")) prefix = "";
    if (is_encoder(m.config.family)) {
        const std::string named = std::string(family_name(m.config.family)) + ".";
        if (store.find(named + "embeddings.word_embeddings.weight")) prefix = named;
    }
    for (const auto& e : hf_layout(m.config, prefix)) {
        const tensor_info* t = store.find(e.name);
        if (!t) fail_input(source, "missing tensor '" + e.name + "' (" + family_name(m.config.family) + " layout)");
        if (t->shape != e.shape)
            fail_input(source, "tensor '" + e.name + "' has shape " + shape_string(t->shape) + ", the config implies " + shape_string(e.shape));
        for (const auto& part : e.parts)
            visit_slot(m, e.layer, part.slot, [&](auto& view) {
                if constexpr (std::is_same_v<std::decay_t<decltype(view)>, matrix_view>)
                    view = select_rows(*t, part.runs, e.transposed);
                else
                    view = select_elements(*t, part.runs);
            });
    }
    if (m.config.tied_embeddings) m.lm_head = m.token_embedding;
    return m;
}

}  // namespace sdlens
