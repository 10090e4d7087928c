// The block kernels (core/quant_kernels.hpp) that read f16 and GGUF Q8_0 / Q4_0 / Q4_K / Q6_K rows
// in place: their decoding against io/quant.hpp's decoders (themselves checked against ggml's
// layouts in test_quant.cpp), and their products against float64 products of the decoded rows.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <sdlens/core/quant_kernels.hpp>
#include <sdlens/forward/linear.hpp>
#include <sdlens/io/dtype.hpp>
#include <sdlens/io/half.hpp>
#include <sdlens/io/quant.hpp>

namespace {
using namespace sdlens;
using kernels::row_format;

constexpr double f32_unit = 0x1p-24;

struct format_case {
    dtype type;
    row_format format;
};
const format_case formats[] = {{dtype::f16, row_format::f16},
                               {dtype::q8_0, row_format::q8_0},
                               {dtype::q4_0, row_format::q4_0},
                               {dtype::q4_k, row_format::q4_k},
                               {dtype::q6_k, row_format::q6_k}};

// Offsets of a block's f16 scales (d, and dmin for Q4_K).
std::vector<int> scale_offsets(dtype t)
{
    switch (t) {
    case dtype::q8_0:
    case dtype::q4_0: return {0};
    case dtype::q4_k: return {0, 2};
    case dtype::q6_k: return {208};
    default: return {};
    }
}

// n elements of random stored bytes: every bit of the quants and sub-block scales random, the
// f16 scales (and f16 elements) random finite values of either sign.
std::vector<std::byte> random_row(dtype t, std::int64_t n, std::mt19937& rng)
{
    std::vector<std::byte> bytes(static_cast<std::size_t>(bytes_for(t, n)));
    for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xFF);
    std::normal_distribution<float> n01;
    const auto put_f16 = [&](std::size_t at, float v) {
        const std::uint16_t h = float_to_f16(v);
        std::memcpy(bytes.data() + at, &h, 2);
    };
    if (t == dtype::f16) {
        for (std::int64_t i = 0; i < n; ++i) put_f16(static_cast<std::size_t>(2 * i), n01(rng));
        return bytes;
    }
    const std::int64_t block = bytes_for(t, layout_of(t).block_elems);
    for (std::size_t b = 0; b < bytes.size(); b += static_cast<std::size_t>(block))
        for (int off : scale_offsets(t)) put_f16(b + static_cast<std::size_t>(off), 0.05f * n01(rng));
    return bytes;
}

std::vector<float> decoded(dtype t, const std::vector<std::byte>& row, std::int64_t n)
{
    std::vector<float> w(static_cast<std::size_t>(n));
    dequantize(t, row.data(), w.data(), n);
    return w;
}

// What the error bounds of a row product scale with, per weight: |w|; for Q4_K, whose product is
// regrouped as d1 * sum(q x) - m1 * sum(x) per sub-block, |d1 q| + |m1|. The offsets m1 are read by
// decoding the row with every quant zeroed (each weight then is -m1).
std::vector<float> bound_weights(dtype t, const std::vector<std::byte>& row, std::int64_t n)
{
    std::vector<float> w = decoded(t, row, n);
    if (t != dtype::q4_k) {
        for (auto& v : w) v = std::abs(v);
        return w;
    }
    std::vector<std::byte> no_quants = row;
    for (std::size_t b = 0; b < row.size(); b += 144) std::fill(no_quants.begin() + b + 16, no_quants.begin() + b + 144, std::byte{0});
    const std::vector<float> minus_m = decoded(t, no_quants, n);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::abs(w[i] - minus_m[i]) + std::abs(minus_m[i]);
    return w;
}

std::int64_t length_for(dtype t, std::int64_t blocks) { return t == dtype::f16 ? 8 * blocks + 5 : layout_of(t).block_elems * blocks; }

}  // namespace

#ifdef SDLENS_X86_DISPATCH
TEST_CASE("block kernels: AVX2 decoding gives exactly io/quant.hpp's values, every format")
{
    if (!kernels::has_avx2_fma_f16c()) {
        MESSAGE("skipped: this CPU has no AVX2+FMA+F16C");
        return;
    }
    std::mt19937 rng(21);
    for (const auto& f : formats) {
        CAPTURE(dtype_name(f.type));
        const std::int64_t n = length_for(f.type, 12);
        const auto row = random_row(f.type, n, rng);
        const std::vector<float> want = decoded(f.type, row, n);
        // The whole row, and a span starting at a later whole block (as the packed product reads a
        // k block of 256 from k0 = 256).
        std::vector<float> got(static_cast<std::size_t>(n), -1.0f);
        kernels::quant_detail::decode_span_avx2(f.format, row.data(), 0, n, got.data());
        CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
        const std::int64_t k0 = f.type == dtype::f16 ? 8 : layout_of(f.type).block_elems;
        std::vector<float> part(static_cast<std::size_t>(n - k0), -1.0f);
        kernels::quant_detail::decode_span_avx2(f.format, row.data(), k0, n - k0, part.data());
        CHECK(std::memcmp(part.data(), want.data() + k0, part.size() * 4) == 0);
    }
}
#endif

