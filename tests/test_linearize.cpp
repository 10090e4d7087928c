// The linearized layer: matrix-free operators against dense float64 products written out from the
// definitions (linearize_support.hpp), the Gaussian expectations against an independent
// long-double integrator and closed forms, the exact F1 against the paper's Monte-Carlo estimator.
// The solvers run on these operators in test_layer_analysis.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include <Eigen/Core>

#include <sdlens/linearize/ffn_linearization.hpp>
#include <sdlens/linearize/gaussian_expectation.hpp>
#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "linearize_support.hpp"
#include "support.hpp"

namespace {
using namespace sdlens;
using namespace sdlens::test;

// ---- An independent integrator: adaptive Simpson in long double on t = a/s in [-12, 12] ----

template <class F>
long double simpson_rec(F& f, long double a, long double b, long double fa, long double fm, long double fb, long double whole,
                        long double eps, int depth)
{
    const long double m = (a + b) / 2, lm = (a + m) / 2, rm = (m + b) / 2;
    const long double flm = f(lm), frm = f(rm);
    const long double left = (m - a) / 6 * (fa + 4 * flm + fm), right = (b - m) / 6 * (fm + 4 * frm + fb);
    if (depth <= 0 || std::fabs(left + right - whole) <= 15 * eps) return left + right + (left + right - whole) / 15;
    return simpson_rec(f, a, m, fa, flm, fm, left, eps / 2, depth - 1) + simpson_rec(f, m, b, fm, frm, fb, right, eps / 2, depth - 1);
}

// E[g(s t)], t ~ N(0, 1); 2400 starting panels so narrow features (width 1/s near 0) are seen.
long double reference_expectation(const std::function<long double(long double)>& g, long double s)
{
    auto f = [&](long double t) { return g(s * t) * std::exp(-t * t / 2) / std::sqrt(2 * 3.14159265358979323846264338L); };
    long double sum = 0;
    const int panels = 2400;
    for (int p = 0; p < panels; ++p) {
        const long double a = -12 + 24.0L * p / panels, b = -12 + 24.0L * (p + 1) / panels, m = (a + b) / 2;
        const long double fa = f(a), fm = f(m), fb = f(b);
        sum += simpson_rec(f, a, b, fa, fm, fb, (b - a) / 6 * (fa + 4 * fm + fb), 1e-20L, 40);
    }
    return sum;
}

long double ref_sigmoid(long double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }

}  // namespace

TEST_CASE("Gaussian expectations of silu and GeGLU terms match a long-double adaptive Simpson for every row norm")
{
    // Tolerance 1e-10 relative: the brief's accuracy target; the composite Gauss-Legendre rule's
    // analytic error is ~1e-14, the reference's (adaptive Simpson at 1e-20 in long double) smaller.
    const gaussian_expectation<> rule;
    for (double s : {0.1, 1.0, 3.0, 10.0, 100.0}) {
        CAPTURE(s);
        const auto e = swiglu_expectations(s, rule);
        const long double want_a_silu_prime = reference_expectation(
            [](long double a) {
                const long double sg = ref_sigmoid(a);
                return a * sg * (1 + a * (1 - sg));
            },
            s);
        const long double want_silu = reference_expectation([](long double a) { return a * ref_sigmoid(a); }, s);
        CHECK(std::abs(e[0] - double(want_a_silu_prime)) <= 1e-10 * std::abs(double(want_a_silu_prime)));
        CHECK(std::abs(e[1] - double(want_silu)) <= 1e-10 * std::abs(double(want_silu)));
        // GeGLU's gate (Gemma): E[a gelu_tanh'(a)] and E[gelu_tanh(a)].
        const auto g = gated_expectations(activation_kind::geglu_tanh, s, rule);
        const long double kk = std::sqrt(2 / 3.14159265358979323846264338L);
        const auto ref_gelu = [kk](long double x) { return 0.5L * x * (1 + std::tanh(kk * (x + 0.044715L * x * x * x))); };
        const auto ref_gelu_prime = [kk](long double x) {
            const long double t = std::tanh(kk * (x + 0.044715L * x * x * x));
            return 0.5L * (1 + t) + 0.5L * x * (1 - t * t) * kk * (1 + 3 * 0.044715L * x * x);
        };
        const long double want_a_gelu_prime = reference_expectation([&](long double a) { return a * ref_gelu_prime(a); }, s);
        const long double want_gelu = reference_expectation(ref_gelu, s);
        CHECK(std::abs(g[0] - double(want_a_gelu_prime)) <= 1e-10 * std::abs(double(want_a_gelu_prime)));
        CHECK(std::abs(g[1] - double(want_gelu)) <= 1e-10 * std::abs(double(want_gelu)));
        // tanh GELU with a bias: the features sit at a = -b.
        for (double b : {-1.5, 0.0, 2.0}) {
            const double got = gelu_prime_expectation(activation_kind::gelu_tanh, s, b, rule);
            const long double want = reference_expectation(
                [b](long double a) {
                    const long double x = b + a, k = std::sqrt(2 / 3.14159265358979323846264338L);
                    const long double t = std::tanh(k * (x + 0.044715L * x * x * x));
                    return 0.5L * (1 + t) + 0.5L * x * (1 - t * t) * k * (1 + 3 * 0.044715L * x * x);
                },
                s);
            CHECK(std::abs(got - double(want)) <= 1e-10 * std::abs(double(want)));
        }
    }
}

