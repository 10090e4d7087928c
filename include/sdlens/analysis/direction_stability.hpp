#pragma once
// Direction stability across checkpoints (paper Sec. 4, Fig. 12, 14): the layer-wise singular
// defect directions (u_1 of L per layer) of checkpoints of one architecture, and the acute angles
// between corresponding layers of two of them. The smallest of those angles is the paper's
// distance between two models' signatures (same family: 0.5-7 degrees; unrelated: ~88-90).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/core/error.hpp"

namespace sdlens {

// u_1 of every layer, as columns (d x L); one layer's weights resident at a time.
template <class = void>  // compiled where it is called (core/compiled.hpp)
Eigen::MatrixXd layer_wise_directions(const model& m, const layer_analysis_options& o = {},
                                      const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const std::int64_t L = static_cast<std::int64_t>(m.layers.size());
    Eigen::MatrixXd u(m.config.hidden_size, L);
    layer_analysis_options a = o;
    a.k = 2;
    for (std::int64_t l = 1; l <= L; ++l) {
        u.col(l - 1) = layer_singular_triplets(m, l, a).u.col(0);
        release_layer_pages(m.layers[static_cast<std::size_t>(l - 1)]);
        if (progress) progress(l, L);
    }
    return u;
}

// Acute angles between corresponding columns (directions) of a and b, in degrees.
inline Eigen::VectorXd corresponding_angles(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b)
{
    if (a.rows() != b.rows() || a.cols() != b.cols())
        throw input_error("direction stability: checkpoints of different shapes (" + std::to_string(a.rows()) + " x " +
                          std::to_string(a.cols()) + " and " + std::to_string(b.rows()) + " x " + std::to_string(b.cols()) +
                          " directions) cannot be compared");
    Eigen::VectorXd out(a.cols());
    for (Eigen::Index j = 0; j < a.cols(); ++j) out[j] = acute_angle_degrees(a.col(j), b.col(j));
    return out;
}

}  // namespace sdlens
