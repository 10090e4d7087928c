// The packed matrix products (AVX-512 and AVX2 f32, and AVX-512 bf16 activations with VDPBF16PS)
// against float64 Eigen products over odd shapes (panel, micro-tile and k-block edges), and the forward pass's
// bf16_activations option against the default pass and a float64 reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <sdlens/core/gemm_kernels.hpp>
#include <sdlens/forward/forward.hpp>
#include <sdlens/io/half.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

#ifdef SDLENS_X86_DISPATCH
namespace {
using namespace sdlens;

constexpr double f32_unit = 0x1p-24;  // unit roundoff of float32

// One product's operands: X (T x K) inside a wider row stride, W as f32 rows and as the bf16
// rows they were rounded from (so both weight types describe the same matrix exactly).
struct gemm_case {
    std::int64_t T, K, N, ldx;
    row_matrix<float> Xs;  // T x ldx; X is its first K columns
    row_matrix<float> W;   // N x K, exact values of Wb
    std::vector<std::uint16_t> Wb;
    std::vector<const float*> wf;
    std::vector<const std::uint16_t*> wb;

    gemm_case(std::int64_t T_, std::int64_t K_, std::int64_t N_, std::mt19937& rng) : T(T_), K(K_), N(N_), ldx(K_ + 3)
    {
        std::normal_distribution<float> n01;
        Xs = row_matrix<float>::Constant(T, ldx, 1e30f);  // padding that must not be read
        for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t k = 0; k < K; ++k) Xs(t, k) = n01(rng);
        W.resize(N, K);
        Wb.resize(static_cast<std::size_t>(N * K));
        for (Eigen::Index i = 0; i < W.size(); ++i) {
            Wb[i] = float_to_bf16(n01(rng));
            W.data()[i] = bf16_to_float(Wb[i]);
        }
        for (std::int64_t n = 0; n < N; ++n) {
            wf.push_back(W.row(n).data());
            wb.push_back(Wb.data() + n * K);
        }
    }
    Eigen::MatrixXd X() const { return Xs.leftCols(K).cast<double>(); }
};

// Largest |got - want| / bound over the T x N block of got (row stride N + 2, as a block of a
// wider output); the two padding columns must keep their sentinel.
double worst_ratio(const row_matrix<float>& got, const Eigen::MatrixXd& want, const Eigen::MatrixXd& bound)
{
    double worst = 0;
    for (Eigen::Index t = 0; t < want.rows(); ++t) {
        for (Eigen::Index n = 0; n < want.cols(); ++n) worst = std::max(worst, std::abs(got(t, n) - want(t, n)) / bound(t, n));
        CHECK(got(t, want.cols()) == -5.0f);
        CHECK(got(t, want.cols() + 1) == -5.0f);
    }
    return worst;
}

const std::int64_t test_T[] = {5, 7, 33, 130};
const std::int64_t test_K[] = {17, 64, 250, 2048};
const std::int64_t test_N[] = {1, 3, 16, 37, 100};

// Runs the f32 kernel (f32 and bf16 weights) over the test shapes, in one thread and in several,
// against float64.
template <class Gemm>
void check_f32_kernel(Gemm&& gemm, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    kernels::gemm_workspace packed;
    for (std::int64_t T : test_T)
        for (std::int64_t K : test_K)
            for (std::int64_t N : test_N) {
                CAPTURE(T);
                CAPTURE(K);
                CAPTURE(N);
                const gemm_case c(T, K, N, rng);
                const Eigen::MatrixXd X = c.X(), W = c.W.cast<double>();
                const Eigen::MatrixXd want = X * W.transpose();
                // Each output is a sum of K products accumulated in float32 by FMA (one rounding per
                // step, one more per k block of 256): |error| <= (K + K/256 + 1) u sum |x||w| <=
                // 2 K u sum |x||w| (Higham's bound for recursive summation). The bf16 weights are
                // widened exactly, so the same bound holds for them. A wrong element anywhere would
                // be off by O(sum |x||w|), ~1e6 times more.
                const Eigen::MatrixXd bound = (2.0 * K * f32_unit) * (X.cwiseAbs() * W.cwiseAbs().transpose());
                for (bool parallel : {false, true}) {
                    CAPTURE(parallel);
                    row_matrix<float> Yf = row_matrix<float>::Constant(T, N + 2, -5.0f), Yb = Yf;
                    gemm(c.Xs.data(), c.ldx, T, c.wf.data(), N, K, Yf.data(), N + 2, parallel, packed);
                    gemm(c.Xs.data(), c.ldx, T, c.wb.data(), N, K, Yb.data(), N + 2, parallel, packed);
                    CHECK(worst_ratio(Yf, want, bound) <= 1.0);
                    CHECK(worst_ratio(Yb, want, bound) <= 1.0);
                }
            }
}

}  // namespace

