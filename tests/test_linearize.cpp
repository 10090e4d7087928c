// The linearized layer: matrix-free operators against dense float64 products written out here,
// the Gaussian expectations against an independent long-double integrator and closed forms, the
// exact F1 against the paper's Monte-Carlo estimator, and the per-layer analyses against Eigen's
// dense SVD and eigen-decomposition.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include <Eigen/Dense>

#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/linearize/ffn_linearization.hpp>
#include <sdlens/linearize/gaussian_expectation.hpp>
#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "support.hpp"

namespace {
using namespace sdlens;
using Eigen::MatrixXd;
using Eigen::VectorXd;

// ---- A one- or two-layer model built in memory, stored the way each family's files store it ----

struct built_model {
    std::shared_ptr<checkpoint> ckpt;
    model m;
};

struct builder {
    std::mt19937_64 rng;
    checkpoint& ck;
    dtype type;

    // Gaussian entries / sqrt(cols), rows scaled by row_scale(i) (spreads the FFN row norms).
    std::vector<float> matrix(std::int64_t rows, std::int64_t cols, const std::function<double(std::int64_t)>& row_scale = {})
    {
        std::normal_distribution<double> n;
        std::vector<float> v(static_cast<std::size_t>(rows * cols));
        for (std::int64_t r = 0; r < rows; ++r) {
            const double s = (row_scale ? row_scale(r) : 1.0) / std::sqrt(double(cols));
            for (std::int64_t c = 0; c < cols; ++c) v[static_cast<std::size_t>(r * cols + c)] = float(n(rng) * s);
        }
        return v;
    }
    std::vector<float> around_one(std::int64_t n)
    {
        std::uniform_real_distribution<double> u(0.5, 1.5);
        std::vector<float> v(static_cast<std::size_t>(n));
        for (auto& x : v) x = float(u(rng));
        return v;
    }
    void add(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& v)
    {
        if (type == dtype::f32 || shape.size() == 1) {
            ck.tensors.add_f32(name, shape, v.data());
        } else {
            std::vector<std::byte> bytes(v.size() * 2);
            for (std::size_t i = 0; i < v.size(); ++i) {
                const std::uint16_t b = type == dtype::bf16 ? float_to_bf16(v[i]) : float_to_f16(v[i]);
                std::memcpy(bytes.data() + 2 * i, &b, 2);
            }
            ck.tensors.add_owned(name, type, shape, std::move(bytes));
        }
    }
    // Stores the transpose (GPT-2 Conv1D keeps (in, out)) of a canonical (rows, cols) matrix.
    void add_transposed(const std::string& name, std::int64_t rows, std::int64_t cols, const std::vector<float>& v)
    {
        std::vector<float> t(v.size());
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c) t[static_cast<std::size_t>(c * rows + r)] = v[static_cast<std::size_t>(r * cols + c)];
        add(name, {cols, rows}, t);
    }
};

// FFN row norms from 0.1 to ~12: the large ones are where naive quadrature fails.
double spread(std::int64_t i) { return 0.1 + 12.0 * std::pow((i % 17) / 16.0, 2); }

