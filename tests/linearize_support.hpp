#pragma once
// Shared by the linearization tests: one- or two-layer models built in memory and stored the way
// each family's files store them, and the dense float64 reference of a layer's maps written from
// the definitions in METHOD.md section 2 (not through the production operators).
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <sdlens/io/half.hpp>
#include <sdlens/linearize/ffn_linearization.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/model.hpp>

namespace sdlens::test {
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
inline double spread(std::int64_t i) { return 0.1 + 12.0 * std::pow((i % 17) / 16.0, 2); }

inline built_model make_model(model_family family, std::int64_t d, std::int64_t m_ffn, std::int64_t heads, std::int64_t kv_heads,
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
    c.activation = family == model_family::gpt2 ? activation_kind::gelu_tanh
                   : gelu                        ? activation_kind::gelu_erf
                   : is_gemma(family)            ? activation_kind::geglu_tanh
                                                 : activation_kind::swiglu;
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
        if (is_gated(c.activation))
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
        if (is_gated(c.activation)) lw.w_gate = whole(ts.at(p + "gate"));
        else lw.b_up = whole_vector(ts.at(p + "b_up"));
        b.m.layers.push_back(lw);
    }
    return b;
}

// ---- The dense reference, written from the definitions in METHOD.md section 2 ----

struct dense_reference {
    MatrixXd a, f, r, l;
};

inline dense_reference reference(const model& m, std::int64_t layer, const ffn_row_scales& scales, bool center = false)
{
    const model_config& c = m.config;
    const dense_layer w = materialize(m.layers[static_cast<std::size_t>(layer)]);
    const std::int64_t d = c.hidden_size, hd = c.head_dim, rep = c.num_heads / c.num_kv_heads;
    MatrixXd P = MatrixXd::Identity(d, d);
    if (center) P.array() -= 1.0 / double(d);
    // Gains: the stored weights plus the config's offset (Gemma's 1 + w).
    const auto gain = [&](const Eigen::VectorXf& v) { return VectorXd(v.cast<double>().array() + c.norm_weight_offset); };
    const VectorXd g1 = gain(w.attn_norm);
    const VectorXd g2 = w.ffn_norm.size() ? gain(w.ffn_norm) : g1;
    // Sandwich norms (Gemma 2/3) scale each branch's output by their gains too.
    const VectorXd post_a = c.sandwich_norms ? gain(w.post_attn_norm) : VectorXd::Ones(d);
    const VectorXd post_f = c.sandwich_norms ? gain(w.post_ffn_norm) : VectorXd::Ones(d);
    MatrixXd wv_rep(c.num_heads * hd, d);
    for (std::int64_t row = 0; row < wv_rep.rows(); ++row)
        wv_rep.row(row) = w.wv.row((row / hd / rep) * hd + row % hd).cast<double>();
    dense_reference r;
    r.a = post_a.asDiagonal() * w.wo.cast<double>() * wv_rep * g1.asDiagonal() * P;
    MatrixXd f1 = scales.up_scale.asDiagonal() * w.w_up.cast<double>();
    if (scales.gate_scale.size()) f1 += scales.gate_scale.asDiagonal() * w.w_gate.cast<double>();
    r.f = post_f.asDiagonal() * w.w_down.cast<double>() * f1 * g2.asDiagonal() * P;
    const MatrixXd I = MatrixXd::Identity(d, d);
    r.l = c.parallel_residual ? MatrixXd(I + r.a + r.f) : MatrixXd((I + r.f) * (I + r.a));
    r.r = r.l - I;
    return r;
}

inline double relative(const MatrixXd& got, const MatrixXd& want) { return (got - want).norm() / want.norm(); }

inline MatrixXd random_block(std::int64_t rows, std::int64_t cols, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n;
    MatrixXd x(rows, cols);
    for (Eigen::Index j = 0; j < cols; ++j)
        for (Eigen::Index i = 0; i < rows; ++i) x(i, j) = n(rng);
    return x;
}

}  // namespace sdlens::test
