#pragma once
// W X and W^T X for a stored weight matrix read in place: a few rows at a time are decoded into a
// small buffer (any dtype, block-quantized included) and multiplied there, so a product costs one
// pass over the stored bytes and never a decoded copy of the matrix. This is what makes the
// linearized layer operators matrix-free.
//
// Lives in linearize/ because the operators are its only users; it depends on model/ only through
// matrix_view.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "sdlens/core/dot_kernels.hpp"
#include "sdlens/core/threads.hpp"
#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

// A block of k vectors as columns; a vector is a block with one column.
template <class Scalar>
using block_of = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

// About 256 KiB of decoded floats per chunk: stays in cache between decode and multiply.
inline std::int64_t rows_per_chunk(std::int64_t cols)
{
    constexpr std::int64_t target_elems = 64 * 1024;
    return std::max<std::int64_t>(1, target_elems / std::max<std::int64_t>(1, cols));
}

// A block this narrow, over rows stored as f32 or bf16, is multiplied straight from the stored
// rows by the dot/axpy kernels: each row is read from memory once and used for every column while
// it sits in L1, with no decoded copy. Wider blocks (Monte-Carlo batches, dense forms) amortize a
// decode into a chunk buffer and go through Eigen's matrix product.
constexpr Eigen::Index direct_max_columns = 8;

inline bool direct_rows(const matrix_view& w, Eigen::Index k) { return k <= direct_max_columns && has_plain_rows(w); }

// The stored address of every canonical row of a view with plain rows.
inline std::vector<const std::byte*> stored_rows(const matrix_view& w)
{
    std::vector<const std::byte*> p(static_cast<std::size_t>(w.rows));
    for_each_stored_row(w, 0, w.rows, [&](std::int64_t r, const std::byte* row) { p[static_cast<std::size_t>(r)] = row; });
    return p;
}

// Rows per parallel work item of the direct kernels: ~64 KiB of weights.
inline std::int64_t direct_rows_per_item(const matrix_view& w)
{
    return std::max<std::int64_t>(1, (std::int64_t(1) << 16) / std::max<std::int64_t>(1, bytes_for(w.tensor->type, w.cols)));
}

template <class WT, class Scalar>
void direct_multiply(const matrix_view& w, const block_of<Scalar>& x, block_of<Scalar>& y)
{
    const auto rows = stored_rows(w);
    const std::int64_t per = direct_rows_per_item(w), items = (w.rows + per - 1) / per, k = x.cols();
#pragma omp parallel for schedule(static) if (items > 1 && w.rows * w.cols >= (std::int64_t(1) << 17))
    for (std::int64_t it = 0; it < items; ++it) {
        const std::int64_t r1 = std::min(w.rows, (it + 1) * per);
        for (std::int64_t r = it * per; r < r1; ++r) {
            const WT* row = reinterpret_cast<const WT*>(rows[static_cast<std::size_t>(r)]);
            for (std::int64_t j = 0; j < k; ++j) y(r, j) = kernels::dot(row, x.col(j).data(), w.cols);
        }
    }
}

// Each thread adds its rows into its own accumulator; they are summed in thread order, so a fixed
// thread count gives bit-identical results.
template <class WT, class Scalar>
void direct_multiply_transpose(const matrix_view& w, const block_of<Scalar>& x, block_of<Scalar>& y)
{
    const auto rows = stored_rows(w);
    const std::int64_t per = direct_rows_per_item(w), items = (w.rows + per - 1) / per, k = x.cols();
    const bool parallel = items > 1 && w.rows * w.cols >= (std::int64_t(1) << 17);
    const int threads = parallel ? thread_count() : 1;
    std::vector<block_of<Scalar>> acc(static_cast<std::size_t>(threads));
#pragma omp parallel num_threads(threads) if (parallel)
    {
        block_of<Scalar>& mine = acc[static_cast<std::size_t>(thread_index())];
        mine.setZero(w.cols, k);
#pragma omp for schedule(static)
        for (std::int64_t it = 0; it < items; ++it) {
            const std::int64_t r1 = std::min(w.rows, (it + 1) * per);
            std::int64_t r = it * per;
            for (; r + 4 <= r1; r += 4) {
                const WT* four[4];
                for (int i = 0; i < 4; ++i) four[i] = reinterpret_cast<const WT*>(rows[static_cast<std::size_t>(r + i)]);
                for (std::int64_t j = 0; j < k; ++j) {
                    const Scalar a[4] = {x(r, j), x(r + 1, j), x(r + 2, j), x(r + 3, j)};
                    kernels::axpy4(a, four, mine.col(j).data(), w.cols);
                }
            }
            for (; r < r1; ++r) {
                const WT* row = reinterpret_cast<const WT*>(rows[static_cast<std::size_t>(r)]);
                for (std::int64_t j = 0; j < k; ++j) kernels::axpy(x(r, j), row, mine.col(j).data(), w.cols);
            }
        }
    }
    y.setZero(w.cols, k);
    for (const auto& a : acc)
        if (a.size() > 0) y += a;
}

