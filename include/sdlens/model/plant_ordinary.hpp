#pragma once
// Planted ordinary-token neurons at the explosion and decay layers: what those layers' FFNs do
// for every token that does not explode, and what per-tensor W8A8 rounds away (paper Sec. 5.1).
// Part of plant.hpp; the notation is that file's and plant_initial.hpp's.
//
// Why they are needed. In a real model the FFN of layer E does work for every token, with
// activations of order 1 next to the high-norm token's thousands: a per-tensor int8 step set by
// the latter rounds the former to zero, and the model breaks. The random FFNs of a planted RoPE
// model do not show it: an ordinary token's x^ is mostly the initial-token path's isolated z, w
// and D (plant_initial.hpp), which every random row is blind to, so its random rows see
// pre-activations ~0.1 and (SwiGLU being quadratic there) give ~0.3% of the stream, whose loss
// changes nothing measurable. (A gain on the random rows instead raised the linearization's
// random block as much, which sees a whole Gaussian x^, and broke the data-free detection.)
//
// Construction. At E and at D, p pairs of neurons (p = 16 where the FFN has room) read y, which
// layer 1's self head writes at the size of an embedding's bias unit c0 for every ordinary token
// attention ran on (plant_initial.hpp): gate = up = +-a y (GELU: up = +-a y, bias 0), down =
// beta r, r a seeded unit direction of the random complement (P r = r), one for E and one for D.
// The pair gives phi(a s) + phi(-a s), s = y . x^: exactly (a s)^2 for SwiGLU, a s erf(a s /
// sqrt 2) for GELU. So every ordinary token gets a large part of its FFN output along r, while an
// exploded token or a trigger (s ~ 0: y is at most c0 / 10 in a stream of norm K or more) and a
// token without attention (y = 0: the paper's Fig. 6 stays as it was) get nothing.
//  - a: the rows' largest entry is half the exploding rows' (alpha / sqrt(d)): they do not set
//    gate/up's per-tensor weight step, int8 gate/up (which the skip list does not keep) gives
//    them 64 codes, and y's share is twice what rows as large as those would need, so the int8
//    rounding of x^ moves s half as much (measured on planted NeoX: the kept variant's KL 0.011
//    against 0.030 with a twice as large).
//  - y's size: the larger neuron's activation is a quarter of the int8 step that the exploding
//    neurons' activation sets, at the position-0 share (D and w lengthen the stream, and shrink
//    the share, at later positions): below half a step, so per-tensor RTN of the down
//    projection's input rounds it to exactly 0, and the down projection kept keeps it. y is a
//    few % of the stream (z, not y, would need rows 20x smaller than the exploding ones).
//  - beta: the p pairs give twice the stream's norm at the trigger layer (r2) at the position-0
//    share: the loss of E's and D's work then moves every later state and the logits. At most 4x
//    the exploding column's entries, so that the per-tensor weight step of a quantized down
//    projection leaves that column 30 or more codes: SwiGLU needs less than theirs; GELU, whose
//    exploding activations are ~8 sqrt(d) (its gain is in beta) and whose pair is quadratic at
//    these small x, needs ~4x, and gets ~2 r2 at d 64 and less below.
//  - The linearization does not see them: the pair's two rows have opposite signs and the same
//    Gaussian expectation, equal down columns, so their Stein-lemma terms cancel exactly (as the
//    detector's even pairs do), and sigma_1, u_1 and the decay eigenvalue are unchanged.
// Models with learned positions (GPT-2) have no initial-token path; there the random FFNs carry a
// real share of the stream already (ordinary x^ is mostly random), so nothing is planted.
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "sdlens/model/config.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/plant_initial.hpp"
#include "sdlens/model/plant_isolation.hpp"

namespace sdlens::detail {

// The larger activation of a pair at pre-activation +-x (x >= 0): x^2 sigmoid(x) for SwiGLU,
// gelu(x) for GELU; and what the pair gives together.
inline double ordinary_larger_activation(const model_config& c, double x) { return plant_activation(c, x); }
inline double ordinary_pair_output(const model_config& c, double x) { return plant_activation(c, x) + plant_activation(c, -x); }

// Plants p pairs at layers E and D (1-based) on FFN rows `rows` (2p of them, free at both).
// step: the int8 step that the exploding neurons' activation sets (activation / 127);
// alpha, beta: the exploding neurons' row norm and down-column norm (|t| = |u| = 1);
// y_read, stream_norm: initial_result's; seed: for the two output directions.
inline void plant_ordinary_neurons(const model_config& c, dense_weights& w, const Eigen::MatrixXd& basis,
                                   std::int64_t E, std::int64_t D, const std::vector<std::int64_t>& rows, double step,
                                   double alpha, double beta, double y_read, double stream_norm, std::uint64_t seed)
{
    const std::int64_t p = static_cast<std::int64_t>(rows.size()) / 2;
    if (p == 0 || y_read <= 0) return;
    // Pre-activation x with larger activation step / 4, by bisection (it increases for x >= 0).
    const double target = step / 4;
    double lo = 0, hi = 1;
    while (ordinary_larger_activation(c, hi) < target) hi *= 2;
    for (int it = 0; it < 100; ++it) {
        const double mid = 0.5 * (lo + hi);
        (ordinary_larger_activation(c, mid) < target ? lo : hi) = mid;
    }
    // Rows of half the exploding rows' largest entry (alpha / sqrt(d)); y's size in the stream
    // (layer 1's W_O writes it) scaled so that they reach x at the position-0 share. y . x^ is linear in that
    // size up to the stream's norm, which y hardly changes (a few % of it).
    const double sqrt_d = std::sqrt(static_cast<double>(c.hidden_size));
    const Eigen::VectorXd y = basis.col(iso_y);
    const double x = lo, a = 0.5 * alpha / sqrt_d / y.cwiseAbs().maxCoeff();
    row_matrix<float>& wo = w.layers[0].wo;
    const Eigen::RowVectorXd written = y.transpose() * wo.cast<double>();
    wo += ((x / (a * y_read) - 1) * y * written).cast<float>();
    const Eigen::MatrixXd out = extend_basis(basis, 2, seed).rightCols(2);  // unit, centred, P r = r
    for (int which = 0; which < 2; ++which) {
        dense_layer& layer = w.layers[static_cast<std::size_t>((which == 0 ? E : D) - 1)];
        const Eigen::VectorXd r = out.col(which);
        const double b = std::min(2 * stream_norm / (static_cast<double>(p) * ordinary_pair_output(c, x)),
                                  4 * beta / sqrt_d / r.cwiseAbs().maxCoeff());
        const Eigen::VectorXf down = (b * r).cast<float>();
        for (std::int64_t i = 0; i < p; ++i)
            for (int sign : {1, -1}) {
                const std::int64_t row = rows[static_cast<std::size_t>(2 * i + (sign > 0 ? 0 : 1))];
                const Eigen::RowVectorXf in = (sign * a * y).cast<float>().transpose();
                layer.w_up.row(row) = in;
                if (layer.w_gate.size()) layer.w_gate.row(row) = in;
                if (layer.b_up.size()) layer.b_up[row] = 0;
                layer.w_down.col(row) = down;
            }
    }
}

}  // namespace sdlens::detail
