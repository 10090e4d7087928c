#pragma once
// An independent float64 forward pass for the tests: written from the model definitions, one
// position and one head at a time, over dense double matrices (materialize(model)). It shares
// nothing with include/sdlens/forward/ beyond the model description.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <Eigen/Dense>

#include <sdlens/model/dense_weights.hpp>

namespace sdlens::test {

struct reference_result {
    std::vector<Eigen::MatrixXd> hidden;  // L+1 matrices, T x d
    Eigen::MatrixXd logits;               // T x vocab
    Eigen::MatrixXd ffn_input;            // normalized FFN input at ffn_layer (1-based), T x d
};

struct reference_options {
    bool attention = true;
    int ffn_layer = 0;
};

namespace ref {
using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

// The gain is the stored weight plus the config's offset (Gemma: 1 + w).
inline Vec norm(const model_config& c, const Vec& x, const Eigen::VectorXf& g, const Eigen::VectorXf& b)
{
    const double n = static_cast<double>(x.size());
    Vec y(x.size());
    if (c.norm == norm_kind::rms) {
        const double ms = x.squaredNorm() / n;
        for (Eigen::Index i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + c.norm_eps) * (g[i] + c.norm_weight_offset);
    } else {
        const double mean = x.sum() / n;
        double var = 0;
        for (Eigen::Index i = 0; i < x.size(); ++i) var += (x[i] - mean) * (x[i] - mean);
        var /= n;
        for (Eigen::Index i = 0; i < x.size(); ++i)
            y[i] = (x[i] - mean) / std::sqrt(var + c.norm_eps) * (g[i] + c.norm_weight_offset) + (b.size() ? b[i] : 0.0);
    }
    return y;
}

inline Vec lin(const row_matrix<float>& W, const Eigen::VectorXf& b, const Vec& x)
{
    Vec y = W.cast<double>() * x;
    if (b.size()) y += b.cast<double>();
    return y;
}

// Rotates one head's vector in place at position pos, in layer `layer` (1-based). Besides plain
// RoPE only linear scaling (frequencies / factor), and Gemma 3's sliding layers, which rotate
// with their own base and unscaled; test_rope_scaling checks the other kinds in closed form.
inline void rope(const model_config& c, double* v, int pos, int layer)
{
    if (c.rope == rope_style::none) return;
    const bool local = c.rope_theta_local > 0 && c.attention_window(layer) > 0;
    const double theta = local ? c.rope_theta_local : c.rope_theta;
    const double divide = !local && c.rope_scaling.kind == rope_scaling_kind::linear ? c.rope_scaling.factor : 1.0;
    if (!local && c.rope_scaling.kind != rope_scaling_kind::none && c.rope_scaling.kind != rope_scaling_kind::linear)
        throw std::logic_error("reference_forward: RoPE scaling other than linear");
    const int rot = static_cast<int>(c.rotary_dims);
    for (int i = 0; i < rot / 2; ++i) {
        const double freq = 1.0 / std::pow(theta, 2.0 * i / rot) / divide;
        const double ang = pos * freq;
        const int a = c.rope == rope_style::adjacent ? 2 * i : i;
        const int b = c.rope == rope_style::adjacent ? 2 * i + 1 : i + rot / 2;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(ang) - x1 * std::sin(ang);
        v[b] = x0 * std::sin(ang) + x1 * std::cos(ang);
    }
}

// ALiBi slopes as transformers' MPT builds them (build_mpt_alibi_tensor): for the next power of
// two n2 >= heads, 2^(-b i / n2), i = 1..n2; with fewer heads, the odd-indexed ones, then the
// even-indexed, cut to the head count.
inline std::vector<double> hf_alibi_slopes(const model_config& c)
{
    std::vector<double> out;
    if (c.alibi_bias_max <= 0) return out;
    int n2 = 1;
    while (n2 < c.num_heads) n2 *= 2;
    std::vector<double> s(static_cast<std::size_t>(n2));
    for (int i = 1; i <= n2; ++i) s[static_cast<std::size_t>(i - 1)] = std::pow(2.0, -(i * (c.alibi_bias_max / n2)));
    if (n2 == c.num_heads) return s;
    for (int i = 1; i < n2; i += 2) out.push_back(s[static_cast<std::size_t>(i)]);
    for (int i = 0; i < n2; i += 2) out.push_back(s[static_cast<std::size_t>(i)]);
    out.resize(static_cast<std::size_t>(c.num_heads));
    return out;
}

inline double act(activation_kind k, double x)
{
    if (k == activation_kind::gelu_tanh || k == activation_kind::geglu_tanh)
        return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
}  // namespace ref

inline reference_result reference_forward(const model_config& c, const dense_weights& w, const std::vector<int>& tokens,
                                          const reference_options& opt = {})
{
    using namespace ref;
    const int T = static_cast<int>(tokens.size());
    const int d = static_cast<int>(c.hidden_size), H = static_cast<int>(c.num_heads);
    const int Hkv = static_cast<int>(c.num_kv_heads), hd = static_cast<int>(c.head_dim);
    reference_result r;
    r.ffn_input = Mat::Zero(T, d);

    const std::vector<double> slopes = ref::hf_alibi_slopes(c);
    std::vector<Vec> x(T);
    for (int t = 0; t < T; ++t) {
        x[t] = w.token_embedding.row(tokens[t]).transpose().cast<double>() * c.embedding_scale;
        if (c.learned_positions) x[t] += w.position_embedding.row(t + static_cast<int>(c.position_offset)).transpose().cast<double>();
        if (w.token_type_embedding.size()) x[t] += w.token_type_embedding.row(0).transpose().cast<double>();  // type 0
        if (w.embedding_norm.size()) x[t] = norm(c, x[t], w.embedding_norm, w.embedding_norm_bias);
    }
    auto snapshot = [&] {
        Mat h(T, d);
        for (int t = 0; t < T; ++t) h.row(t) = x[t].transpose();
        r.hidden.push_back(h);
    };
    snapshot();

    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        const dense_layer& L = w.layers[l];
        std::vector<Vec> a(T), q(T), k(T), v(T), attn(T);
        for (int t = 0; t < T; ++t) {
            a[t] = c.post_norm ? x[t] : norm(c, x[t], L.attn_norm, L.attn_norm_bias);  // BERT: the stream itself
            q[t] = lin(L.wq, L.bq, a[t]);
            k[t] = lin(L.wk, L.bk, a[t]);
            v[t] = lin(L.wv, L.bv, a[t]);
            if (c.qk_norm) {  // RMSNorm of each head, before the rotation
                for (int h = 0; h < H; ++h) q[t].segment(h * hd, hd) = norm(c, q[t].segment(h * hd, hd), L.q_norm, {});
                for (int h = 0; h < Hkv; ++h) k[t].segment(h * hd, hd) = norm(c, k[t].segment(h * hd, hd), L.k_norm, {});
            }
            for (int h = 0; h < H; ++h) rope(c, q[t].data() + h * hd, t, static_cast<int>(l) + 1);
            for (int h = 0; h < Hkv; ++h) rope(c, k[t].data() + h * hd, t, static_cast<int>(l) + 1);
        }
        // Sliding window: position t sees t - W + 1 .. t (Hugging Face's mask, q - k < W).
        bool windowed = c.sliding_window > 0 && c.sliding_window_layers.empty();
        for (int layer : c.sliding_window_layers) windowed = windowed || (c.sliding_window > 0 && layer == static_cast<int>(l) + 1);
        for (int t = 0; t < T; ++t) {
            Vec o = Vec::Zero(H * hd);
            const int first = windowed ? std::max(0, t - static_cast<int>(c.sliding_window) + 1) : 0;
            const int last = c.bidirectional ? T - 1 : t;  // encoders: no causal mask
            for (int h = 0; h < H; ++h) {
                const int g = h / (H / Hkv);
                std::vector<double> p(static_cast<std::size_t>(last + 1));
                double top = -1e300, sum = 0;
                for (int s = first; s <= last; ++s) {
                    p[s] = q[t].segment(h * hd, hd).dot(k[s].segment(g * hd, hd)) *
                           (c.attention_scale > 0 ? c.attention_scale : 1 / std::sqrt(double(hd)));
                    if (c.attention_softcap > 0) p[s] = c.attention_softcap * std::tanh(p[s] / c.attention_softcap);
                    if (!slopes.empty()) p[s] += slopes[static_cast<std::size_t>(h)] * (s - t);
                    top = std::max(top, p[s]);
                }
                for (int s = first; s <= last; ++s) sum += (p[s] = std::exp(p[s] - top));
                for (int s = first; s <= last; ++s) o.segment(h * hd, hd) += p[s] / sum * v[s].segment(g * hd, hd);
            }
            attn[t] = opt.attention ? lin(L.wo, L.bo, o) : Vec::Zero(d);
            if (opt.attention && c.sandwich_norms) attn[t] = norm(c, attn[t], L.post_attn_norm, {});
        }
        for (int t = 0; t < T; ++t) {
            Vec f_in;
            if (c.post_norm) {  // BERT: x = LN(x + attn), then the FFN reads it
                x[t] = norm(c, Vec(x[t] + attn[t]), L.attn_norm, L.attn_norm_bias);
                f_in = x[t];
            } else if (c.parallel_residual) {
                f_in = c.shared_input_norm ? a[t] : norm(c, x[t], L.ffn_norm, L.ffn_norm_bias);
            } else {
                x[t] += attn[t];
                f_in = norm(c, x[t], L.ffn_norm, L.ffn_norm_bias);
            }
            if (static_cast<int>(l) + 1 == opt.ffn_layer) r.ffn_input.row(t) = f_in.transpose();
            Vec inner;
            if (c.activation == activation_kind::swiglu) {
                const Vec g = lin(L.w_gate, L.b_gate, f_in);
                const Vec u = lin(L.w_up, L.b_up, f_in);
                inner = Vec(g.size());
                for (Eigen::Index i = 0; i < g.size(); ++i) inner[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
            } else if (c.activation == activation_kind::geglu_tanh) {
                const Vec g = lin(L.w_gate, L.b_gate, f_in);
                const Vec u = lin(L.w_up, L.b_up, f_in);
                inner = Vec(g.size());
                for (Eigen::Index i = 0; i < g.size(); ++i) inner[i] = act(c.activation, g[i]) * u[i];
            } else {
                inner = lin(L.w_up, L.b_up, f_in);
                for (Eigen::Index i = 0; i < inner.size(); ++i) inner[i] = act(c.activation, inner[i]);
            }
            Vec f_out = lin(L.w_down, L.b_down, inner);
            if (c.sandwich_norms) f_out = norm(c, f_out, L.post_ffn_norm, {});
            x[t] += f_out;
            if (c.parallel_residual) x[t] += attn[t];
            if (c.post_norm) x[t] = norm(c, x[t], L.ffn_norm, L.ffn_norm_bias);
        }
        snapshot();
    }

    if (is_encoder(c.family)) return r;  // no language-model head
    const row_matrix<float>& head = w.lm_head.size() ? w.lm_head : w.token_embedding;
    r.logits = Mat(T, head.rows());
    for (int t = 0; t < T; ++t) {
        r.logits.row(t) = (head.cast<double>() * norm(c, x[t], w.final_norm, w.final_norm_bias)).transpose();
        if (c.logit_softcap > 0) r.logits.row(t) = (r.logits.row(t).array() / c.logit_softcap).tanh() * c.logit_softcap;
    }
    return r;
}

}  // namespace sdlens::test
