#pragma once
// RoPE's inverse frequencies and attention factor for a model, with every long-context scaling
// computed as Hugging Face's modeling_rope_utils computes it (the v5 semantics where versions
// differ: an explicit yarn "factor" wins over max_position_embeddings / original) and GGUF's
// per-frequency divisors as llama.cpp applies them (theta_i / rope_freqs[i]). The attention
// factor multiplies cos and sin, i.e. q and k both, as HF's rotary modules do.
//
// `positions` is the largest position of the current forward call + 1: dynamic NTK and
// longrope's short/long choice depend on it, and HF recomputes them per call from
// max(position_ids) + 1 (a cached prefix keeps the rotation it was computed with, in HF too).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "sdlens/core/error.hpp"
#include "sdlens/model/config.hpp"

namespace sdlens {

struct rope_frequencies {
    std::vector<double> inverse;  // one per rotary pair: the angle at position p is p * inverse[i]
    double attention_factor = 1;
};

inline rope_frequencies rope_frequencies_for(const model_config& c, std::int64_t positions)
{
    constexpr double pi = 3.14159265358979323846;
    const rope_scaling_config& r = c.rope_scaling;
    const std::int64_t dim = c.rotary_dims, pairs = dim / 2;
    rope_frequencies f;
    if (r.kind == rope_scaling_kind::unsupported)
        fail_input("rope_scaling", "RoPE scaling '" + r.name + "' is not implemented; the forward pass cannot run this model");
    auto defaults = [&](double base) {
        std::vector<double> inv(static_cast<std::size_t>(pairs));
        for (std::int64_t i = 0; i < pairs; ++i) inv[static_cast<std::size_t>(i)] = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
        return inv;
    };
    f.inverse = defaults(c.rope_theta);
    switch (r.kind) {
    case rope_scaling_kind::none:
    case rope_scaling_kind::unsupported: break;
    case rope_scaling_kind::linear:
        for (double& v : f.inverse) v /= r.factor;
        break;
    case rope_scaling_kind::divisors:
        for (std::int64_t i = 0; i < pairs; ++i) f.inverse[static_cast<std::size_t>(i)] /= r.divisors[static_cast<std::size_t>(i)] * r.factor;
        break;
    case rope_scaling_kind::dynamic:
        // Only past the context the model was trained for: base * (factor n / max - (factor - 1))^(dim / (dim - 2)).
        if (positions > c.max_positions) {
            const double n = static_cast<double>(positions), m = static_cast<double>(c.max_positions);
            f.inverse = defaults(c.rope_theta * std::pow(r.factor * n / m - (r.factor - 1), static_cast<double>(dim) / static_cast<double>(dim - 2)));
        }
        break;
    case rope_scaling_kind::llama3: {
        const double old_context = static_cast<double>(r.original_max_positions);
        const double low_wavelen = old_context / r.low_freq_factor, high_wavelen = old_context / r.high_freq_factor;
        for (double& v : f.inverse) {
            const double wavelen = 2 * pi / v;
            if (wavelen > low_wavelen) v /= r.factor;  // long wavelengths: interpolated
            else if (wavelen >= high_wavelen) {          // between: a smooth blend of the two
                const double smooth = (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
                v = (1 - smooth) * v / r.factor + smooth * v;
            }
        }
        break;
    }
    case rope_scaling_kind::yarn: {
        const double original = static_cast<double>(r.original_max_positions > 0 ? r.original_max_positions : c.max_positions);
        auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
        f.attention_factor = r.attention_factor > 0                      ? r.attention_factor
                             : r.mscale != 0 && r.mscale_all_dim != 0 ? mscale(r.factor, r.mscale) / mscale(r.factor, r.mscale_all_dim)
                                                                       : mscale(r.factor, 1);
        // The dimension at which a frequency turns n times over the original context.
        auto correction_dim = [&](double n) { return static_cast<double>(dim) * std::log(original / (n * 2 * pi)) / (2 * std::log(c.rope_theta)); };
        double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
        if (r.truncate) low = std::floor(low), high = std::ceil(high);
        low = std::max(low, 0.0), high = std::min(high, static_cast<double>(dim - 1));
        if (low == high) high += 0.001;
        for (std::int64_t i = 0; i < pairs; ++i) {
            const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
            const double extrapolation = 1 - ramp;  // share of the unscaled frequency
            double& v = f.inverse[static_cast<std::size_t>(i)];
            v = v / r.factor * (1 - extrapolation) + v * extrapolation;
        }
        break;
    }
    case rope_scaling_kind::longrope: {
        const std::int64_t original = r.original_max_positions > 0 ? r.original_max_positions : c.max_positions;
        const double factor = r.original_max_positions > 0 ? static_cast<double>(c.max_positions) / static_cast<double>(original) : r.factor;
        f.attention_factor = r.attention_factor > 0 ? r.attention_factor
                             : factor <= 1           ? 1.0
                                                     : std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(original)));
        const std::vector<double>& ext = positions > original ? r.long_factor : r.short_factor;
        for (std::int64_t i = 0; i < pairs; ++i) f.inverse[static_cast<std::size_t>(i)] /= ext[static_cast<std::size_t>(i)];
        break;
    }
    }
    return f;
}

// The frequencies of one layer (1-based): Gemma 3's sliding-window layers rotate with their own
// base and without the scaling of the global ones, as Hugging Face's local rotary module does.
inline rope_frequencies rope_frequencies_for(const model_config& c, std::int64_t positions, int layer)
{
    if (!(c.rope_theta_local > 0 && c.attention_window(layer) > 0)) return rope_frequencies_for(c, positions);
    model_config local = c;
    local.rope_theta = c.rope_theta_local;
    local.rope_scaling = {};
    return rope_frequencies_for(local, positions);
}

}  // namespace sdlens
