#pragma once
// Comparing a forward pass with the float64 reference (reference_forward.hpp): one layer index
// of forward_result::hidden as a double matrix, and the relative Frobenius error.
#include <cstddef>

#include <Eigen/Core>

#include <sdlens/forward/options.hpp>

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

}  // namespace sdlens::test
