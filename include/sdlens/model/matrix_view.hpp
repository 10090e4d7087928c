#pragma once
// Views of stored weights in one canonical orientation: a matrix is (out, in), row-major, as
// PyTorch's nn.Linear keeps it, whatever the file does. A view selects its rows from a stored
// tensor (fused q/k/v, per-head interleaving) and may read a tensor stored transposed (GPT-2's
// Conv1D keeps (in, out)); it never copies the weights.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "sdlens/io/tensor_store.hpp"

namespace sdlens {

template <class Scalar>
using row_matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct matrix_view {
    // Consecutive stored output indices [first, first + count) giving consecutive canonical rows.
    struct run {
        std::int64_t first = 0;
        std::int64_t count = 0;
    };

    const tensor_info* tensor = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    bool transposed = false;  // stored (in, out): canonical row r is a stored column
    std::vector<run> runs;    // counts add up to rows

    explicit operator bool() const { return tensor != nullptr; }

    // Stored output index of canonical row r.
    std::int64_t stored_row(std::int64_t r) const
    {
        for (const auto& u : runs) {
            if (r < u.count) return u.first + r;
            r -= u.count;
        }
        return -1;
    }
};

inline std::int64_t stored_out_dim(const tensor_info& t, bool transposed) { return transposed ? t.cols() : t.rows(); }
inline std::int64_t stored_in_dim(const tensor_info& t, bool transposed) { return transposed ? t.rows() : t.cols(); }

// The whole tensor as a matrix; a 1-D tensor is one row.
inline matrix_view whole(const tensor_info& t, bool transposed = false)
{
    if (transposed && is_block_quantized(t.type))
        throw input_error(t.name + ": a block-quantized tensor cannot be read transposed");
    const std::int64_t out = stored_out_dim(t, transposed);
    return {&t, out, stored_in_dim(t, transposed), transposed, {{0, out}}};
}

// Selected runs of stored output indices, checked against the tensor.
inline matrix_view select_rows(const tensor_info& t, std::vector<matrix_view::run> runs, bool transposed = false)
{
    matrix_view v = whole(t, transposed);
    const std::int64_t out = v.rows;
    v.rows = 0;
    for (const auto& u : runs) {
        if (u.first < 0 || u.count < 0 || u.first + u.count > out)
            throw input_error(t.name + ": row selection [" + std::to_string(u.first) + ", " +
                              std::to_string(u.first + u.count) + ") is outside " + std::to_string(out) + " rows");
        v.rows += u.count;
    }
    v.runs = std::move(runs);
    return v;
}

inline matrix_view row_slice(const tensor_info& t, std::int64_t first, std::int64_t count, bool transposed = false)
{
    return select_rows(t, {{first, count}}, transposed);
}

// Decodes canonical rows [r0, r0 + n) into out (n x cols, row-major).
inline void read_rows(const matrix_view& m, std::int64_t r0, std::int64_t n, float* out)
{
    const tensor_info& t = *m.tensor;
    std::int64_t r = 0;
    for (const auto& u : m.runs) {
        const std::int64_t lo = std::max(r0, r), hi = std::min(r0 + n, r + u.count);
        for (std::int64_t cr = lo; cr < hi; ++cr) {
            const std::int64_t s = u.first + (cr - r);
            float* dst = out + (cr - r0) * m.cols;
            if (!m.transposed) {
                const std::int64_t row_bytes = bytes_for(t.type, m.cols);
                dequantize(t.type, t.data + s * row_bytes, dst, m.cols);
            } else {
                const std::int64_t stride = t.cols();
                for (std::int64_t c = 0; c < m.cols; ++c) dst[c] = load_element(t.type, t.data, c * stride + s);
            }
        }
        r += u.count;
        if (r >= r0 + n) break;
    }
}

// True when every canonical row is a stored row of f32 or bf16 values the dot kernels can read.
inline bool has_plain_rows(const matrix_view& w)
{
    const auto t = w.tensor->type;
    const auto addr = reinterpret_cast<std::uintptr_t>(w.tensor->data);
    return !w.transposed && ((t == dtype::f32 && addr % alignof(float) == 0) ||
                             (t == dtype::bf16 && addr % alignof(std::uint16_t) == 0));
}

// Calls fn(canonical row, pointer to its stored bytes) for rows [r0, r0 + n) of a view that is
// not transposed (each canonical row is a stored row, of whole blocks for the block formats).
template <class Fn>
void for_each_stored_row(const matrix_view& w, std::int64_t r0, std::int64_t n, Fn&& fn)
{
    const std::int64_t stride = bytes_for(w.tensor->type, w.tensor->cols());
    std::int64_t r = 0;
    for (const auto& u : w.runs) {
        const std::int64_t lo = std::max(r0, r), hi = std::min(r0 + n, r + u.count);
        for (std::int64_t cr = lo; cr < hi; ++cr) fn(cr, w.tensor->data + (u.first + cr - r) * stride);
        r += u.count;
        if (r >= r0 + n) break;
    }
}

template <class Scalar = float>
row_matrix<Scalar> to_dense(const matrix_view& m)
{
    row_matrix<float> f(m.rows, m.cols);
    if (m.rows > 0) read_rows(m, 0, m.rows, f.data());
    if constexpr (std::is_same_v<Scalar, float>) return f;
    else return f.template cast<Scalar>();
}

// Selected elements of a stored vector (norm weights, biases, V's part of a fused q/k/v bias).
struct vector_view {
    const tensor_info* tensor = nullptr;
    std::int64_t size = 0;
    std::vector<matrix_view::run> runs;  // consecutive stored indices; counts add up to size
    explicit operator bool() const { return tensor != nullptr; }
};

inline vector_view select_elements(const tensor_info& t, std::vector<matrix_view::run> runs)
{
    if (is_block_quantized(t.type)) throw input_error(t.name + ": a vector cannot be block-quantized");
    vector_view v{&t, 0, std::move(runs)};
    for (const auto& u : v.runs) {
        if (u.first < 0 || u.count < 0 || u.first + u.count > t.numel())
            throw input_error(t.name + ": element selection outside the tensor");
        v.size += u.count;
    }
    return v;
}
inline vector_view whole_vector(const tensor_info& t) { return select_elements(t, {{0, t.numel()}}); }
inline vector_view vector_slice(const tensor_info& t, std::int64_t offset, std::int64_t size)
{
    return select_elements(t, {{offset, size}});
}

template <class Scalar = float>
Eigen::Matrix<Scalar, Eigen::Dynamic, 1> to_dense(const vector_view& v)
{
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> out(v.size);
    std::int64_t i = 0;
    for (const auto& u : v.runs)
        for (std::int64_t k = 0; k < u.count; ++k)
            out[i++] = static_cast<Scalar>(load_element(v.tensor->type, v.tensor->data, u.first + k));
    return out;
}

}  // namespace sdlens