TEST_CASE("gemm: AVX-512 f32 kernel against float64, f32 and bf16 weights")
{
    if (!kernels::has_avx512()) {
        MESSAGE("skipped: this CPU has no AVX-512F/BW/VL/DQ");
        return;
    }
    check_f32_kernel([](auto&&... a) { kernels::gemm_nt_avx512(a...); }, 11);
}

TEST_CASE("gemm: AVX2 f32 kernel against float64, f32 and bf16 weights")
{
    if (!kernels::has_avx2_fma()) {
        MESSAGE("skipped: this CPU has no AVX2+FMA");
        return;
    }
    check_f32_kernel([](auto&&... a) { kernels::gemm_nt_avx2(a...); }, 13);
}

TEST_CASE("gemm: AVX-512 BF16 kernel against float64 with activations rounded to bf16")
{
    if (!kernels::has_avx512_bf16()) {
        MESSAGE("skipped: this CPU has no AVX512-BF16");
        return;
    }
    std::mt19937 rng(12);
    kernels::gemm_workspace packed;
    for (std::int64_t T : test_T)
        for (std::int64_t K : test_K)
            for (std::int64_t N : test_N) {
                CAPTURE(T);
                CAPTURE(K);
                CAPTURE(N);
                const gemm_case c(T, K, N, rng);
                const Eigen::MatrixXd X = c.X(), W = c.W.cast<double>();
                // X rounded to bf16 independently (Eigen::bfloat16, nearest even).
                Eigen::MatrixXd Xr(T, K);
                for (std::int64_t t = 0; t < T; ++t)
                    for (std::int64_t k = 0; k < K; ++k) Xr(t, k) = bf16_to_float(float_to_bf16(c.Xs(t, k)));
                const Eigen::MatrixXd mag = X.cwiseAbs() * W.cwiseAbs().transpose();
                // Products of two bf16 values are exact in float32; VDPBF16PS adds them to the f32
                // accumulator with at most two roundings per pair of k, plus one per k block: the
                // same <= 2 K u sum |x||w| as the f32 kernel, against the product of the rounded X.
                const Eigen::MatrixXd tight = (2.0 * K * f32_unit) * mag;
                // Against the unrounded X: rounding to nearest with 8 significant bits moves each
                // activation by at most half a unit in the last place, 2^-8 of itself (bf16's unit
                // roundoff), so the product moves by at most 2^-8 sum |x||w|.
                const Eigen::MatrixXd loose = (0x1p-8 + 2.0 * K * f32_unit) * mag;
                for (bool parallel : {false, true}) {
                    CAPTURE(parallel);
                    row_matrix<float> Y = row_matrix<float>::Constant(T, N + 2, -5.0f);
                    kernels::gemm_nt_avx512_bf16(c.Xs.data(), c.ldx, T, c.wb.data(), N, K, Y.data(), N + 2, parallel, packed);
                    CHECK(worst_ratio(Y, Xr * W.transpose(), tight) <= 1.0);
                    CHECK(worst_ratio(Y, X * W.transpose(), loose) <= 1.0);
                }
            }
}