TEST_CASE("erf GELU expectation matches its closed form")
{
    // E[Phi(b + sZ)] = Phi(b / r) and E[X phi(X)] = phi(b / r) b / r^3 with r = sqrt(1 + s^2),
    // X ~ N(b, s^2) (product of two Gaussian densities). 1e-12 relative: quadrature error ~1e-14.
    const gaussian_expectation<> rule;
    for (double s : {0.1, 1.0, 3.0, 10.0, 100.0})
        for (double b : {-2.0, -0.3, 0.0, 1.0, 4.0}) {
            const double r = std::sqrt(1 + s * s);
            const double want = 0.5 * std::erfc(-b / r / std::sqrt(2.0)) +
                                std::exp(-0.5 * b * b / (r * r)) / std::sqrt(2 * M_PI) * b / (r * r * r);
            CAPTURE(s);
            CAPTURE(b);
            CHECK(gelu_prime_expectation(activation_kind::gelu_erf, s, b, rule) == doctest::Approx(want).epsilon(1e-12));
        }
}

TEST_CASE("matrix-free layer operators equal the dense products for every family and dtype")
{
    struct shape {
        model_family family;
        std::int64_t heads, kv_heads;
    };
    for (const shape sh : {shape{model_family::llama, 8, 2}, shape{model_family::llama, 4, 4}, shape{model_family::gpt2, 4, 4},
                           shape{model_family::neox, 4, 4}, shape{model_family::falcon, 4, 1}})
        for (dtype type : {dtype::f32, dtype::bf16, dtype::f16})
            for (bool center : {false, true}) {
                if (center && sh.family == model_family::llama) continue;  // centring applies to LayerNorm only
                const std::string fam = family_name(sh.family);
                CAPTURE(fam);
                const std::string ty = dtype_name(type);
                CAPTURE(ty);
                CAPTURE(center);
                const auto b = make_model(sh.family, 64, 160, sh.heads, sh.kv_heads, type, 11);
                linearize_options o;
                o.center_layernorm = center;
                const linearized_layer<double> lin(b.m.config, b.m.layers[0], o);
                const auto ref = reference(b.m, 0, lin.row_scales(), center);
                const MatrixXd x = random_block(64, 3, 5);
                // Both sides are float64 products of the same decoded weights in different orders:
                // agreement to ~1e-15 relative, checked at 1e-12.
                CHECK(relative(lin.attention(x), ref.a * x) < 1e-12);
                CHECK(relative(lin.attention_transpose(x), ref.a.transpose() * x) < 1e-12);
                CHECK(relative(lin.ffn(x), ref.f * x) < 1e-12);
                CHECK(relative(lin.ffn_transpose(x), ref.f.transpose() * x) < 1e-12);
                CHECK(relative(lin.residual(x), ref.r * x) < 1e-12);
                CHECK(relative(lin.residual_transpose(x), ref.r.transpose() * x) < 1e-12);
                CHECK(relative(lin.layer(x), ref.l * x) < 1e-12);
                CHECK(relative(lin.layer_transpose(x), ref.l.transpose() * x) < 1e-12);
                CHECK(relative(lin.dense_layer(), ref.l) < 1e-12);
                CHECK(relative(lin.dense_residual(), ref.r) < 1e-12);
                // A vector is a block of one column.
                CHECK(relative(lin.layer(x.col(1)), ref.l * x.col(1)) < 1e-12);
            }
}

