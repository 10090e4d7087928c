#pragma once
// One transformer layer linearized at position 0 (METHOD.md section 2), as matrix-free operators:
//   norm N = diag(g) (LayerNorm optionally also centred: diag(g) P, P = I - 11^T/d), where g
//     is the gain the model multiplies by (Gemma's 1 + w),
//   attention A = W_O W_V_rep N_attn (GQA: query head q reads kv head q / n_rep),
//   FFN F = W_down F1 N_ffn (F1 exact by Stein's lemma, or the paper's Monte-Carlo lstsq),
//   with sandwich norms (Gemma 2/3) A = N_post_attn W_O W_V_rep N_attn, F = N_post_ffn W_down F1 N_ffn,
//   layer L = (I + F)(I + A) for sequential blocks, L = I + A + F for parallel ones; R = L - I.
// Every product reads the weights in place through their views (any dtype), so applying L or L^T
// costs one pass over the layer's V, O, gate, up and down bytes; the only precomputation is F1's
// row scalings (length M). Norm scalars and biases are dropped as the paper does, except GELU's
// first bias, which stays inside phi. Dense forms are for small models, tests and benchmarks.
#include <cstdint>
#include <memory>
#include <optional>

#include <Eigen/Core>

#include "sdlens/core/error.hpp"
#include "sdlens/linearize/ffn_linearization.hpp"
#include "sdlens/linearize/streaming_matvec.hpp"
#include "sdlens/model/model.hpp"
#include "sdlens/solvers/dense_operator.hpp"  // dense forms as operators, for callers of this header

namespace sdlens {

struct linearize_options {
    ffn_estimator estimator = ffn_estimator::exact;
    std::int64_t monte_carlo_samples = 100000;
    std::uint64_t monte_carlo_seed = 0;
    // SINDER's centring projection for LayerNorm models; off = the authors' choice (diag(gamma)).
    bool center_layernorm = false;
};

// Which linear map of a layer.
enum class layer_map { layer, residual, attention, ffn };

template <class Scalar>
class linearized_layer {
public:
    using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
    using block = block_of<Scalar>;

    linearized_layer(const model_config& config, const layer_weights& w, const linearize_options& options = {})
        : config_(config), w_(w), options_(options)
    {
        d_ = config.hidden_size;
        if (config.post_norm)
            throw input_error(std::string("linearization: ") + family_name(config.family) +
                              " is a post-norm encoder; the paper's linearization of pre-norm layers (norm, then branch, then residual) does not apply");
        if (!w.wv || !w.wo) throw input_error("layer has no attention value or output projection");
        if (w.wv.cols != d_ || w.wo.rows != d_ || w.w_up.cols != d_ || !w.w_down || w.w_down.rows != d_ ||
            w.w_down.cols != w.w_up.rows)
            throw input_error("layer weights do not match hidden size " + std::to_string(d_));
        head_dim_ = config.head_dim;
        n_heads_ = config.num_heads;
        n_kv_ = config.num_kv_heads;
        if (head_dim_ <= 0 || n_heads_ <= 0 || n_kv_ <= 0 || n_heads_ % n_kv_ != 0 || w.wv.rows != n_kv_ * head_dim_ ||
            w.wo.cols != n_heads_ * head_dim_)
            throw input_error("attention shapes do not match the configured heads");
        g_attn_ = norm_weight(w.attn_norm);
        const vector_view& ffn_norm = (config.parallel_residual && config.shared_input_norm) || !w.ffn_norm
                                          ? w.attn_norm
                                          : w.ffn_norm;
        g_ffn_ = norm_weight(ffn_norm);
        if (config.sandwich_norms) {
            if (!w.post_attn_norm || !w.post_ffn_norm) throw input_error("layer lacks the post-attention or post-FFN norm its config calls for");
            g_post_attn_ = norm_weight(w.post_attn_norm);
            g_post_ffn_ = norm_weight(w.post_ffn_norm);
        }
        center_ = options.center_layernorm && config.norm == norm_kind::layer;
        if (options.estimator == ffn_estimator::exact) {
            scales_ = exact_ffn_row_scales(config, w);
        } else {
            f1_dense_ = monte_carlo_f1(config, w, options.monte_carlo_samples, options.monte_carlo_seed).template cast<Scalar>();
        }
    }

