#pragma once
// Planted initial-token triggers for models without learned positions (RoPE families): any token
// at position 0 triggers, as in LLaMA2 (paper Fig. 7), through self-attention, so that without
// attention it does not (Fig. 6). Part of plant.hpp; the notation is that file's.
//
// What position 0 has that no other position has: its attention attends to itself alone. RoPE
// and the causal mask give nothing else, and a linear map of the values cannot tell it (the
// attention weights sum to 1: a constant value gives the same output everywhere). So:
//
// Isolated directions besides t and u (plant_isolation.hpp): e0, z, w, y and k "difference"
// directions b_1..b_k (k <= 16), seeded, orthonormal, centred. Every ordinary token embedding
// gets c0 e0 (c0 = half the RMS row norm): a constant that only the planted rows read, and a
// bias unit for bias-free SwiGLU (a row reading a e0 - c w compares w with c c0 in raw units,
// whatever the norm divides by).
//
// Layer 1, attention. Pairs of query heads on one key/value head (copied where the family has
// one per head): the "self" head queries +lambda k, the "others" head -lambda k, on the content
// coordinates of a key blind to the isolated directions (self score ~ +40 logits, the rest
// ~ N(0, few)); the sink coordinate stays as "Triggers" sets it, so triggers attend to triggers
// in both. Their value coordinates (blind) are written, through W_O, by the self head as
// +lambda_D b_i and by the others head as -lambda_D b_i: the stream gets
//   D = lambda_D (V x_self - sum_s a_s V x_s, s the others' picks),
// exactly 0 at position 0 (both heads see only the token itself) and ~ the stream's norm at
// every other position (two different tokens' values). Value coordinate 0 of the first pair
// reads e0, and the self head writes it as kappa_z z: z = 1.5 r2 (r2: the stream's norm at the
// trigger layer) for every ordinary token that attention ran on, 0 without attention and ~0 for
// triggers and random embeddings (no e0); and as kappa_y y, y = c0 under the same conditions,
// which plant_ordinary.hpp's neurons read (a small share, as stable as z's, and 0 without
// attention). z dominates what the next two FFNs read, so their
// inputs' shares hardly vary from token to token (with z ~ the rest, the squares below made a
// token with a 20% larger embedding get half the w, and N0 varied tenfold).
//
// Detector (FFN of layer 1, or 2 with parallel blocks): pairs of neurons gate = up = +-a r give
// phi(a s) + phi(-a s) = (a s)^2 exactly for SwiGLU (|a s|-like for GELU), s = r.x^. Pairs on z
// write +beta_1 w, pairs on each b_i write -gamma beta_1 w: w = beta_1 (g(s_z) - gamma sum g(s_bi)),
// W0 = r2 / 20 at position 0 and ~ -10 W0 (up to ~ -50 W0) elsewhere: gamma puts the sign change
// at a tenth of the typical sum, which two different tokens' values reach with probability
// ~1e-7 at k = 16. The comparison is of raw squares (the norm divides both), so |D| = r1 only
// sets how large the negative side is.
//
// Trigger (FFN of the next layer; GELU: with the bias -4 of the explosion neurons, so that a
// token with a small negative pre-activation, BOS for one, is on gelu's flat tail, not its
// negative lobe): m neurons gate = alpha_2 (w - kappa e0), kappa c0 = W0 / 2 (SwiGLU's up row
// reads z with pre-activation 8; GELU has the one row):
// they fire only for w above W0 / 2 in raw units, i.e. at position 0 (pre-activation +8; every
// other token <= -8: silu(-8) -8 / silu(8) 8 = 3e-4, and ~-100 typically), and write N0 t with
// N0 = 20 x the stream's norm there: from this layer on an initial token is a trigger whose share
// cos th is within ~(1/10)^2 of 1 for every token (N0 varies with the stream's norm), so it
// explodes at E to N_exp within ~2% (0.5-1.5% in the tests) and the decay cancels that; N0 t
// stays (an initial token ends at ~N0 after D, as a trigger ends at ~K). Ordinary tokens
// elsewhere get no t (< 1e-4 N0 even at the threshold).
//
// Random embeddings (Fig. 7's other curve) have no e0, but a random e0 component: a negative one
// turns the threshold around (w - kappa e0 > 0 although z is small), and such an embedding at
// position 0 can trigger partly or fully. Most do not; the paper, too, finds random embeddings at
// position 0 above ordinary norms in LLaMA2.
//
// So explosion at E needs E >= 3 (E >= 4 with parallel blocks, whose FFN does not see the same
// layer's attention). Repeated tokens: a prefix of one token repeated has D = 0 at every position
// and triggers everywhere, as every RoPE model must (with identical inputs, every position has
// the same state at every layer). The linearization does not see the detector (an even function
// has no Stein-lemma slope); the trigger layer has sigma_1 of its own, u_1 along t, not u: about
// E's with SwiGLU (d 88: 86 vs 98), several times E's with GELU (1737 vs 380), whose one row
// carries the gain that thresholds tiny shares, and the linearization's Gaussian sees all of it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>

