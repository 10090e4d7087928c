#pragma once
// The least-squares linear map F1 (M x d) of an FFN's nonlinearity on standard normal inputs,
// F1 = argmin_B E_{z ~ N(0, I)} ||phi(z) - B z||^2, in two forms:
//  - exact (Stein's lemma, F1 = E[d phi / dz]): two row-scaled weight matrices,
//      SwiGLU: F1 = diag(gate_scale) W_gate + diag(up_scale) W_up,
//        gate_scale_i = (g_i.u_i / |g_i|^2) E[a silu'(a)], up_scale_i = E[silu(a)], a ~ N(0, |g_i|^2);
//      GeGLU (Gemma) the same with the tanh GELU in place of silu;
//      GELU (bias b kept inside phi): F1 = diag(up_scale) W_up, up_scale_i = E[gelu'(w_i.z + b_i)];
//    so F1 is applied matrix-free at the cost of one FFN pass, after one pass to get the row norms;
//  - Monte Carlo (the paper's recipe, seeded): lstsq(Z, phi(Z))^T over N samples; dense, noisy
//    (Frobenius error ~ 1/sqrt(N)), kept as the paper-faithful reference.
// The norm's diag(g) is applied outside F1 (z enters W directly): F = W_down F1 diag(g_ffn).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>
#include <Eigen/QR>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/linearize/gaussian_expectation.hpp"
#include "sdlens/linearize/streaming_matvec.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