TEST_CASE("float operators agree with double ones to float precision")
{
    const auto b = make_model(model_family::llama, 64, 160, 8, 2, dtype::bf16, 3);
    const linearized_layer<double> ld(b.m.config, b.m.layers[0]);
    const linearized_layer<float> lf(b.m.config, b.m.layers[0]);
    const MatrixXd x = random_block(64, 2, 9);
    const Eigen::MatrixXf xf = x.cast<float>();
    // float accumulation over d = 64 and M = 160 terms: ~1e-6 relative; 1e-4 leaves headroom.
    CHECK(relative(lf.layer(xf).cast<double>(), ld.layer(x)) < 1e-4);
    CHECK(relative(lf.layer_transpose(xf).cast<double>(), ld.layer_transpose(x)) < 1e-4);
}

TEST_CASE("exact F1 agrees with the paper's Monte-Carlo F1, the error shrinking like 1/sqrt(N)")
{
    // lstsq's error is (Z^T Z)^-1 Z^T E with E the residual phi(Z) - Z F1^T, uncorrelated with Z
    // (Stein), so its Frobenius norm is ~ sqrt(sum_i Var(e_i) d / (N - d)): 16x the samples gives
    // a ratio sqrt((16N - d) / (N - d)) = 4.03 here; the error norm sums M d = 4096 squared terms,
    // so its relative fluctuation is ~ 1/sqrt(4096) per run, far inside [2.5, 6.5].
    for (model_family family : {model_family::llama, model_family::neox, model_family::gemma}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const auto b = make_model(family, 32, 128, 4, 4, dtype::f32, 21);
        const ffn_row_scales s = exact_ffn_row_scales(b.m.config, b.m.layers[0]);
        const dense_layer w = materialize(b.m.layers[0]);
        MatrixXd exact = s.up_scale.asDiagonal() * w.w_up.cast<double>();
        if (s.gate_scale.size()) exact += s.gate_scale.asDiagonal() * w.w_gate.cast<double>();
        const std::int64_t n = 2000;
        const double e1 = (monte_carlo_f1(b.m.config, b.m.layers[0], n, 1) - exact).norm();
        const double e16 = (monte_carlo_f1(b.m.config, b.m.layers[0], 16 * n, 2) - exact).norm();
        CAPTURE(e1 / exact.norm());
        CHECK(e1 / e16 >= 2.5);
        CHECK(e1 / e16 <= 6.5);
    }
}

TEST_CASE("Monte-Carlo estimator inside the layer operator matches its own dense form")
{
    const auto b = make_model(model_family::llama, 32, 64, 4, 4, dtype::f32, 4);
    linearize_options o;
    o.estimator = ffn_estimator::monte_carlo;
    o.monte_carlo_samples = 500;
    o.monte_carlo_seed = 7;
    const linearized_layer<double> lin(b.m.config, b.m.layers[0], o);
    const MatrixXd f1 = monte_carlo_f1(b.m.config, b.m.layers[0], 500, 7);
    const dense_layer w = materialize(b.m.layers[0]);
    const MatrixXd f = w.w_down.cast<double>() * f1 * w.ffn_norm.cast<double>().asDiagonal();
    const MatrixXd x = random_block(32, 2, 3);
    CHECK(relative(lin.ffn(x), f * x) < 1e-12);  // same samples (seeded), float64 products
    CHECK(relative(lin.ffn_transpose(x), f.transpose() * x) < 1e-12);
}

TEST_CASE("every family written as a Hugging Face checkpoint: matrix-free L equals the dense products")
{
    // The families' real layouts (fused q/k/v, Conv1D, shared norms) as written and loaded by the
    // io/model code; the reference reads the same views through materialize().
    for (model_family family : {model_family::llama, model_family::mistral, model_family::qwen2, model_family::phi3,
                                model_family::gpt2, model_family::neox, model_family::falcon, model_family::gemma,
                                model_family::gemma2, model_family::gemma3, model_family::mpt}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const model_config c = small_config(family);
        test::temp_dir tmp;
        write_hf_checkpoint((tmp / "m").string(), c, random_weights(c, 3), dtype::bf16);
        const model m = load_model((tmp / "m").string());
        for (std::int64_t l = 0; l < c.num_layers; ++l) {
            const linearized_layer<double> lin(m.config, m.layers[static_cast<std::size_t>(l)]);
            const auto ref = reference(m, l, lin.row_scales());
            const MatrixXd x = random_block(c.hidden_size, 2, 17);
            CHECK(relative(lin.layer(x), ref.l * x) < 1e-12);
            CHECK(relative(lin.layer_transpose(x), ref.l.transpose() * x) < 1e-12);
        }
    }
}
