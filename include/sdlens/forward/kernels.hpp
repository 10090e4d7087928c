#pragma once
// The pieces of a transformer block that are not products with weights: norms, rotary position
// embedding, FFN nonlinearities and causal attention over a KV cache. Rows are positions.
#include <cmath>
#include <cstdint>
#include <limits>

#include <Eigen/Core>

#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

// RMSNorm (x / rms(x) * g) or LayerNorm ((x - mean) / sigma * g + b) of every row of X.
// bias may be empty. Statistics in float, as the reference implementations do.
inline void normalize_rows(const row_matrix<float>& X, norm_kind kind, double eps, const Eigen::VectorXf& gain,
                           const Eigen::VectorXf& bias, row_matrix<float>& out)
{
    out.resize(X.rows(), X.cols());
    const float n = static_cast<float>(X.cols());
    for (Eigen::Index t = 0; t < X.rows(); ++t) {
        auto x = X.row(t);
        if (kind == norm_kind::rms) {
            const float scale = 1.0f / std::sqrt(x.squaredNorm() / n + static_cast<float>(eps));
            out.row(t) = (x * scale).cwiseProduct(gain.transpose());
        } else {
            const float mean = x.sum() / n;
            const float var = (x.array() - mean).square().sum() / n;
            const float scale = 1.0f / std::sqrt(var + static_cast<float>(eps));
            out.row(t) = ((x.array() - mean) * scale).matrix().cwiseProduct(gain.transpose());
            if (bias.size()) out.row(t) += bias.transpose();
        }
    }
}

// Rotates the first rotary_dims of every head of every row; row t is at position pos0 + t.
// adjacent: pairs (2i, 2i+1), as llama2.c; half: pairs (i, i + rot/2), as Hugging Face.
// Both use the frequency theta^(-2i/rot) for pair i.
inline void apply_rope(row_matrix<float>& X, std::int64_t heads, std::int64_t head_dim, std::int64_t pos0,
                       rope_style style, std::int64_t rotary_dims, double theta)
{
    if (style == rope_style::none || rotary_dims <= 0) return;
    const std::int64_t half = rotary_dims / 2;
    for (Eigen::Index t = 0; t < X.rows(); ++t) {
        const double pos = static_cast<double>(pos0 + t);
        for (std::int64_t i = 0; i < half; ++i) {
            const double angle = pos * std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dims));
            const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
            const std::int64_t a = style == rope_style::adjacent ? 2 * i : i;
            const std::int64_t b = style == rope_style::adjacent ? 2 * i + 1 : i + half;
            for (std::int64_t h = 0; h < heads; ++h) {
                float* row = X.row(t).data() + h * head_dim;
                const float x0 = row[a], x1 = row[b];
                row[a] = x0 * c - x1 * s;
                row[b] = x0 * s + x1 * c;
            }
        }
    }
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float gelu_tanh(float x)
{
    constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}
inline float gelu_erf(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f)); }

// Causal multi-head attention of T new queries (rows of Q, at positions S - T .. S - 1) over
// the first S rows of the key and value caches. Query head q reads kv head q / (h / h_kv).
inline void causal_attention(const row_matrix<float>& Q, const row_matrix<float>& K, const row_matrix<float>& V,
                             std::int64_t S, std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                             row_matrix<float>& out)
{
    const std::int64_t T = Q.rows();
    const std::int64_t group = heads / kv_heads;
    const std::int64_t pos0 = S - T;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    out.resize(T, heads * head_dim);
    // One thread for short work (one token over a short cache): a parallel region costs more.
    const bool parallel = T * S * heads * head_dim >= (std::int64_t(1) << 17);
#pragma omp parallel for schedule(static) if (parallel)
    for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t g = h / group;
        auto q = Q.middleCols(h * head_dim, head_dim);
        auto k = K.topRows(S).middleCols(g * head_dim, head_dim);
        auto v = V.topRows(S).middleCols(g * head_dim, head_dim);
        row_matrix<float> scores = (q * k.transpose()) * scale;  // T x S
        for (std::int64_t t = 0; t < T; ++t) {
            const std::int64_t visible = pos0 + t + 1;
            auto row = scores.row(t).head(visible);
            const float top = row.maxCoeff();
            row = (row.array() - top).exp().matrix();
            row /= row.sum();
            scores.row(t).tail(S - visible).setZero();
        }
        out.middleCols(h * head_dim, head_dim).noalias() = scores * v;
    }
}

}  // namespace sdlens