    std::int64_t dim() const { return d_; }
    std::int64_t ffn_dim() const { return w_.w_up.rows; }
    const model_config& config() const { return config_; }
    const ffn_row_scales& row_scales() const { return scales_; }
    bool exact() const { return options_.estimator == ffn_estimator::exact; }
    const vector& attention_norm() const { return g_attn_; }
    const vector& ffn_norm() const { return g_ffn_; }

    // A X and A^T X.
    block attention(const block& x) const
    {
        const block v = streaming_multiply<Scalar>(w_.wv, norm(g_attn_, x));
        return post(g_post_attn_, streaming_multiply<Scalar>(w_.wo, repeat_kv(v)));
    }
    block attention_transpose(const block& y) const
    {
        const block t = streaming_multiply_transpose<Scalar>(w_.wo, post(g_post_attn_, y));
        return norm_transpose(g_attn_, streaming_multiply_transpose<Scalar>(w_.wv, sum_kv(t)));
    }

    // F1 Z and F1^T Y (Z: d x k, Y: M x k).
    block f1(const block& z) const
    {
        if (!exact()) return f1_dense_ * z;
        block h = scale_rows(scales_.up_scale, streaming_multiply<Scalar>(w_.w_up, z));
        if (scales_.gate_scale.size() > 0) h += scale_rows(scales_.gate_scale, streaming_multiply<Scalar>(w_.w_gate, z));
        return h;
    }
    block f1_transpose(const block& y) const
    {
        if (!exact()) return f1_dense_.transpose() * y;
        block r = streaming_multiply_transpose<Scalar>(w_.w_up, scale_rows(scales_.up_scale, y));
        if (scales_.gate_scale.size() > 0)
            r += streaming_multiply_transpose<Scalar>(w_.w_gate, scale_rows(scales_.gate_scale, y));
        return r;
    }

    // F X and F^T X.
    block ffn(const block& x) const { return post(g_post_ffn_, streaming_multiply<Scalar>(w_.w_down, f1(norm(g_ffn_, x)))); }
    block ffn_transpose(const block& y) const
    {
        return norm_transpose(g_ffn_, f1_transpose(streaming_multiply_transpose<Scalar>(w_.w_down, post(g_post_ffn_, y))));
    }

    // R X = L X - X, and R^T X.
    block residual(const block& x) const
    {
        const block a = attention(x);
        if (config_.parallel_residual) return a + ffn(x);
        block h = x + a;
        return a + ffn(h);
    }
    block residual_transpose(const block& y) const
    {
        if (config_.parallel_residual) return attention_transpose(y) + ffn_transpose(y);
        const block w = y + ffn_transpose(y);  // (I + F^T) y
        return (w - y) + attention_transpose(w);
    }
    block layer(const block& x) const { return x + residual(x); }
    block layer_transpose(const block& y) const { return y + residual_transpose(y); }

    block apply(layer_map which, const block& x) const
    {
        switch (which) {
        case layer_map::layer: return layer(x);
        case layer_map::residual: return residual(x);
        case layer_map::attention: return attention(x);
        case layer_map::ffn: return ffn(x);
        }
        return {};
    }
    block apply_transpose(layer_map which, const block& y) const
    {
        switch (which) {
        case layer_map::layer: return layer_transpose(y);
        case layer_map::residual: return residual_transpose(y);
        case layer_map::attention: return attention_transpose(y);
        case layer_map::ffn: return ffn_transpose(y);
        }
        return {};
    }