built_model make_model(model_family family, std::int64_t d, std::int64_t m_ffn, std::int64_t heads, std::int64_t kv_heads,
                       dtype type, std::uint64_t seed, std::int64_t layers = 1)
{
    built_model b;
    b.ckpt = std::make_shared<checkpoint>();
    builder w{std::mt19937_64(seed), *b.ckpt, type};
    model_config& c = b.m.config;
    c.family = family;
    c.hidden_size = d;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.head_dim = d / heads;
    c.ffn_size = m_ffn;
    const std::int64_t hd = d / heads, kv = kv_heads * hd;
    const bool gelu = family == model_family::gpt2 || family == model_family::neox || family == model_family::falcon;
    c.activation = family == model_family::gpt2 ? activation_kind::gelu_tanh : gelu ? activation_kind::gelu_erf : activation_kind::swiglu;
    c.norm = gelu ? norm_kind::layer : norm_kind::rms;
    c.parallel_residual = family == model_family::neox || family == model_family::falcon;
    c.shared_input_norm = family == model_family::falcon;
    // Two passes: tensor_store::add may move earlier tensor_infos (a vector), so views are taken
    // only once every tensor is stored.
    for (std::int64_t l = 0; l < layers; ++l) {
        const std::string p = "l" + std::to_string(l) + ".";
        w.add(p + "attn_norm", {d}, w.around_one(d));
        if (!c.shared_input_norm) w.add(p + "ffn_norm", {d}, w.around_one(d));
        if (family == model_family::gpt2) {
            w.add_transposed(p + "c_attn", 3 * d, d, w.matrix(3 * d, d));
            w.add_transposed(p + "c_proj", d, d, w.matrix(d, d));
            w.add_transposed(p + "c_fc", m_ffn, d, w.matrix(m_ffn, d, spread));
            w.add_transposed(p + "mlp_proj", d, m_ffn, w.matrix(d, m_ffn));
        } else {
            if (family == model_family::neox) w.add(p + "qkv", {3 * d, d}, w.matrix(3 * d, d));
            else w.add(p + "v", {kv, d}, w.matrix(kv, d));
            w.add(p + "o", {d, heads * hd}, w.matrix(d, heads * hd));
            w.add(p + "up", {m_ffn, d}, w.matrix(m_ffn, d, spread));
            w.add(p + "down", {d, m_ffn}, w.matrix(d, m_ffn));
        }
        if (c.activation == activation_kind::swiglu)
            w.add(p + "gate", {m_ffn, d}, w.matrix(m_ffn, d, [](std::int64_t i) { return spread(i * 7 + 3); }));
        else {
            std::vector<float> bias = w.matrix(1, m_ffn);
            for (auto& x : bias) x *= 20;  // biases of order 1
            w.add(p + "b_up", {m_ffn}, bias);
        }
    }
    const tensor_store& ts = b.ckpt->tensors;
    for (std::int64_t l = 0; l < layers; ++l) {
        const std::string p = "l" + std::to_string(l) + ".";
        layer_weights lw;
        lw.attn_norm = whole_vector(ts.at(p + "attn_norm"));
        if (!c.shared_input_norm) lw.ffn_norm = whole_vector(ts.at(p + "ffn_norm"));
        if (family == model_family::gpt2) {
            lw.wv = row_slice(ts.at(p + "c_attn"), 2 * d, d, true);
            lw.wo = whole(ts.at(p + "c_proj"), true);
            lw.w_up = whole(ts.at(p + "c_fc"), true);
            lw.w_down = whole(ts.at(p + "mlp_proj"), true);
        } else {
            if (family == model_family::neox) {
                // Fused (h, 3, hd, d): V of head q is stored rows [q*3*hd + 2*hd, +hd).
                std::vector<matrix_view::run> runs;
                for (std::int64_t q = 0; q < heads; ++q) runs.push_back({q * 3 * hd + 2 * hd, hd});
                lw.wv = select_rows(ts.at(p + "qkv"), runs);
            } else {
                lw.wv = whole(ts.at(p + "v"));
            }
            lw.wo = whole(ts.at(p + "o"));
            lw.w_up = whole(ts.at(p + "up"));
            lw.w_down = whole(ts.at(p + "down"));
        }
        if (c.activation == activation_kind::swiglu) lw.w_gate = whole(ts.at(p + "gate"));
        else lw.b_up = whole_vector(ts.at(p + "b_up"));
        b.m.layers.push_back(lw);
    }
    return b;
}

// ---- The dense reference, written from the definitions in METHOD.md section 2 ----

struct dense_reference {
    MatrixXd a, f, r, l;
};