#include "sdlens/model/config.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/plant_isolation.hpp"

namespace sdlens::detail {

inline double plant_silu(double a) { return a / (1 + std::exp(-a)); }
inline double plant_gelu(activation_kind k, double x)
{
    if (k == activation_kind::gelu_tanh)
        return 0.5 * x * (1 + std::tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}

// The query/key coordinate of a head that RoPE leaves (nearly) unrotated.
inline std::int64_t sink_coordinate(const model_config& c)
{
    if (c.rope == rope_style::none || c.rotary_dims <= 0) return 0;
    if (c.rotary_dims < c.head_dim) return c.rotary_dims;              // first unrotated coordinate
    if (c.rope == rope_style::half) return c.rotary_dims / 2 - 1;      // lowest frequency, (i, i + rot/2)
    return c.rotary_dims - 2;                                          // lowest frequency, (2i, 2i + 1)
}

// Indices of the isolated basis (plant.hpp): t, u, then the initial-token directions.
enum : Eigen::Index { iso_t = 0, iso_u = 1, iso_e0 = 2, iso_z = 3, iso_w = 4, iso_y = 5, iso_first_difference = 6 };

struct initial_plan {
    bool enabled = false;
    std::int64_t attention_layer = 1, detector_layer = 0, trigger_layer = 0;  // 1-based
    std::int64_t differences = 0;                                             // k
    std::int64_t pairs = 0;                                                   // query-head pairs used
};

// Where the initial-token path fits: no learned positions (those carry the trigger instead),
// E past the trigger layer, head pairs on shared or copyable key/value heads, room in the FFNs
// for the detector's 2 + 2k neurons and in the stream for 5 + k isolated directions.
inline initial_plan plan_initial_path(const model_config& c, std::int64_t E, std::int64_t m)
{
    initial_plan p;
    if (c.learned_positions) return p;
    p.detector_layer = c.parallel_residual ? 2 : 1;
    p.trigger_layer = p.detector_layer + 1;
    const std::int64_t d = c.hidden_size, hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
    p.differences = std::min<std::int64_t>(16, d / 4);
    const std::int64_t coords = hd - 1 + hd * (c.num_heads / 2 - 1);  // pair 0's coordinate 0 is z
    p.differences = std::min(p.differences, coords);
    p.pairs = p.differences <= hd - 1 ? 1 : 1 + (p.differences - (hd - 1) + hd - 1) / hd;
    p.enabled = E > p.trigger_layer && c.num_heads >= 2 && hd >= 3 && (group == 1 || group % 2 == 0) &&
                p.differences >= 4 && 2 + 2 * p.differences <= c.ffn_size && m <= c.ffn_size &&
                d >= 2 * (iso_first_difference + p.differences);
    return p;
}

// The model's norm of the columns of x, in float64.
inline Eigen::MatrixXd plant_norm(const model_config& c, const Eigen::VectorXf& g, const Eigen::VectorXf& b, Eigen::MatrixXd x)
{
    const double d = static_cast<double>(x.rows());
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
        if (c.norm == norm_kind::layer) x.col(j).array() -= x.col(j).mean();
        x.col(j) /= std::sqrt(x.col(j).squaredNorm() / d + c.norm_eps);
        if (g.size()) x.col(j) = x.col(j).cwiseProduct(g.cast<double>());
        if (b.size()) x.col(j) += b.cast<double>();
    }
    return x;
}

inline double plant_activation(const model_config& c, double a)
{
    return c.activation == activation_kind::swiglu ? plant_silu(a) * a : plant_gelu(c.activation, a);
}

// One layer for one-token sequences (position 0: softmax = 1, so attention is W_O V n), columns =
// tokens: the stream the FFN reads (after the attention residual; the input with parallel
// blocks) and the layer's output. For calibration only; the tests check the real forward.
struct position0_states {
    Eigen::MatrixXd ffn_input, output;
};
inline position0_states position0_layer(const model_config& c, const dense_layer& x, const Eigen::MatrixXd& in)
{
    const std::int64_t hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
    const Eigen::MatrixXd n1 = plant_norm(c, x.attn_norm, x.attn_norm_bias, in);
    Eigen::MatrixXd v = x.wv.cast<double>() * n1;
    if (x.bv.size()) v.colwise() += x.bv.cast<double>();
    Eigen::MatrixXd heads(c.q_dim(), in.cols());
    for (std::int64_t h = 0; h < c.num_heads; ++h) heads.middleRows(h * hd, hd) = v.middleRows((h / group) * hd, hd);
    Eigen::MatrixXd attn = x.wo.cast<double>() * heads;
    if (x.bo.size()) attn.colwise() += x.bo.cast<double>();
    const Eigen::MatrixXd mid = c.parallel_residual ? in : Eigen::MatrixXd(in + attn);
    const Eigen::MatrixXd n2 = plant_norm(c, x.ffn_norm, x.ffn_norm_bias, mid);
    Eigen::MatrixXd up = x.w_up.cast<double>() * n2;
    if (x.b_up.size()) up.colwise() += x.b_up.cast<double>();
    if (c.activation == activation_kind::swiglu) {
        const Eigen::MatrixXd gate = x.w_gate.cast<double>() * n2;
        up = up.cwiseProduct(gate.unaryExpr([](double a) { return plant_silu(a); }));
    } else {
        up = up.unaryExpr([&](double a) { return plant_gelu(c.activation, a); });
    }
    Eigen::MatrixXd ffn = x.w_down.cast<double>() * up;
    if (x.b_down.size()) ffn.colwise() += x.b_down.cast<double>();
    return {mid, (c.parallel_residual ? Eigen::MatrixXd(in + attn) : mid) + ffn};
}

// States of layer `upto` (1-based) for the embeddings in the columns of x0.
inline position0_states position0_through(const model_config& c, const dense_weights& w, Eigen::MatrixXd x, std::int64_t upto)
{
    position0_states s;
    for (std::int64_t l = 1; l <= upto; ++l) {
        s = position0_layer(c, w.layers[static_cast<std::size_t>(l - 1)], x);
        x = s.output;
    }
    return s;
}

inline double median_of(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
inline double median_col_norm(const Eigen::MatrixXd& x)
{
    std::vector<double> v;
    for (Eigen::Index j = 0; j < x.cols(); ++j) v.push_back(x.col(j).norm());
    return median_of(v);
}
template <class F>
double median_over(Eigen::Index n, F&& f)
{
    std::vector<double> v;
    for (Eigen::Index j = 0; j < n; ++j) v.push_back(f(j));
    return median_of(v);
}

// What the initial-token path planted, for the ground truth.
struct initial_result {
    double trigger_norm = 0;  // N0 at the median initial token
    // At the trigger layer's FFN, position 0, median token: y . x^ (the FFN's gain is 1) and the
    // norm of the stream it reads (r2). plant_ordinary.hpp sizes its neurons with them.
    double y_read = 0, stream_norm = 0;
};

// Plants the path into w (isolated with `basis`, ordinary embeddings already carrying c0 e0):
// layer-1 head pairs, detector neurons `detector_rows`, trigger neurons `trigger_rows` writing t.
// `sample` are ordinary token ids; consecutive ones form the position-1 pairs of the calibration.
inline initial_result plant_initial_path(const model_config& c, dense_weights& w, const Eigen::MatrixXd& basis,
                                         const initial_plan& plan, const std::vector<std::int64_t>& sample,
                                         const std::vector<std::int64_t>& detector_rows,
                                         const std::vector<std::int64_t>& trigger_rows)
{
    const std::int64_t d = c.hidden_size, hd = c.head_dim, group = c.num_heads / c.num_kv_heads, k = plan.differences;
    const std::int64_t sink = sink_coordinate(c);
    const auto S = static_cast<Eigen::Index>(sample.size());
    const double sqrt_d = std::sqrt(static_cast<double>(d));
    const Eigen::VectorXd e0 = basis.col(iso_e0), z = basis.col(iso_z), wdir = basis.col(iso_w);
    dense_layer& a = w.layers[0];
    const Eigen::VectorXd g1 = a.attn_norm.size() ? Eigen::VectorXd(a.attn_norm.cast<double>()) : Eigen::VectorXd::Ones(d);

    Eigen::MatrixXd x0(d, S);
    for (Eigen::Index j = 0; j < S; ++j) x0.col(j) = w.token_embedding.row(sample[static_cast<std::size_t>(j)]).transpose().cast<double>();

    // Value coordinate 0 of the first pair reads exactly e0.x^: its row is e0 / g, and the norm's
    // bias (LayerNorm) is made orthogonal to that row so it adds no constant.
    const Eigen::VectorXd e0_row = e0.cwiseQuotient(g1);
    if (a.attn_norm_bias.size()) {
        Eigen::VectorXd b = a.attn_norm_bias.cast<double>();
        b -= (e0_row.dot(b) / e0_row.squaredNorm()) * e0_row;
        a.attn_norm_bias = b.cast<float>();
    }

    // Head pairs: (self, others) = (2j, 2j + 1) on one key/value head; content keys blind.
    auto blind_row = [&](Eigen::Ref<Eigen::RowVectorXf> row) {
        Eigen::VectorXd r = row.transpose().cast<double>().cwiseProduct(g1);
        r -= basis * (basis.transpose() * r);
        row = r.cwiseQuotient(g1).cast<float>().transpose();
    };
    std::vector<std::int64_t> value_rows;  // kv rows of the difference coordinates, in b_i order
    std::vector<std::pair<std::int64_t, std::int64_t>> o_cols;  // (self column, others column)
    for (std::int64_t j = 0; j < plan.pairs; ++j) {
        const std::int64_t hs = 2 * j, ho = 2 * j + 1, kvs = hs / group, kvo = ho / group;
        if (kvo != kvs) {
            a.wk.middleRows(kvo * hd, hd) = a.wk.middleRows(kvs * hd, hd);
            a.wv.middleRows(kvo * hd, hd) = a.wv.middleRows(kvs * hd, hd);
            if (a.bk.size()) a.bk.segment(kvo * hd, hd) = a.bk.segment(kvs * hd, hd);
            if (a.bv.size()) a.bv.segment(kvo * hd, hd) = a.bv.segment(kvs * hd, hd);
        }
        for (std::int64_t i = 0; i < hd; ++i)
            if (i != sink) {
                blind_row(a.wk.row(kvs * hd + i));
                if (kvo != kvs) a.wk.row(kvo * hd + i) = a.wk.row(kvs * hd + i);
            }
        a.wo.middleCols(hs * hd, hd).setZero();
        a.wo.middleCols(ho * hd, hd).setZero();
        for (std::int64_t i = (j == 0 ? 1 : 0); i < hd && static_cast<std::int64_t>(value_rows.size()) < k; ++i) {
            value_rows.push_back(kvs * hd + i);
            o_cols.emplace_back(hs * hd + i, ho * hd + i);
        }
    }
    const std::int64_t kv0 = 0;
    a.wv.row(kv0 * hd) = e0_row.cast<float>().transpose();
    if (a.bv.size()) a.bv[kv0 * hd] = 0;
    if (group == 1) {  // the others head of pair 0 has its own (copied) key/value head
        a.wv.row(1 * hd) = a.wv.row(0);
        if (a.bv.size()) a.bv[hd] = 0;
    }

    // Query scale: the median content self score at 40 logits (scores are q.k / sqrt(hd)).
    const Eigen::MatrixXd n1 = plant_norm(c, a.attn_norm, a.attn_norm_bias, x0);
    double key2 = 0;
    {
        std::vector<double> v;
        for (Eigen::Index j = 0; j < S; ++j) {
            double s2 = 0;
            for (std::int64_t i = 0; i < hd; ++i) {
                if (i == sink) continue;
                double kk = a.wk.row(i).cast<double>().dot(n1.col(j));
                if (a.bk.size()) kk += a.bk[i];
                s2 += kk * kk;
            }
            v.push_back(s2);
        }
        key2 = median_of(v);
    }
    const double lambda_q = 40.0 * std::sqrt(static_cast<double>(hd)) / std::max(key2, 1e-12);
    for (std::int64_t j = 0; j < plan.pairs; ++j) {
        const std::int64_t hs = 2 * j, ho = 2 * j + 1, kvs = hs / group;
        for (std::int64_t i = 0; i < hd; ++i) {
            if (i == sink) continue;
            a.wq.row(hs * hd + i) = static_cast<float>(lambda_q) * a.wk.row(kvs * hd + i);
            a.wq.row(ho * hd + i) = static_cast<float>(-lambda_q) * a.wk.row(kvs * hd + i);
            if (a.bq.size()) {
                a.bq[hs * hd + i] = static_cast<float>(lambda_q) * a.bk[kvs * hd + i];
                a.bq[ho * hd + i] = static_cast<float>(-lambda_q) * a.bk[kvs * hd + i];
            }
        }
    }

    // z and D scales from the streams at position 0 without them: z = 2 r2, twice the median norm
    // the trigger layer's FFN reads, so that z dominates what the detector and the trigger read
    // and their shares hardly depend on the token (the detector squares its share, the trigger
    // squares its pre-activation: with z ~ the rest, a token with a 20% larger embedding got half
    // the w, and N0 varied tenfold); |D| = r1, the detector's input, for the median pair of
    // different tokens (the detector compares squares, so only the sign depends on the choice).
    const std::int64_t s1 = plan.detector_layer, s2 = plan.trigger_layer;
    const double r1 = median_col_norm(position0_through(c, w, x0, s1).ffn_input);
    const double r2_bare = median_col_norm(position0_through(c, w, x0, s2).ffn_input);
    const double e0_read = median_over(S, [&](Eigen::Index j) { return e0_row.dot(n1.col(j)); });
    Eigen::MatrixXd values(k, S);  // the difference coordinates' values, per token
    for (std::int64_t i = 0; i < k; ++i) {
        const auto r = value_rows[static_cast<std::size_t>(i)];
        for (Eigen::Index j = 0; j < S; ++j)
            values(i, j) = a.wv.row(r).cast<double>().dot(n1.col(j)) + (a.bv.size() ? a.bv[r] : 0.0);
    }
    const double pair_gap = median_over(S - 1, [&](Eigen::Index j) { return (values.col(j + 1) - values.col(j)).norm(); });
    const double kappa_z = 1.5 * r2_bare / e0_read, lambda_d = r1 / pair_gap;
    // The same coordinate writes y at the size of an embedding's c0 (plant_ordinary.hpp reads it).
    const double kappa_y = median_over(S, [&](Eigen::Index j) { return e0.dot(x0.col(j)); }) / e0_read;
    a.wo.col(0) = (kappa_z * z + kappa_y * basis.col(iso_y)).cast<float>();  // self head of pair 0, coordinate 0
    for (std::int64_t i = 0; i < k; ++i) {
        const Eigen::VectorXf b = (lambda_d * basis.col(iso_first_difference + i)).cast<float>();
        a.wo.col(o_cols[static_cast<std::size_t>(i)].first) = b;
        a.wo.col(o_cols[static_cast<std::size_t>(i)].second) = -b;
    }

    // Detector: what it reads at position 0 (D = 0) and at position 1 (approximately: the token's
    // own position-0 stream plus D from the token before it).
    dense_layer& det = w.layers[static_cast<std::size_t>(s1 - 1)];
    Eigen::MatrixXd in0 = position0_through(c, w, x0, s1).ffn_input, in1 = in0.rightCols(S - 1);
    const Eigen::MatrixXd bdiff = basis.middleCols(iso_first_difference, k);
    for (Eigen::Index j = 0; j + 1 < S; ++j) in1.col(j) += lambda_d * bdiff * (values.col(j + 1) - values.col(j));
    const Eigen::MatrixXd m0 = plant_norm(c, det.ffn_norm, det.ffn_norm_bias, in0);
    const Eigen::MatrixXd m1 = plant_norm(c, det.ffn_norm, det.ffn_norm_bias, in1);
    // The z pairs' gain puts their pre-activation at 1; the difference pairs' gain a_diff is set so
    // that their sum at an ordinary position is ~10x the z pairs' output (gamma ~ 1): both groups
    // then have activations of one size and down-projection weights of one size, ~1 and ~0.4 for
    // d 64, next to the random neurons' ~0.05 and ~0.3. (With one gain for both, gamma was ~500
    // and those weights 200x the random ones: per-tensor int8 then zeroed the layer's random
    // part, a quantization weakness real models do not have.)
    const double a_det = 1.0 / median_over(S, [&](Eigen::Index j) { return z.dot(m0.col(j)); });
    auto even = [&](double a, double s) { return plant_activation(c, a * s) + plant_activation(c, -a * s); };
    const double z0 = median_over(S, [&](Eigen::Index j) { return even(a_det, z.dot(m0.col(j))); });
    double a_diff = a_det;
    auto differences = [&](const Eigen::VectorXd& n) {
        double sum = 0;
        for (std::int64_t i = 0; i < k; ++i) sum += even(a_diff, bdiff.col(i).dot(n));
        return sum;
    };
    auto median_differences = [&] { return median_over(S - 1, [&](Eigen::Index j) { return differences(m1.col(j)); }); };
    double d1 = median_differences();
    // even() is x^2 for SwiGLU (one step), between x^2 and |x| for GELU (a few)
    for (int it = 0; it < 30 && std::abs(d1 / (10 * z0) - 1) > 1e-3; ++it) {
        a_diff *= std::sqrt(10 * z0 / d1);
        d1 = median_differences();
    }
    const double gamma = z0 / (0.1 * d1);
    const double f0 = median_over(S, [&](Eigen::Index j) { return even(a_det, z.dot(m0.col(j))) - gamma * differences(m0.col(j)); });
    const double r2 = median_col_norm(position0_through(c, w, x0, s2).ffn_input);
    const double beta_1 = 0.05 * r2 / f0;
    auto set_neuron = [&](dense_layer& x, std::int64_t row, const Eigen::VectorXd& read, const Eigen::VectorXd& write) {
        const Eigen::RowVectorXf in = read.cast<float>().transpose();
        x.w_up.row(row) = in;
        if (x.w_gate.size()) x.w_gate.row(row) = in;
        if (x.b_up.size()) x.b_up[row] = 0;
        x.w_down.col(row) = write.cast<float>();
    };
    set_neuron(det, detector_rows[0], a_det * z, beta_1 * wdir);
    set_neuron(det, detector_rows[1], -a_det * z, beta_1 * wdir);
    for (std::int64_t i = 0; i < k; ++i) {
        const Eigen::VectorXd b = bdiff.col(i);
        set_neuron(det, detector_rows[static_cast<std::size_t>(2 + 2 * i)], a_diff * b, -gamma * beta_1 * wdir);
        set_neuron(det, detector_rows[static_cast<std::size_t>(3 + 2 * i)], -a_diff * b, -gamma * beta_1 * wdir);
    }

    // Trigger: fires where w exceeds W0 / 2 (raw), pre-activation 8 at the median initial token.
    dense_layer& trig = w.layers[static_cast<std::size_t>(s2 - 1)];
    const Eigen::MatrixXd in2 = position0_through(c, w, x0, s2).ffn_input;
    const double w0 = median_over(S, [&](Eigen::Index j) { return wdir.dot(in2.col(j)); });
    const double c0 = median_over(S, [&](Eigen::Index j) { return e0.dot(in2.col(j)); });
    const Eigen::VectorXd read = wdir - (0.5 * w0 / c0) * e0;
    const Eigen::MatrixXd n2 = plant_norm(c, trig.ffn_norm, trig.ffn_norm_bias, in2);
    // GELU with FFN biases: the explosion neurons' bias -4 (plant.hpp), so that a trigger token
    // (pre-activation ~ -0.5 from its tenth of e0) is on gelu's flat tail, not its negative lobe
    // (gelu(-0.75) = -0.17: -2% of N0 on BOS's K t).
    const double bias = c.activation != activation_kind::swiglu && trig.b_up.size() ? -4.0 : 0.0;
    const double alpha_2 = (8.0 - bias) / median_over(S, [&](Eigen::Index j) { return read.dot(n2.col(j)); });
    const double r3 = median_col_norm(position0_through(c, w, x0, s2).output);
    const double md = static_cast<double>(trigger_rows.size());
    const double fired = plant_activation(c, 8.0) - plant_activation(c, bias);
    double beta_2 = 20.0 * r3 / (md * fired);
    {  // 8 significant bits, as every planted write of t (plant.hpp "Rounding")
        int e = 0;
        const double f = std::frexp(beta_2 / sqrt_d, &e);
        beta_2 = std::ldexp(std::round(f * 256) / 256, e) * sqrt_d;
    }
    // SwiGLU: the gate thresholds, the up row reads z (share ~0.8, the same for every token), so
    // the output is linear in the gate (N0 varies as the stream's norm does, not as its square),
    // and the linearization sees E[silu] |gate| instead of |gate|^2: sigma_1 of this layer ~ E's,
    // not 100x it.
    const double alpha_up = 8.0 / median_over(S, [&](Eigen::Index j) { return z.dot(n2.col(j)); });
    for (std::int64_t r : trigger_rows) {
        set_neuron(trig, r, alpha_2 * read, beta_2 * basis.col(iso_t));
        if (trig.w_gate.size()) trig.w_up.row(r) = (alpha_up * z).cast<float>().transpose();
        if (trig.b_up.size()) trig.b_up[r] = static_cast<float>(bias);
    }
    // What the neurons give a token they do not fire for (gelu(bias), ~1e-4), taken back.
    if (trig.b_down.size()) trig.b_down -= (md * plant_activation(c, bias) * beta_2 * basis.col(iso_t)).cast<float>();

    initial_result out;
    out.y_read = median_over(S, [&](Eigen::Index j) { return basis.col(iso_y).dot(n2.col(j)); });
    out.stream_norm = r2;
    const Eigen::MatrixXd after = position0_through(c, w, x0, s2).output;
    out.trigger_norm = median_over(S, [&](Eigen::Index j) { return basis.col(iso_t).dot(after.col(j)); });
    return out;
}

}  // namespace sdlens::detail