TEST_CASE("gemm: the BF16 kernel rounds activations to nearest, ties to even")
{
    if (!kernels::has_avx512_bf16()) {
        MESSAGE("skipped: this CPU has no AVX512-BF16");
        return;
    }
    // bf16 keeps 7 fraction bits. With identity weights, Y is the rounded X itself.
    const float in[3] = {1.0f + 0x1p-8f,          // halfway between 1 and 1 + 2^-7: to even, 1
                         1.0f + 3 * 0x1p-8f,      // halfway between 1 + 2^-7 and 1 + 2^-6: to even, 1 + 2^-6
                         -(1.0f + 0x1p-8f + 0x1p-12f)};  // above halfway: away, -(1 + 2^-7)
    const float out[3] = {1.0f, 1.0f + 0x1p-6f, -(1.0f + 0x1p-7f)};
    const std::int64_t T = 5, K = 3;
    row_matrix<float> X(T, K);
    for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t k = 0; k < K; ++k) X(t, k) = in[k];
    const std::uint16_t one = float_to_bf16(1.0f), zero = 0;
    const std::uint16_t I[3][3] = {{one, zero, zero}, {zero, one, zero}, {zero, zero, one}};
    const std::uint16_t* rows[3] = {I[0], I[1], I[2]};
    row_matrix<float> Y(T, 3);
    kernels::gemm_workspace packed;
    kernels::gemm_nt_avx512_bf16(X.data(), K, T, rows, 3, K, Y.data(), 3, false, packed);
    for (std::int64_t t = 0; t < T; ++t)
        for (int n = 0; n < 3; ++n) CHECK(Y(t, n) == out[n]);
}

TEST_CASE("gemm: forward with bf16_activations stays close to the default pass, which is unchanged")
{
    using namespace sdlens;
    const model_config c = small_config(model_family::llama);
    test::temp_dir dir;
    write_hf_checkpoint(dir.path().string(), c, random_weights(c, 5), dtype::bf16);
    const model m = load_model(dir.path().string());
    const dense_weights dense = materialize(m);
    std::mt19937 rng(6);
    std::vector<int> tokens(12);  // more than 4 positions: the matrix-product path
    for (auto& t : tokens) t = static_cast<int>(rng() % static_cast<unsigned>(c.vocab_size));

    forward_options o;
    o.hidden_states = true;
    o.logits = forward_options::logits_mode::all;
    const forward_result plain = forward(m, tokens, o);
    o.bf16_activations = true;
    const forward_result rounded = forward(m, tokens, o);
    const auto ref = test::reference_forward(c, dense, tokens);

    for (std::size_t l = 0; l <= static_cast<std::size_t>(c.num_layers); ++l) {
        CAPTURE(l);
        // Default: float32 products of 64..96 terms, ~1e-6 relative, far below 1e-5 after two
        // layers (the bound test_forward.cpp uses, against the same float64 reference).
        CHECK(sdlens::test::relative_error(sdlens::test::hidden_at(plain, l), ref.hidden[l]) <= 1e-5);
        // Each rounded activation moves by <= 2^-8 ~ 4e-3 of itself (~1e-3 typically), with
        // random signs, so a product moves by ~1e-3 of its size; the f32 errors above grow ~7x
        // through the layers (4e-7 from u = 6e-8), which makes a few 1e-3 here.
        CHECK(sdlens::test::relative_error(sdlens::test::hidden_at(rounded, l), sdlens::test::hidden_at(plain, l)) <= 1e-2);
    }
    CHECK(sdlens::test::relative_error(plain.logits.cast<double>(), ref.logits) <= 1e-5);
    CHECK(sdlens::test::relative_error(rounded.logits.cast<double>(), plain.logits.cast<double>()) <= 1e-2);
    if (kernels::has_avx512_bf16()) {
        // The option does take effect: layer 1's output already carries the rounding (~1e-3
        // relative, a hundred times the f32 error).
        CHECK(sdlens::test::relative_error(sdlens::test::hidden_at(rounded, 1), sdlens::test::hidden_at(plain, 1)) > 1e-4);
    } else {
        MESSAGE("no AVX512-BF16: bf16_activations is ignored, the passes are the same");
    }
}
#endif