dense_reference reference(const model& m, std::int64_t layer, const ffn_row_scales& scales, bool center = false)
{
    const model_config& c = m.config;
    const dense_layer w = materialize(m.layers[static_cast<std::size_t>(layer)]);
    const std::int64_t d = c.hidden_size, hd = c.head_dim, rep = c.num_heads / c.num_kv_heads;
    MatrixXd P = MatrixXd::Identity(d, d);
    if (center) P.array() -= 1.0 / double(d);
    const VectorXd g1 = w.attn_norm.cast<double>();
    const VectorXd g2 = w.ffn_norm.size() ? w.ffn_norm.cast<double>() : g1;
    MatrixXd wv_rep(c.num_heads * hd, d);
    for (std::int64_t row = 0; row < wv_rep.rows(); ++row)
        wv_rep.row(row) = w.wv.row((row / hd / rep) * hd + row % hd).cast<double>();
    dense_reference r;
    r.a = w.wo.cast<double>() * wv_rep * g1.asDiagonal() * P;
    MatrixXd f1 = scales.up_scale.asDiagonal() * w.w_up.cast<double>();
    if (scales.gate_scale.size()) f1 += scales.gate_scale.asDiagonal() * w.w_gate.cast<double>();
    r.f = w.w_down.cast<double>() * f1 * g2.asDiagonal() * P;
    const MatrixXd I = MatrixXd::Identity(d, d);
    r.l = c.parallel_residual ? MatrixXd(I + r.a + r.f) : MatrixXd((I + r.f) * (I + r.a));
    r.r = r.l - I;
    return r;
}

double relative(const MatrixXd& got, const MatrixXd& want) { return (got - want).norm() / want.norm(); }

MatrixXd random_block(std::int64_t rows, std::int64_t cols, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n;
    MatrixXd x(rows, cols);
    for (Eigen::Index j = 0; j < cols; ++j)
        for (Eigen::Index i = 0; i < rows; ++i) x(i, j) = n(rng);
    return x;
}

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

