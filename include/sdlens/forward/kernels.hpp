#pragma once
// The pieces of a transformer block that are not products with weights: norms, rotary position
// embedding, FFN nonlinearities and causal attention over a KV cache. Rows are positions.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/gemm_kernels.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"
#include "sdlens/model/rope.hpp"

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
// adjacent: pairs (2i, 2i+1), as llama2.c; half: pairs (i, i + rot/2), as Hugging Face. Pair i
// turns by the angle position * f.inverse[i] (theta^(-2i/rot) without scaling, model/rope.hpp);
// cos and sin carry the attention factor, as in HF.
inline void apply_rope(row_matrix<float>& X, std::int64_t heads, std::int64_t head_dim, std::int64_t pos0,
                       rope_style style, std::int64_t rotary_dims, const rope_frequencies& f)
{
    if (style == rope_style::none || rotary_dims <= 0) return;
    const std::int64_t half = rotary_dims / 2;
    for (Eigen::Index t = 0; t < X.rows(); ++t) {
        const double pos = static_cast<double>(pos0 + t);
        for (std::int64_t i = 0; i < half; ++i) {
            const double angle = pos * f.inverse[static_cast<std::size_t>(i)];
            const float c = static_cast<float>(f.attention_factor * std::cos(angle)), s = static_cast<float>(f.attention_factor * std::sin(angle));
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

namespace detail {

// Y (m x n, row stride ldy) = A (m x k, row stride lda) B^T, where B has n rows of k floats
// b, b + ldb, ...: by the packed AVX-512 or AVX2 kernel when the CPU has one, by Eigen otherwise.
// One thread.
template <class = void>  // compiled where it is called (core/compiled.hpp)
void product_nt(const float* A, std::int64_t lda, std::int64_t m, const float* B, std::int64_t ldb, std::int64_t n,
                std::int64_t k, float* Y, std::int64_t ldy, kernels::gemm_workspace& ws)
{
#ifdef SDLENS_X86_DISPATCH
    std::vector<const float*> rows(static_cast<std::size_t>(n));
    for (std::int64_t j = 0; j < n; ++j) rows[static_cast<std::size_t>(j)] = B + j * ldb;
    if (kernels::gemm_nt(A, lda, m, rows.data(), n, k, Y, ldy, false, ws)) return;
#endif
    using strided = Eigen::Map<const row_matrix<float>, 0, Eigen::OuterStride<>>;
    Eigen::Map<row_matrix<float>, 0, Eigen::OuterStride<>> y(Y, m, n, Eigen::OuterStride<>(ldy));
    y.noalias() = strided(A, m, k, Eigen::OuterStride<>(lda)) * strided(B, n, k, Eigen::OuterStride<>(ldb)).transpose();
}

}  // namespace detail

// How attention scores are formed, beyond q.k: score = q.k * scale (0: 1/sqrt(head_dim)), then
// softcap * tanh(score / softcap) when softcap > 0 (Gemma 2), then + slope_h * (k - p) with
// ALiBi slopes (MPT; one per query head, null: none). window > 0: the query at position p sees
// only the keys p - window + 1 .. p (sliding-window attention).
struct attention_scores {
    std::int64_t window = 0;
    float scale = 0;
    float softcap = 0;
    const float* alibi_slopes = nullptr;
    bool bidirectional = false;  // encoders: every query sees all S keys (the whole sequence at once)
};

// Causal multi-head attention of T new queries (rows of Q, at positions S - T .. S - 1) over
// the first S rows of the key and value caches. Query head q reads kv head q / (h / h_kv).
// With a window, a block of queries starts its products at its first query's first key.
//
// The work is split into (head, block of query rows) items, and a block meets only the keys up
// to its last position: a prompt costs half the products of a full T x S score matrix. Both
// products (scores = Q K^T and out = P V) take the value rows transposed, V^T, as the matrix
// product kernels want their second operand; for a few queries (generation) Eigen multiplies by
// V as it is, since transposing the whole cache would cost more than the product.
template <class = void>
void causal_attention(const row_matrix<float>& Q, const row_matrix<float>& K, const row_matrix<float>& V,
                      std::int64_t S, std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                      row_matrix<float>& out, const attention_scores& how = {})
{
    const std::int64_t window = how.window;
    const float scale = how.scale > 0 ? how.scale : 1.0f / std::sqrt(static_cast<float>(head_dim)), softcap = how.softcap;
    const std::int64_t T = Q.rows();
    const std::int64_t group = heads / kv_heads;
    const std::int64_t pos0 = S - T;
    const std::int64_t ldq = Q.cols(), ldkv = K.cols(), ldo = heads * head_dim;
    out.resize(T, ldo);
    constexpr std::int64_t query_block = 64;  // rows of scores per item: 64 x S floats stay in L2
    constexpr std::int64_t few_queries = 4;
    const bool transpose_values = T > few_queries;
    row_matrix<float> vt;  // (kv_heads * head_dim) x S
    if (transpose_values) vt = V.topRows(S).transpose();
    const std::int64_t blocks = (T + query_block - 1) / query_block;
    // One thread for short work (one token over a short cache): a parallel region costs more.
    const bool parallel = T * S * heads * head_dim >= (std::int64_t(1) << 17);
#pragma omp parallel if (parallel)
    {
        row_matrix<float> scores;
        kernels::gemm_workspace ws;
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t item = 0; item < heads * blocks; ++item) {
            const std::int64_t h = item / blocks, b = item % blocks, g = h / group;
            const std::int64_t t0 = b * query_block, rows = std::min(query_block, T - t0);
            const std::int64_t end = how.bidirectional ? S : pos0 + t0 + rows;  // keys visible to the block's last query
            auto first_key = [&](std::int64_t p) { return window > 0 ? std::max<std::int64_t>(0, p + 1 - window) : 0; };
            const std::int64_t k0 = first_key(pos0 + t0), keys = end - k0;  // the block's keys: k0 .. end - 1
            scores.resize(rows, keys);
            const float* q = Q.data() + t0 * ldq + h * head_dim;
            detail::product_nt(q, ldq, rows, K.data() + k0 * ldkv + g * head_dim, ldkv, keys, head_dim, scores.data(), keys, ws);
            for (std::int64_t i = 0; i < rows; ++i) {
                const std::int64_t p = pos0 + t0 + i, lo = first_key(p) - k0, visible = how.bidirectional ? S - k0 : p + 1 - k0;
                auto row = scores.row(i).segment(lo, visible - lo);
                if (softcap > 0 || how.alibi_slopes) {
                    if (softcap > 0) row = ((row.array() * (scale / softcap)).tanh() * softcap).matrix();
                    else row *= scale;
                    if (how.alibi_slopes) {  // key k0 + lo + j at query p: slope (k - p)
                        const float slope = how.alibi_slopes[h];
                        for (Eigen::Index j = 0; j < row.size(); ++j) row[j] += slope * static_cast<float>(k0 + lo + j - p);
                    }
                    const float top = row.maxCoeff();
                    row = (row.array() - top).exp().matrix();
                } else {
                    const float top = row.maxCoeff();
                    row = ((row.array() - top) * scale).exp().matrix();
                }
                row /= row.sum();
                scores.row(i).head(lo).setZero();
                scores.row(i).tail(keys - visible).setZero();
            }
            float* o = out.data() + t0 * ldo + h * head_dim;
            if (transpose_values) {
                detail::product_nt(scores.data(), keys, rows, vt.data() + g * head_dim * S + k0, S, head_dim, keys, o, ldo, ws);
            } else {
                Eigen::Map<row_matrix<float>, 0, Eigen::OuterStride<>> y(o, rows, head_dim, Eigen::OuterStride<>(ldo));
                y.noalias() = scores * V.middleRows(k0, keys).middleCols(g * head_dim, head_dim);
            }
        }
    }
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_KERNELS_INSTANTIATIONS(X)                                                                        \
    X(void causal_attention(const row_matrix<float>&, const row_matrix<float>&, const row_matrix<float>&,       \
                            std::int64_t, std::int64_t, std::int64_t, std::int64_t, row_matrix<float>&, const attention_scores&))
SDLENS_KERNELS_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
