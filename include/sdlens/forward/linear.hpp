#pragma once
// Y = X W^T for a stored weight W seen through a matrix_view. Stored rows of f32 and bf16 are read
// in place by the dot and packed-product kernels, rows of f16 and GGUF blocks (Q8_0, Q4_0, Q4_K,
// Q6_K) by the block kernels, which decode a block at a time inside the product: no decoded copy
// of a matrix. Only what those cannot read (transposed non-f32 tensors; a CPU without AVX2 for
// many rows of X) is decoded, the whole matrix into a reused buffer when X has many rows (the
// decode is then small next to the product), a few rows at a time otherwise.
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/core/dot_kernels.hpp"
#include "sdlens/core/gemm_kernels.hpp"
#include "sdlens/core/quant_kernels.hpp"
#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

// Row-major rows of a stored (out, in) tensor, or columns of a stored (in, out) one.
using strided_rows_map = Eigen::Map<const row_matrix<float>, 0, Eigen::OuterStride<>>;
using strided_cols_map = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;

// Products smaller than this many weights run on one thread: starting a parallel region costs
// more than they do (and much more when the machine is oversubscribed).
constexpr std::int64_t parallel_min_weights = std::int64_t(1) << 17;

// True when the view's canonical matrix is a strided block of f32 values in memory.
inline bool is_f32_in_place(const matrix_view& w)
{
    return w.tensor->type == dtype::f32 && w.runs.size() == 1 &&
           reinterpret_cast<std::uintptr_t>(w.tensor->data) % alignof(float) == 0;
}

// Calls fn with an Eigen expression of the view's canonical (rows x cols) matrix, read in place.
// Only for views where is_f32_in_place holds.
template <class Fn>
decltype(auto) with_f32_map(const matrix_view& w, Fn&& fn)
{
    const float* base = reinterpret_cast<const float*>(w.tensor->data);
    const std::int64_t stride = w.tensor->cols();
    const std::int64_t first = w.runs.front().first;
    if (!w.transposed) return fn(strided_rows_map(base + first * stride, w.rows, w.cols, Eigen::OuterStride<>(stride)));
    return fn(strided_cols_map(base + first, w.rows, w.cols, Eigen::OuterStride<>(stride)));
}

// Decodes the whole view into buf (rows x cols), rows in parallel.
template <class = void>  // compiled where it is called (core/compiled.hpp)
void decode_matrix(const matrix_view& w, row_matrix<float>& buf)
{
    buf.resize(w.rows, w.cols);
    constexpr std::int64_t chunk = 32;
    const std::int64_t rows = w.rows;
    const bool fast_bf16 = has_plain_rows(w) && w.tensor->type == dtype::bf16;
#pragma omp parallel for schedule(static) if (rows * w.cols >= parallel_min_weights)
    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const std::int64_t n = std::min(chunk, rows - r0);
        if (fast_bf16) {
            for_each_stored_row(w, r0, n, [&](std::int64_t r, const std::byte* p) {
                kernels::bf16_to_f32(reinterpret_cast<const std::uint16_t*>(p), buf.data() + r * w.cols, w.cols);
            });
        } else {
            read_rows(w, r0, n, buf.data() + r0 * w.cols);
        }
    }
}

#ifdef SDLENS_X86_DISPATCH
// Y = X W^T for a view with plain rows by the packed AVX-512 or AVX2 kernels (with bf16
// activations when asked to, the weights are bf16 and the CPU has AVX512-BF16); false when the
// CPU has neither, and Eigen is left to do it.
template <class WT>
bool gemm_stored_rows(const row_matrix<float>& X, const matrix_view& w, row_matrix<float>& Y, bool bf16_activations,
                      kernels::gemm_workspace& ws)
{
    const std::int64_t n = w.rows, T = X.rows(), K = w.cols;
    const bool parallel = n * K >= parallel_min_weights;
    std::vector<const WT*> rows(static_cast<std::size_t>(n));
    for_each_stored_row(w, 0, n, [&](std::int64_t r, const std::byte* p) { rows[r] = reinterpret_cast<const WT*>(p); });
    if constexpr (std::is_same_v<WT, std::uint16_t>) {
        if (bf16_activations && kernels::has_avx512_bf16()) {
            kernels::gemm_nt_avx512_bf16(X.data(), K, T, rows.data(), n, K, Y.data(), n, parallel, ws);
            return true;
        }
    }
    return kernels::gemm_nt(X.data(), K, T, rows.data(), n, K, Y.data(), n, parallel, ws);
}
#endif

// The format of a view's stored rows when the block kernels (core/quant_kernels.hpp) read them in
// place: f16, Q8_0, Q4_0, Q4_K or Q6_K rows, not transposed.
inline bool block_rows_format(const matrix_view& w, kernels::row_format& f)
{
    if (w.transposed) return false;
    switch (w.tensor->type) {
    case dtype::f16: f = kernels::row_format::f16; return true;
    case dtype::q8_0: f = kernels::row_format::q8_0; return true;
    case dtype::q4_0: f = kernels::row_format::q4_0; return true;
    case dtype::q4_k: f = kernels::row_format::q4_k; return true;
    case dtype::q6_k: f = kernels::row_format::q6_k; return true;
    default: return false;
    }
}

// Below this many rows of X, products go through the row-blocked GEMV path.
constexpr std::int64_t gemv_max_rows = 4;