TEST_CASE("Gaussian expectations of silu terms match a long-double adaptive Simpson for every row norm")
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
    for (model_family family : {model_family::llama, model_family::neox}) {
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

TEST_CASE("Lanczos singular triplets of L match Eigen's BDCSVD on the dense L")
{
    for (model_family family : {model_family::llama, model_family::gpt2, model_family::falcon}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const auto b = make_model(family, 128, 256, 8, family == model_family::llama ? 2 : 8, dtype::bf16, 31);
        const linearized_layer<double> lin(b.m.config, b.m.layers[0]);
        const auto ref = reference(b.m, 0, lin.row_scales());
        Eigen::BDCSVD<MatrixXd> svd(ref.l, Eigen::ComputeThinU | Eigen::ComputeThinV);
        const VectorXd s = svd.singularValues();
        REQUIRE(s[0] - s[1] > 1e-3 * s[0]);  // u_1, v_1 well defined (angle error ~ residual / gap)
        const layer_map_operator<double> op(lin, layer_map::layer);
        lanczos_svd<layer_map_operator<double>> solver(op, 3);
        solver.compute();
        REQUIRE(solver.info() == Spectra::CompInfo::Successful);
        // Residuals at tol 1e-10 sigma_1 give sigma to ~1e-10 and vectors to ~1e-10 / gap rad.
        for (int i = 0; i < 3; ++i) CHECK(solver.singular_values()[i] == doctest::Approx(s[i]).epsilon(1e-6));
        CHECK(acute_angle_degrees(solver.left_singular_vectors().col(0), svd.matrixU().col(0)) < 0.01);
        CHECK(acute_angle_degrees(solver.right_singular_vectors().col(0), svd.matrixV().col(0)) < 0.01);
        CHECK(solver.residuals().maxCoeff() < 1e-8 * s[0]);
        // The analysis wrapper reports the same, with u columns unit length.
        layer_analysis_options ao;
        ao.k = 2;
        const auto r = layer_singular_triplets(b.m, 1, ao);
        CHECK(r.layer == 1);
        CHECK(r.sigma[0] == doctest::Approx(s[0]).epsilon(1e-6));
        CHECK(acute_angle_degrees(r.u.col(0), svd.matrixU().col(0)) < 0.01);
        // F's right singular vectors (the explosion subspace) against BDCSVD of the dense F.
        Eigen::BDCSVD<MatrixXd> fsvd(ref.f, Eigen::ComputeThinU | Eigen::ComputeThinV);
        const auto fr = ffn_right_singular_vectors(b.m, 1, ao);
        CHECK(fr.sigma[0] == doctest::Approx(fsvd.singularValues()[0]).epsilon(1e-6));
        if (fsvd.singularValues()[0] - fsvd.singularValues()[1] > 1e-3 * fsvd.singularValues()[0])
            CHECK(acute_angle_degrees(fr.v.col(0), fsvd.matrixV().col(0)) < 0.01);
    }
}

TEST_CASE("Arnoldi eigenvalues of R match Eigen's EigenSolver on the dense R")
{
    for (model_family family : {model_family::llama, model_family::neox}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const auto b = make_model(family, 96, 192, 4, family == model_family::llama ? 2 : 4, dtype::f32, 41);
        const linearized_layer<double> lin(b.m.config, b.m.layers[0]);
        const auto ref = reference(b.m, 0, lin.row_scales());
        Eigen::EigenSolver<MatrixXd> es(ref.r);
        std::vector<std::complex<double>> want(es.eigenvalues().data(), es.eigenvalues().data() + es.eigenvalues().size());
        std::sort(want.begin(), want.end(), [](auto x, auto y) { return std::abs(x) > std::abs(y); });
        const std::int64_t k = 6;
        const layer_map_operator<double> op(lin, layer_map::residual);
        const auto got = top_eigenpairs(op, k);
        REQUIRE(got.values.size() == k);
        const double scale = std::abs(want[0]);
        for (std::int64_t i = 0; i < k; ++i) {
            // Each computed eigenvalue is one of the reference's top-magnitude ones (tol 1e-10 in
            // Spectra gives ~1e-10 relative; 1e-8 allows conditioning of a non-normal matrix).
            double nearest = 1e300;
            for (const auto& w : want) nearest = std::min(nearest, std::abs(w - got.values[i]));
            CHECK(nearest < 1e-8 * scale);
            CHECK(std::abs(got.values[i]) >= std::abs(want[static_cast<std::size_t>(k)]) - 1e-8 * scale);
            // And an eigenvector: R x = lambda x.
            const Eigen::VectorXcd x = got.vectors.col(i);
            CHECK((ref.r.cast<std::complex<double>>() * x - got.values[i] * x).norm() < 1e-8 * scale);
        }
        // Best aligned to the real part of one of the eigenvectors: angle ~0 and that eigenvalue.
        layer_analysis_options ao;
        ao.k = k;
        Eigen::MatrixXcd vecs = got.vectors;
        normalize_phases(vecs);
        const VectorXd target = vecs.col(2).real();
        const auto e = layer_eigen_analysis(b.m, 1, target, ao);
        CHECK(e.best.angle_degrees < 1e-4);
        // A complex pair's two eigenvectors share their real part: either member may be chosen.
        CHECK(std::abs(e.best.eigenvalue.real() - got.values[2].real()) < 1e-8 * scale);
        CHECK(std::abs(std::abs(e.best.eigenvalue.imag()) - std::abs(got.values[2].imag())) < 1e-8 * scale);
        CHECK_THROWS_AS(layer_eigen_analysis(b.m, 1, VectorXd::Ones(5), ao), input_error);
        CHECK_THROWS_AS(layer_eigen_analysis(b.m, 2, target, ao), input_error);
    }
}

TEST_CASE("layer analyses are deterministic: two runs bit-identical")
{
    const auto b = make_model(model_family::llama, 64, 128, 4, 2, dtype::bf16, 51);
    layer_analysis_options o;
    o.k = 3;
    const auto r1 = layer_singular_triplets(b.m, 1, o), r2 = layer_singular_triplets(b.m, 1, o);
    CHECK(std::memcmp(r1.u.data(), r2.u.data(), sizeof(double) * r1.u.size()) == 0);
    CHECK(std::memcmp(r1.sigma.data(), r2.sigma.data(), sizeof(double) * r1.sigma.size()) == 0);
    const auto e1 = layer_eigen_analysis(b.m, 1, r1.u.col(0), o), e2 = layer_eigen_analysis(b.m, 1, r1.u.col(0), o);
    CHECK(std::memcmp(e1.eigenvalues.data(), e2.eigenvalues.data(), sizeof(std::complex<double>) * e1.eigenvalues.size()) == 0);
}

TEST_CASE("layer lists and direction files")
{
    CHECK(parse_layer_ranges("1-3,8,2", 10) == std::vector<std::int64_t>{1, 2, 3, 8});
    CHECK(parse_layer_ranges("", 3) == std::vector<std::int64_t>{1, 2, 3});
    for (const char* bad : {"0", "11", "3-1", "a", "1,,2", "1-", "-2", "1,"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(parse_layer_ranges(bad, 10), input_error);
    }
    test::temp_dir tmp;
    auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(tmp / name) << text;
        return (tmp / name).string();
    };
    CHECK(read_direction_file(write("a.json", "[1, 2, 3]")) == VectorXd::LinSpaced(3, 1, 3));
    CHECK(read_direction_file(write("b.json", R"({"direction": [0, 1], "layer": 2})")) == (VectorXd(2) << 0, 1).finished());
    for (const char* bad : {"[]", "{\"x\": [1]}", "[1, \"a\"]", "not json", "[0, 0]"})
        CHECK_THROWS_AS(read_direction_file(write("bad.json", bad)), input_error);
    CHECK_THROWS_AS(read_direction_file((tmp / "missing.json").string()), input_error);
}

TEST_CASE("every family written as a Hugging Face checkpoint: matrix-free L equals the dense products")
{
    // The families' real layouts (fused q/k/v, Conv1D, shared norms) as written and loaded by the
    // io/model code; the reference reads the same views through materialize().
    for (model_family family : {model_family::llama, model_family::mistral, model_family::qwen2, model_family::phi3,
                                model_family::gpt2, model_family::neox, model_family::falcon}) {
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

TEST_CASE("stories260K: Lanczos directions and Arnoldi eigenvalues of every layer match dense Eigen")
{
    auto dir = sdlens::test::stories260k();
    if (!dir) return;
    const model m = load_model((*dir / "stories260K.bin").string());
    layer_analysis_options o;
    o.k = 3;
    o.eig_k = 4;
    for (std::int64_t l = 1; l <= static_cast<std::int64_t>(m.layers.size()); ++l) {
        CAPTURE(l);
        const linearized_layer<double> lin(m.config, m.layers[static_cast<std::size_t>(l - 1)]);
        const auto ref = reference(m, l - 1, lin.row_scales());
        Eigen::BDCSVD<MatrixXd> svd(ref.l, Eigen::ComputeThinU | Eigen::ComputeThinV);
        const auto r = layer_singular_triplets(m, l, o);
        // Tolerances as in the random-layer case: residual 1e-10 sigma_1.
        for (int i = 0; i < 3; ++i) CHECK(r.sigma[i] == doctest::Approx(svd.singularValues()[i]).epsilon(1e-6));
        if (svd.singularValues()[0] - svd.singularValues()[1] > 1e-3 * svd.singularValues()[0]) {
            CHECK(acute_angle_degrees(r.u.col(0), svd.matrixU().col(0)) < 0.01);
            CHECK(acute_angle_degrees(r.v.col(0), svd.matrixV().col(0)) < 0.01);
        }
        Eigen::EigenSolver<MatrixXd> es(ref.r);
        const auto e = layer_eigen_analysis(m, l, r.u.col(0), o);
        const double scale = es.eigenvalues().cwiseAbs().maxCoeff();
        for (Eigen::Index i = 0; i < e.eigenvalues.size(); ++i) {
            double nearest = 1e300;
            for (Eigen::Index j = 0; j < es.eigenvalues().size(); ++j)
                nearest = std::min(nearest, std::abs(es.eigenvalues()[j] - e.eigenvalues[i]));
            CHECK(nearest < 1e-8 * scale);
        }
    }
}

#ifdef SDLENS_CLI
TEST_CASE("sdlens directions and eig on a written model")
{
    test::temp_dir tmp;
    const model_config c = small_config(model_family::llama);
    const std::string dir = (tmp / "m").string();
    write_hf_checkpoint(dir, c, random_weights(c, 8), dtype::f32);
    const model m = load_model(dir);
    const linearized_layer<double> lin(m.config, m.layers[1]);
    const auto ref = reference(m, 1, lin.row_scales());
    Eigen::BDCSVD<MatrixXd> svd(ref.l, Eigen::ComputeThinU | Eigen::ComputeThinV);

    auto r = test::run_cli("directions \"" + dir + "\" --k 3 --layers 2 --vectors --json");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["layers"].size() == 1);
    const auto& l2 = j["layers"][0];
    CHECK(l2["layer"] == 2);
    const auto sigma = l2["sigma"].get<std::vector<double>>();
    REQUIRE(sigma.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(sigma[static_cast<std::size_t>(i)] == doctest::Approx(svd.singularValues()[i]).epsilon(1e-6));
    const auto u = l2["u"].get<std::vector<double>>();
    CHECK(acute_angle_degrees(Eigen::Map<const VectorXd>(u.data(), 64), svd.matrixU().col(0)) < 0.01);
    CHECK(l2.contains("applications"));

    // Float operators: residuals within 1e-5 sigma_1 bound sigma's error by ~1e-5 sigma_1 (and,
    // being quadratic in the residual for a converged triplet, much less) and u_1's angle by
    // 1e-5 / (relative gap) rad; the gap here exceeds 1%, so 1e-3 rad = 0.06 degrees.
    r = test::run_cli("directions \"" + dir + "\" --k 3 --layers 2 --vectors --json --precision float");
    REQUIRE(r.exit_code == 0);
    const auto jf = nlohmann::json::parse(r.out);
    CHECK(jf["precision"] == "float");
    const auto sf = jf["layers"][0]["sigma"].get<std::vector<double>>();
    for (int i = 0; i < 3; ++i) CHECK(sf[static_cast<std::size_t>(i)] == doctest::Approx(svd.singularValues()[i]).epsilon(1e-5));
    REQUIRE((svd.singularValues()[0] - svd.singularValues()[1]) > 0.01 * svd.singularValues()[0]);
    const auto uf = jf["layers"][0]["u"].get<std::vector<double>>();
    CHECK(acute_angle_degrees(Eigen::Map<const VectorXd>(uf.data(), 64), svd.matrixU().col(0)) < 0.06);
    CHECK(test::run_cli("directions \"" + dir + "\" --precision half").exit_code == 2);

    r = test::run_cli("directions \"" + dir + "\" --layers 1-2");  // text table
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("sigma_1") != std::string::npos);

    r = test::run_cli("eig \"" + dir + "\" --k 4 --json");
    REQUIRE(r.exit_code == 0);
    auto e = nlohmann::json::parse(r.out);
    CHECK(e["aligned_to"] == "u1");
    REQUIRE(e["layers"].size() == 2);
    CHECK(e["layers"][1]["eigenvalues"].size() == 4);
    CHECK(e["layers"][1]["best_aligned"].contains("angle_deg"));

    // A direction file: the real part of one of R's eigenvectors is found at angle ~0.
    Eigen::EigenSolver<MatrixXd> es(ref.r);
    Eigen::Index top = 0;
    es.eigenvalues().cwiseAbs().maxCoeff(&top);
    Eigen::MatrixXcd v = es.eigenvectors().col(top);
    normalize_phases(v);
    const VectorXd target = v.col(0).real();
    std::ofstream(tmp / "dir.json") << nlohmann::json{{"direction", std::vector<double>(target.data(), target.data() + 64)}}.dump();
    r = test::run_cli("eig \"" + dir + "\" --k 4 --layers 2 --json --direction \"" + (tmp / "dir.json").string() + "\"");
    REQUIRE(r.exit_code == 0);
    e = nlohmann::json::parse(r.out);
    CHECK(e["layers"][0]["best_aligned"]["angle_deg"].get<double>() < 1e-4);
    CHECK(e["layers"][0]["best_aligned"]["eigenvalue"].get<double>() == doctest::Approx(es.eigenvalues()[top].real()).epsilon(1e-8));

    // Bad input: exit 2 with one line naming the problem.
    std::ofstream(tmp / "short.json") << "[1, 2, 3]";
    r = test::run_cli("eig \"" + dir + "\" --direction \"" + (tmp / "short.json").string() + "\"");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("hidden size") != std::string::npos);
    r = test::run_cli("directions \"" + dir + "\" --layers 3");
    CHECK(r.exit_code == 2);
    r = test::run_cli("directions \"" + dir + "\" --layers 2-x");
    CHECK(r.exit_code == 2);
}
#endif
