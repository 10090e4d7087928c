#pragma once
// Which FFN down projections to keep in high precision when quantizing (paper Sec. 5.1): those of
// the explosion and decay layers, where the high-norm tokens' intermediate activations are huge.
// The layers come from the data-free detection (detect_layers.hpp) or from the user; each comes
// with the names a quantizer needs: the checkpoint's own tensor name and llama.cpp's GGUF name
// (blk.N.ffn_down, N 0-based, the same for every family llama.cpp converts).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sdlens/analysis/detect_layers.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

struct precision_choice {
    int layer = 0;                // 1-based
    std::string reason;           // "explosion layer", "decay layer" or "given"
    double sigma_1 = 0;           // of the layer's linearization (data-free choices; 0 otherwise)
    std::string checkpoint_tensor, gguf_tensor;
};

struct precision_plan {
    std::string source = "none";  // "auto" (data-free detection), "list" or "none"
    std::vector<precision_choice> layers;
    double median_sigma = 0;      // auto: sigma_1's median over layers, for scale
    std::vector<int> layer_numbers() const
    {
        std::vector<int> r;
        for (const auto& c : layers) r.push_back(c.layer);
        return r;
    }
};

inline std::string gguf_ffn_down_name(int layer) { return "blk." + std::to_string(layer - 1) + ".ffn_down"; }

inline precision_choice down_projection_choice(const model& m, int layer, std::string reason, double sigma = 0)
{
    if (layer < 1 || layer > static_cast<int>(m.layers.size()))
        throw input_error("--skip: layer " + std::to_string(layer) + " is not in 1.." + std::to_string(m.layers.size()));
    const matrix_view& w = m.layers[static_cast<std::size_t>(layer - 1)].w_down;
    return {layer, std::move(reason), sigma, w.tensor ? w.tensor->name : std::string(), gguf_ffn_down_name(layer)};
}

// The given layers, sorted, each once.
inline precision_plan precision_plan_from_list(const model& m, std::vector<int> layers)
{
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    precision_plan p;
    p.source = layers.empty() ? "none" : "list";
    for (int l : layers) p.layers.push_back(down_projection_choice(m, l, "given"));
    return p;
}

// The explosion and decay layers of the data-free detection. progress(i, n) per layer.
template <class = void>  // compiled where it is called (core/compiled.hpp)
precision_plan precision_plan_auto(const model& m, const detect_options& o = {},
                                   const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const detected_layers d = detect_layers_data_free(m, o, progress);
    precision_plan p;
    p.source = "auto";
    p.median_sigma = d.median_sigma;
    for (auto l : d.explosion_layers)
        p.layers.push_back(down_projection_choice(m, static_cast<int>(l), "explosion layer", d.sigma_1[l - 1]));
    for (auto l : d.decay_layers) p.layers.push_back(down_projection_choice(m, static_cast<int>(l), "decay layer", d.sigma_1[l - 1]));
    std::sort(p.layers.begin(), p.layers.end(), [](const auto& a, const auto& b) { return a.layer < b.layer; });
    return p;
}

}  // namespace sdlens