// Y = W X over a view read row-wise (not transposed).
template <class Scalar>
void rowwise_multiply(const matrix_view& w, const block_of<Scalar>& x, block_of<Scalar>& y)
{
    if (direct_rows(w, x.cols())) {
        if (w.tensor->type == dtype::f32) direct_multiply<float>(w, x, y);
        else direct_multiply<std::uint16_t>(w, x, y);
        return;
    }
    const std::int64_t chunk = rows_per_chunk(w.cols);
    const std::int64_t nchunks = (w.rows + chunk - 1) / chunk;
#pragma omp parallel if (nchunks > 1)
    {
        std::vector<float> buf(static_cast<std::size_t>(chunk * w.cols));
        row_matrix<Scalar> cast;
#pragma omp for schedule(static)
        for (std::int64_t c = 0; c < nchunks; ++c) {
            const std::int64_t r0 = c * chunk, n = std::min(chunk, w.rows - r0);
            read_rows(w, r0, n, buf.data());
            Eigen::Map<const row_matrix<float>> rows(buf.data(), n, w.cols);
            if constexpr (std::is_same_v<Scalar, float>) {
                y.middleRows(r0, n).noalias() = rows * x;
            } else {
                cast = rows.template cast<Scalar>();
                y.middleRows(r0, n).noalias() = cast * x;
            }
        }
    }
}

// Y = W^T X over a view read row-wise. Each thread sums its chunks into its own accumulator; the
// accumulators are added in thread order, so a fixed thread count gives bit-identical results.
template <class Scalar>
void rowwise_multiply_transpose(const matrix_view& w, const block_of<Scalar>& x, block_of<Scalar>& y)
{
    if (direct_rows(w, x.cols())) {
        if (w.tensor->type == dtype::f32) direct_multiply_transpose<float>(w, x, y);
        else direct_multiply_transpose<std::uint16_t>(w, x, y);
        return;
    }
    const std::int64_t chunk = rows_per_chunk(w.cols);
    const std::int64_t nchunks = (w.rows + chunk - 1) / chunk;
    const int threads = thread_count();
    std::vector<block_of<Scalar>> acc(static_cast<std::size_t>(threads));
#pragma omp parallel num_threads(threads) if (nchunks > 1)
    {
        block_of<Scalar>& mine = acc[static_cast<std::size_t>(thread_index())];
        mine.setZero(w.cols, x.cols());
        std::vector<float> buf(static_cast<std::size_t>(chunk * w.cols));
        row_matrix<Scalar> cast;
#pragma omp for schedule(static)
        for (std::int64_t c = 0; c < nchunks; ++c) {
            const std::int64_t r0 = c * chunk, n = std::min(chunk, w.rows - r0);
            read_rows(w, r0, n, buf.data());
            Eigen::Map<const row_matrix<float>> rows(buf.data(), n, w.cols);
            if constexpr (std::is_same_v<Scalar, float>) {
                mine.noalias() += rows.transpose() * x.middleRows(r0, n);
            } else {
                cast = rows.template cast<Scalar>();
                mine.noalias() += cast.transpose() * x.middleRows(r0, n);
            }
        }
    }
    y.setZero(w.cols, x.cols());
    for (const auto& a : acc)
        if (a.size() > 0) y += a;
}

// A transposed view (stored (in, out), canonical row r = stored column s_r) is multiplied through
// the stored tensor read row-wise: W x = (S^T x) at the selected outputs, W^T y = S (y scattered to
// the selected outputs). Reading S row-wise beats gathering strided elements, even when only a
// third of its columns are selected (GPT-2's fused c_attn).
inline matrix_view stored_rowwise(const matrix_view& w)
{
    const tensor_info& t = *w.tensor;
    return matrix_view{&t, t.rows(), t.cols(), false, {{0, t.rows()}}};
}

}  // namespace detail

// Y = W X (W: rows x cols, X: cols x k).
template <class Scalar>
block_of<Scalar> streaming_multiply(const matrix_view& w, const block_of<Scalar>& x)
{
    block_of<Scalar> y(w.rows, x.cols());
    if (!w.transposed) {
        detail::rowwise_multiply(w, x, y);
        return y;
    }
    const matrix_view s = detail::stored_rowwise(w);
    block_of<Scalar> full;
    detail::rowwise_multiply_transpose(s, x, full);  // (stored outputs) x k
    std::int64_t r = 0;
    for (const auto& u : w.runs) {
        y.middleRows(r, u.count) = full.middleRows(u.first, u.count);
        r += u.count;
    }
    return y;
}

// Y = W^T X (X: rows x k).
template <class Scalar>
block_of<Scalar> streaming_multiply_transpose(const matrix_view& w, const block_of<Scalar>& x)
{
    block_of<Scalar> y;
    if (!w.transposed) {
        detail::rowwise_multiply_transpose(w, x, y);
        return y;
    }
    const matrix_view s = detail::stored_rowwise(w);
    block_of<Scalar> scattered = block_of<Scalar>::Zero(s.cols, x.cols());
    std::int64_t r = 0;
    for (const auto& u : w.runs) {
        scattered.middleRows(u.first, u.count) = x.middleRows(r, u.count);
        r += u.count;
    }
    y.resize(w.cols, x.cols());
    detail::rowwise_multiply(s, scattered, y);
    return y;
}

}  // namespace sdlens
