#pragma once
// Comparing a forward pass with the float64 reference (reference_forward.hpp): one layer index
// of forward_result::hidden as a double matrix, the relative Frobenius error, and a whole pass
// checked layer by layer.
#include <cstddef>
#include <vector>

#include <doctest/doctest.h>

#include <Eigen/Core>

#include <sdlens/forward/forward.hpp>
#include <sdlens/model/dense_weights.hpp>

#include "reference_forward.hpp"

namespace sdlens::test {

// Hidden states at layer index l (0 = embeddings), T x d.
inline Eigen::MatrixXd hidden_at(const forward_result& r, std::size_t l)
{
    const std::size_t T = r.hidden.shape()[1], d = r.hidden.shape()[2];
    Eigen::MatrixXd h(T, d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t i = 0; i < d; ++i) h(t, i) = r.hidden(l, t, i);
    return h;
}

inline double relative_error(const Eigen::MatrixXd& got, const Eigen::MatrixXd& want) { return (got - want).norm() / want.norm(); }

// Every hidden state of one pass over m, and its logits when m has a head, against the float64
// reference on m's own config and weights (materialize(m)), to `tolerance` relative.
inline void check_against_reference(const model& m, const std::vector<int>& tokens, bool attention, double tolerance)
{
    forward_options o;
    o.hidden_states = true;
    o.logits = m.lm_head ? forward_options::logits_mode::all : forward_options::logits_mode::none;
    o.zero_attention = !attention;
    const forward_result r = forward(m, tokens, o);
    reference_options ro;
    ro.attention = attention;
    const auto ref = reference_forward(m.config, materialize(m), tokens, ro);
    for (std::size_t l = 0; l <= static_cast<std::size_t>(m.config.num_layers); ++l) {
        CAPTURE(l);
        CHECK(relative_error(hidden_at(r, l), ref.hidden[l]) <= tolerance);
    }
    if (m.lm_head) CHECK(relative_error(r.logits.cast<double>(), ref.logits) <= tolerance);
}

}  // namespace sdlens::test