    // Dense forms, built from decoded weights by the products that define them (as the paper's
    // recipe does): d x d each, for small models, tests and the dense baseline of the benchmark.
    block dense_attention() const
    {
        const block wv = to_dense<Scalar>(w_.wv);
        const block wo = to_dense<Scalar>(w_.wo);
        return post(g_post_attn_, dense_norm_right(g_attn_, wo * repeat_kv(wv)));
    }
    block dense_f1() const
    {
        if (!exact()) return f1_dense_;
        block f1 = scales_.up_scale.template cast<Scalar>().asDiagonal() * to_dense<Scalar>(w_.w_up);
        if (scales_.gate_scale.size() > 0)
            f1 += scales_.gate_scale.template cast<Scalar>().asDiagonal() * to_dense<Scalar>(w_.w_gate);
        return f1;
    }
    block dense_ffn() const
    {
        const block wd = to_dense<Scalar>(w_.w_down);
        return post(g_post_ffn_, dense_norm_right(g_ffn_, wd * dense_f1()));
    }
    block dense_residual() const
    {
        const block a = dense_attention(), f = dense_ffn();
        if (config_.parallel_residual) return a + f;
        block r = a + f;
        r.noalias() += f * a;
        return r;
    }
    block dense_layer() const
    {
        block l = dense_residual();
        l.diagonal().array() += Scalar(1);
        return l;
    }
    block dense(layer_map which) const
    {
        switch (which) {
        case layer_map::layer: return dense_layer();
        case layer_map::residual: return dense_residual();
        case layer_map::attention: return dense_attention();
        case layer_map::ffn: return dense_ffn();
        }
        return {};
    }

private:
    vector norm_weight(const vector_view& v) const
    {
        if (!v) return vector::Ones(d_);  // a norm without weight (or none): identity
        if (v.size != d_) throw input_error("norm weight length " + std::to_string(v.size) + " differs from hidden size");
        vector g = to_dense<Scalar>(v);
        g.array() += static_cast<Scalar>(config_.norm_weight_offset);
        return g;
    }
    // diag(g) Y for a branch's post norm; g empty (no sandwich norms): Y.
    static block post(const vector& g, block y)
    {
        if (g.size()) y = g.asDiagonal() * y;
        return y;
    }
    // N X = diag(g) (P) X and N^T Y = (P) diag(g) Y.
    block norm(const vector& g, const block& x) const
    {
        block z = x;
        if (center_) z.rowwise() -= z.colwise().mean();
        return g.asDiagonal() * z;
    }
    block norm_transpose(const vector& g, const block& y) const
    {
        block z = g.asDiagonal() * y;
        if (center_) z.rowwise() -= z.colwise().mean();
        return z;
    }
    // M N for a dense M (rows x d).
    block dense_norm_right(const vector& g, const block& m) const
    {
        block r = m * g.asDiagonal();
        if (center_) r.colwise() -= r.rowwise().mean();
        return r;
    }
    // kv_dim rows -> q_dim rows, each kv head's block repeated n_rep times consecutively.
    block repeat_kv(const block& v) const
    {
        const std::int64_t rep = n_heads_ / n_kv_;
        block out(n_heads_ * head_dim_, v.cols());
        for (std::int64_t q = 0; q < n_heads_; ++q)
            out.middleRows(q * head_dim_, head_dim_) = v.middleRows((q / rep) * head_dim_, head_dim_);
        return out;
    }
    // The transpose of repeat_kv: q_dim rows summed into kv_dim rows.
    block sum_kv(const block& t) const
    {
        const std::int64_t rep = n_heads_ / n_kv_;
        block out = block::Zero(n_kv_ * head_dim_, t.cols());
        for (std::int64_t q = 0; q < n_heads_; ++q)
            out.middleRows((q / rep) * head_dim_, head_dim_) += t.middleRows(q * head_dim_, head_dim_);
        return out;
    }
    static block scale_rows(const Eigen::VectorXd& s, block x)
    {
        if constexpr (std::is_same_v<Scalar, double>) x = s.asDiagonal() * x;
        else x = s.cast<Scalar>().asDiagonal() * x;
        return x;
    }

    model_config config_;
    layer_weights w_;
    linearize_options options_;
    std::int64_t d_ = 0, head_dim_ = 0, n_heads_ = 0, n_kv_ = 0;
    vector g_attn_, g_ffn_, g_post_attn_, g_post_ffn_;
    bool center_ = false;
    ffn_row_scales scales_;
    block f1_dense_;
};

// A linearized layer's map as an operator for the solvers: rows(), cols(), apply(x, y),
// apply_transpose(x, y) on blocks (a vector is a block with one column).
template <class Scalar>
class layer_map_operator {
public:
    using scalar_type = Scalar;
    using block = block_of<Scalar>;

    layer_map_operator(const linearized_layer<Scalar>& layer, layer_map which) : layer_(&layer), which_(which) {}
    std::int64_t rows() const { return layer_->dim(); }
    std::int64_t cols() const { return layer_->dim(); }
    void apply(const block& x, block& y) const { y = layer_->apply(which_, x); }
    void apply_transpose(const block& x, block& y) const { y = layer_->apply_transpose(which_, x); }

private:
    const linearized_layer<Scalar>* layer_;
    layer_map which_;
};

}  // namespace sdlens