// Y (T x out) = X (T x in) W^T. scratch is reused between calls for decoded weights, workspace
// (optional) for the matrix-product kernels' packing buffers.
// bf16_activations: in products of more than gemv_max_rows rows with bf16 weights, round X to
// bf16 as llama.cpp does, when the CPU has AVX512-BF16 (see forward_options::bf16_activations).
template <class = void>
void multiply_transposed(const row_matrix<float>& X, const matrix_view& w, row_matrix<float>& Y, row_matrix<float>& scratch,
                         bool bf16_activations = false, kernels::gemm_workspace* workspace = nullptr)
{
    const std::int64_t T = X.rows();
    if (X.cols() != w.cols)
        throw input_error(w.tensor->name + ": takes inputs of " + std::to_string(w.cols) + " values, the model gives it " +
                          std::to_string(X.cols()));
    Y.resize(T, w.rows);
    if (T == 0 || w.rows == 0) return;
    if (T > gemv_max_rows) {
#ifdef SDLENS_X86_DISPATCH
        kernels::gemm_workspace local;
        kernels::gemm_workspace& ws = workspace ? *workspace : local;
        if (has_plain_rows(w) && (w.tensor->type == dtype::f32 ? gemm_stored_rows<float>(X, w, Y, bf16_activations, ws)
                                                                : gemm_stored_rows<std::uint16_t>(X, w, Y, bf16_activations, ws)))
            return;
        kernels::row_format format;
        if (block_rows_format(w, format)) {
            std::vector<const std::byte*> rows(static_cast<std::size_t>(w.rows));
            for_each_stored_row(w, 0, w.rows, [&](std::int64_t r, const std::byte* p) { rows[static_cast<std::size_t>(r)] = p; });
            if (kernels::gemm_nt_rows(X.data(), X.cols(), T, format, rows.data(), w.rows, w.cols, Y.data(), w.rows,
                                      w.rows * w.cols >= parallel_min_weights, ws))
                return;
        }
#endif
        // Eigen runs the GEMM on all OpenMP threads.
        if (is_f32_in_place(w)) {
            with_f32_map(w, [&](const auto& W) { Y.noalias() = X * W.transpose(); });
        } else {
            decode_matrix(w, scratch);
            Y.noalias() = X * scratch.transpose();
        }
        return;
    }
    // Eigen's matrix-vector products are single-threaded: split the output rows between threads.
    constexpr std::int64_t block = 64;
    const std::int64_t rows = w.rows, cols = w.cols;
    if (has_plain_rows(w)) {
        // Stream each stored row once through the dot kernels (the weights are read in place).
        const bool bf16 = w.tensor->type == dtype::bf16;
#pragma omp parallel for schedule(static) if (rows * cols >= parallel_min_weights)
        for (std::int64_t r0 = 0; r0 < rows; r0 += block) {
            for_each_stored_row(w, r0, std::min(block, rows - r0), [&](std::int64_t r, const std::byte* p) {
                for (std::int64_t t = 0; t < T; ++t) {
                    const float* x = X.row(t).data();
                    Y(t, r) = bf16 ? kernels::dot_bf16(reinterpret_cast<const std::uint16_t*>(p), x, cols)
                                   : kernels::dot_f32(reinterpret_cast<const float*>(p), x, cols);
                }
            });
        }
        return;
    }
    kernels::row_format format;
    if (block_rows_format(w, format)) {
        // Each stored row's blocks decoded and used at once (core/quant_kernels.hpp).
        row_matrix<float> sums;
        if (format == kernels::row_format::q4_k) {
            sums.resize(T, cols / 32);
            for (std::int64_t t = 0; t < T; ++t) kernels::sums_of_32(X.row(t).data(), cols, sums.row(t).data());
        }
#pragma omp parallel for schedule(static) if (rows * cols >= parallel_min_weights)
        for (std::int64_t r0 = 0; r0 < rows; r0 += block) {
            for_each_stored_row(w, r0, std::min(block, rows - r0), [&](std::int64_t r, const std::byte* p) {
                for (std::int64_t t = 0; t < T; ++t)
                    Y(t, r) = kernels::dot_row(format, p, X.row(t).data(), cols, sums.size() ? sums.row(t).data() : nullptr);
            });
        }
        return;
    }
    const bool in_place = is_f32_in_place(w);
#pragma omp parallel if (rows * cols >= parallel_min_weights)
    {
        row_matrix<float> tile;
#pragma omp for schedule(static)
        for (std::int64_t r0 = 0; r0 < rows; r0 += block) {
            const std::int64_t n = std::min(block, rows - r0);
            if (in_place) {
                with_f32_map(w, [&](const auto& W) { Y.middleCols(r0, n).noalias() = X * W.middleRows(r0, n).transpose(); });
            } else {
                tile.resize(n, cols);
                read_rows(w, r0, n, tile.data());
                Y.middleCols(r0, n).noalias() = X * tile.transpose();
            }
        }
    }
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_LINEAR_INSTANTIATIONS(X)                                                                          \
    X(void decode_matrix(const matrix_view&, row_matrix<float>&))                                               \
    X(void multiply_transposed(const row_matrix<float>&, const matrix_view&, row_matrix<float>&, row_matrix<float>&, \
                               bool, kernels::gemm_workspace*))
SDLENS_LINEAR_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
