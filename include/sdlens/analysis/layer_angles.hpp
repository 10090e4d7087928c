#pragma once
// Layer-wise angles (paper Fig. 4, 5), per layer:
//  - the acute angle between u_1 of L (the layer-wise singular defect direction) and a direction
//    (the empirical high-norm direction, or any other), and
//  - the minimum acute angle between the direction and the real parts of all d eigenvectors of
//    R = L - I, with that eigenvector's eigenvalue (at a decay layer its real part is negative).
// "All d" is meant: the best-aligned eigenvector need not be among the largest in magnitude (at
// LLaMA2-7B's explosion layer it has eigenvalue +0.5), so the search is the paper's dense one:
// R formed by one application to the identity, then every eigenpair (O(d^3), dense_eigenpairs).
// Above `dense_limit` hidden dimensions that is refused rather than replaced by a partial search.
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/explosion_subspace.hpp"
#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/solvers/arnoldi_eigs.hpp"

namespace sdlens {

struct layer_angle_options {
    std::vector<std::int64_t> layers;  // 1-based; empty = every layer
    bool eigen = true;                 // the eigenvector search as well as u_1
    std::int64_t dense_limit = 2048;   // largest hidden size for the dense eigenvector search
    layer_analysis_options analysis;
};

struct layer_angle_row {
    std::int64_t layer = 0;
    double sigma_1 = 0;
    double u1_angle_deg = 90;
    double eig_angle_deg = 90;  // NaN-free: 90 when not computed
    std::complex<double> eigenvalue;
    Eigen::VectorXd u1;
};

// The eigenvector of R at a layer best aligned to the direction, over all d eigenvectors.
template <class = void>
eigen_alignment best_aligned_eigenvector_dense(const model& m, std::int64_t layer, const Eigen::VectorXd& direction,
                                               const linearize_options& o = {})
{
    const Eigen::MatrixXd R = dense_layer_map(m, layer, layer_map::residual, o);
    const eigenpairs<double> e = dense_eigenpairs<double>(R, R.rows());
    Eigen::MatrixXcd vectors = e.vectors;
    normalize_phases(vectors);
    return best_aligned_eigenvector(e.values, vectors, direction);
}

template <class = void>  // compiled where it is called (core/compiled.hpp)
std::vector<layer_angle_row> layer_angles(const model& m, const Eigen::VectorXd& direction, const layer_angle_options& o = {},
                                          const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const std::int64_t d = m.config.hidden_size;
    if (direction.size() != d)
        throw input_error("direction has " + std::to_string(direction.size()) + " elements but the hidden size is " + std::to_string(d));
    if (o.eigen && d > o.dense_limit)
        throw input_error("eigenvector angles: the search over all eigenvectors is dense, and hidden size " + std::to_string(d) +
                          " exceeds the dense limit " + std::to_string(o.dense_limit) + " (raise it, or leave the eigenvectors out)");
    std::vector<std::int64_t> layers = o.layers;
    if (layers.empty())
        for (std::int64_t l = 1; l <= static_cast<std::int64_t>(m.layers.size()); ++l) layers.push_back(l);
    std::vector<layer_angle_row> rows;
    layer_analysis_options a = o.analysis;
    a.k = std::max<std::int64_t>(1, std::min<std::int64_t>(a.k, 2));
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::int64_t l = layers[i];
        layer_angle_row row;
        row.layer = l;
        const layer_singular_result s = layer_singular_triplets(m, l, a);
        row.sigma_1 = s.sigma[0];
        row.u1 = s.u.col(0);
        row.u1_angle_deg = acute_angle_degrees(row.u1, direction);
        if (o.eigen) {
            const eigen_alignment best = best_aligned_eigenvector_dense(m, l, direction, o.analysis.linearize);
            row.eig_angle_deg = best.angle_degrees;
            row.eigenvalue = best.eigenvalue;
        }
        rows.push_back(std::move(row));
        if (progress) progress(static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(layers.size()));
    }
    return rows;
}

}  // namespace sdlens