// The activations and their derivatives, in double (the expectations are computed in double).
namespace activation {
inline double sigmoid(double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }
inline double silu(double a) { return a * sigmoid(a); }
inline double silu_prime(double a)
{
    const double s = sigmoid(a);
    return s * (1 + a * (1 - s));
}
inline double gelu_erf(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
inline double gelu_erf_prime(double x)
{
    constexpr double inv_sqrt_2pi = 0.39894228040143267794;
    return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * inv_sqrt_2pi * std::exp(-0.5 * x * x);
}
inline constexpr double gelu_tanh_k = 0.79788456080286535588;  // sqrt(2/pi)
inline double gelu_tanh(double x) { return 0.5 * x * (1 + std::tanh(gelu_tanh_k * (x + 0.044715 * x * x * x))); }
inline double gelu_tanh_prime(double x)
{
    const double t = std::tanh(gelu_tanh_k * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * gelu_tanh_k * (1 + 3 * 0.044715 * x * x);
}
inline double gelu(activation_kind k, double x) { return k == activation_kind::gelu_tanh ? gelu_tanh(x) : gelu_erf(x); }
inline double gelu_prime(activation_kind k, double x)
{
    return k == activation_kind::gelu_tanh ? gelu_tanh_prime(x) : gelu_erf_prime(x);
}
}  // namespace activation

enum class ffn_estimator { exact, monte_carlo };

// Per-row scalings of the exact F1 (see the top of this file). gate_scale is empty for GELU.
struct ffn_row_scales {
    activation_kind activation = activation_kind::swiglu;
    Eigen::VectorXd gate_scale, up_scale;
};

// E[a silu'(a)] and E[silu(a)] for a ~ N(0, s^2).
inline std::array<double, 2> swiglu_expectations(double s, const gaussian_expectation<>& rule = {})
{
    return rule.operator()<2>([](double a) { return std::array<double, 2>{a * activation::silu_prime(a), activation::silu(a)}; }, s);
}
// The same for a gated FFN's gate activation: silu (SwiGLU) or the tanh GELU (GeGLU).
inline std::array<double, 2> gated_expectations(activation_kind kind, double s, const gaussian_expectation<>& rule = {})
{
    if (kind == activation_kind::swiglu) return swiglu_expectations(s, rule);
    return rule.operator()<2>([](double a) { return std::array<double, 2>{a * activation::gelu_tanh_prime(a), activation::gelu_tanh(a)}; }, s);
}

// E[gelu'(b + a)] for a ~ N(0, s^2).
inline double gelu_prime_expectation(activation_kind kind, double s, double b, const gaussian_expectation<>& rule = {})
{
    return rule.expect([&](double a) { return activation::gelu_prime(kind, b + a); }, s, -b);
}

namespace detail {
// One pass over the rows of a and (optionally) b: |a_i|^2 and a_i . b_i, in double.
inline void row_norms_and_dots(const matrix_view& a, const matrix_view* b, Eigen::VectorXd& norm2, Eigen::VectorXd& dot)
{
    const std::int64_t chunk = rows_per_chunk(a.cols);
    const std::int64_t nchunks = (a.rows + chunk - 1) / chunk;
    norm2.resize(a.rows);
    dot.resize(b ? a.rows : 0);
#pragma omp parallel if (nchunks > 1)
    {
        std::vector<float> ra(static_cast<std::size_t>(chunk * a.cols)), rb(b ? ra.size() : 0);
        Eigen::VectorXd xd(a.cols);
#pragma omp for schedule(static)
        for (std::int64_t c = 0; c < nchunks; ++c) {
            const std::int64_t r0 = c * chunk, n = std::min(chunk, a.rows - r0);
            read_rows(a, r0, n, ra.data());
            if (b) read_rows(*b, r0, n, rb.data());
            for (std::int64_t i = 0; i < n; ++i) {
                const float* x = ra.data() + i * a.cols;
                xd = Eigen::Map<const Eigen::VectorXf>(x, a.cols).cast<double>();
                norm2[r0 + i] = kernels::dot(x, xd.data(), a.cols);  // products and sums in double
                if (b) dot[r0 + i] = kernels::dot(rb.data() + i * a.cols, xd.data(), a.cols);
            }
        }
    }
}
}  // namespace detail

// The exact F1's row scalings for one layer: one pass over W_gate and W_up (or W_up and b_up).
template <class = void>  // compiled where it is called (core/compiled.hpp)
ffn_row_scales exact_ffn_row_scales(const model_config& config, const layer_weights& w)
{
    ffn_row_scales out;
    out.activation = config.activation;
    const gaussian_expectation<> rule;
    if (!w.w_up) throw input_error("layer has no FFN up projection");
    if (is_gated(config.activation)) {
        if (!w.w_gate) throw input_error("gated FFN layer has no gate projection");
        // Biased gate and up rows shift both Gaussians' means: expectations not implemented.
        if (w.b_gate || w.b_up)
            throw input_error("gated FFN with biases (mlp_bias): its exact linearization is not implemented");
        if (w.w_gate.rows != w.w_up.rows || w.w_gate.cols != w.w_up.cols)
            throw input_error("FFN gate and up projections differ in shape");
        Eigen::VectorXd norm2, dot;
        detail::row_norms_and_dots(w.w_gate, &w.w_up, norm2, dot);
        const std::int64_t m = norm2.size();
        out.gate_scale.resize(m);
        out.up_scale.resize(m);
#pragma omp parallel for schedule(dynamic, 64) if (m > 256)
        for (std::int64_t i = 0; i < m; ++i) {
            const double s = std::sqrt(norm2[i]);
            if (!(s > 0)) {  // a = 0: phi_i(z) = act(0) (u.z) = 0
                out.gate_scale[i] = out.up_scale[i] = 0;
                continue;
            }
            const auto e = gated_expectations(config.activation, s, rule);
            out.gate_scale[i] = dot[i] / norm2[i] * e[0];
            out.up_scale[i] = e[1];
        }
    } else {
        Eigen::VectorXd norm2, unused;
        detail::row_norms_and_dots(w.w_up, nullptr, norm2, unused);
        const Eigen::VectorXd bias = w.b_up ? to_dense<double>(w.b_up) : Eigen::VectorXd::Zero(norm2.size());
        if (bias.size() != norm2.size()) throw input_error("FFN up bias length differs from the up projection's rows");
        const std::int64_t m = norm2.size();
        out.up_scale.resize(m);
#pragma omp parallel for schedule(dynamic, 64) if (m > 256)
        for (std::int64_t i = 0; i < m; ++i)
            out.up_scale[i] = gelu_prime_expectation(config.activation, std::sqrt(norm2[i]), bias[i], rule);
    }
    return out;
}

// phi(Z^T) for a block of inputs Z (d x N, columns are samples): M x N. Matrix-free over the views.
template <class Scalar>
block_of<Scalar> ffn_nonlinearity(const model_config& config, const layer_weights& w, const block_of<Scalar>& z)
{
    block_of<Scalar> up = streaming_multiply<Scalar>(w.w_up, z);
    if (w.b_up) up.colwise() += to_dense<Scalar>(w.b_up);
    if (is_gated(config.activation)) {
        block_of<Scalar> gate = streaming_multiply<Scalar>(w.w_gate, z);
        if (w.b_gate) gate.colwise() += to_dense<Scalar>(w.b_gate);
        const bool silu = config.activation == activation_kind::swiglu;
        return gate.unaryExpr([silu](Scalar a) { return static_cast<Scalar>(silu ? activation::silu(double(a)) : activation::gelu_tanh(double(a))); })
            .cwiseProduct(up);
    }
    const activation_kind k = config.activation;
    return up.unaryExpr([k](Scalar a) { return static_cast<Scalar>(activation::gelu(k, double(a))); });
}

// The paper's estimator: Z ~ N(0, I_d) (N x d, seeded), Y = phi(Z) (N x M), F1 = lstsq(Z, Y)^T.
// Samples are generated and pushed through phi in batches so that memory stays N x (d + M).
template <class = void>
Eigen::MatrixXd monte_carlo_f1(const model_config& config, const layer_weights& w, std::int64_t samples,
                                      std::uint64_t seed)
{
    const std::int64_t d = w.w_up.cols, m = w.w_up.rows;
    if (samples < d) throw input_error("Monte-Carlo F1 needs at least d = " + std::to_string(d) + " samples");
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    Eigen::MatrixXd z(samples, d), y(samples, m);
    for (std::int64_t i = 0; i < samples; ++i)
        for (std::int64_t j = 0; j < d; ++j) z(i, j) = normal(rng);
    constexpr std::int64_t batch = 4096;
    for (std::int64_t i0 = 0; i0 < samples; i0 += batch) {
        const std::int64_t n = std::min(batch, samples - i0);
        const block_of<double> zt = z.middleRows(i0, n).transpose();
        y.middleRows(i0, n) = ffn_nonlinearity<double>(config, w, zt).transpose();
    }
    return z.householderQr().solve(y).transpose();
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_FFN_LINEARIZATION_INSTANTIATIONS(X)                                    \
    X(ffn_row_scales exact_ffn_row_scales(const model_config&, const layer_weights&)) \
    X(Eigen::MatrixXd monte_carlo_f1(const model_config&, const layer_weights&, std::int64_t, std::uint64_t))
SDLENS_FFN_LINEARIZATION_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