TEST_CASE("block kernels: row products against float64 products of the decoded rows")
{
    std::mt19937 rng(22);
    std::normal_distribution<float> n01;
    for (const auto& f : formats)
        for (std::int64_t blocks : {1, 3, 40}) {
            CAPTURE(dtype_name(f.type));
            CAPTURE(blocks);
            const std::int64_t n = length_for(f.type, blocks);
            const auto row = random_row(f.type, n, rng);
            const std::vector<float> w = decoded(f.type, row, n), wb = bound_weights(f.type, row, n);
            std::vector<float> x(static_cast<std::size_t>(n));
            for (auto& v : x) v = n01(rng);
            double want = 0, mag = 0;
            for (std::int64_t i = 0; i < n; ++i) {
                want += double(w[i]) * x[i];
                mag += double(wb[i]) * std::abs(x[i]);
            }
            // The weights are exact (checked above); a float32 sum of n products (each rounded once,
            // or fused) is within (n + 1) u sum |w x| of the exact sum. Q4_K's regrouped sum adds the
            // sub-block sums of x and the offsets' sum: twice that, over |d1 q| + |m1|.
            const double bound = 2 * (n + 1) * f32_unit * mag;
            CHECK(std::abs(kernels::dot_row(f.format, row.data(), x.data(), n) - want) <= bound);
            CHECK(std::abs(kernels::dot_row_plain(f.format, row.data(), x.data(), n) - want) <= bound);
        }
}

TEST_CASE("block kernels: multiply_transposed over block rows, one token to prompts, against float64")
{
    // Through the public product: few rows of X take the row kernels, more the packed product
    // (which decodes each k block of 256 while packing). Shapes cross the micro-tile edges of both
    // ISAs (6 and 14 rows, 16 and 32 columns) and the k blocks.
    std::mt19937 rng(23);
    std::normal_distribution<float> n01;
    for (const auto& f : formats)
        for (std::int64_t blocks : {1, 9})
            for (std::int64_t N : {3, 37})
                for (std::int64_t T : {1, 4, 5, 33}) {
                    CAPTURE(dtype_name(f.type));
                    CAPTURE(blocks);
                    CAPTURE(N);
                    CAPTURE(T);
                    const std::int64_t K = length_for(f.type, f.type == dtype::f16 ? 8 * blocks : blocks);
                    std::vector<std::byte> bytes;
                    Eigen::MatrixXd Wb(N, K);  // bound_weights of every row
                    for (std::int64_t r = 0; r < N; ++r) {
                        const auto row = random_row(f.type, K, rng);
                        bytes.insert(bytes.end(), row.begin(), row.end());
                        const std::vector<float> wb = bound_weights(f.type, row, K);
                        for (std::int64_t k = 0; k < K; ++k) Wb(r, k) = wb[static_cast<std::size_t>(k)];
                    }
                    tensor_info t{"w", f.type, {N, K}, bytes.data(), bytes.size()};
                    const matrix_view view = whole(t);
                    const Eigen::MatrixXd W = to_dense(view).cast<double>();
                    row_matrix<float> X(T, K), Y, scratch;
                    for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] = n01(rng);
                    multiply_transposed(X, view, Y, scratch);
                    REQUIRE(Y.rows() == T);
                    REQUIRE(Y.cols() == N);
                    const Eigen::MatrixXd Xd = X.cast<double>();
                    const Eigen::MatrixXd want = Xd * W.transpose();
                    const Eigen::MatrixXd mag = Xd.cwiseAbs() * Wb.transpose();
                    // As the f32 kernels: <= 2 K u sum |x||w| (one rounding per step and per k block);
                    // over |d1 q| + |m1| for Q4_K's regrouped row products.
                    double worst = 0;
                    for (std::int64_t i = 0; i < T; ++i)
                        for (std::int64_t j = 0; j < N; ++j)
                            worst = std::max(worst, std::abs(Y(i, j) - want(i, j)) / (2.0 * K * f32_unit * mag(i, j)));
                    CHECK(worst <= 1.0);
                }
}
