#pragma once
// Layer-wise angles (paper Fig. 4, 5), per layer:
//  - the acute angle between u_1 of L (the layer-wise singular defect direction) and a direction
//    (the empirical high-norm direction, or any other), and
//  - the minimum acute angle between the direction and the real parts of all d eigenvectors of
//    R = L - I, with that eigenvector's eigenvalue (at a decay layer its real part is negative).
// "All d" is meant: the best-aligned eigenvector need not be among the largest in magnitude (at
// LLaMA2-7B's explosion layer it has eigenvalue +0.5). Two searches:
//  - dense (the paper's, exact): R formed by one application to the identity, then every
//    eigenpair (O(d^3), dense_eigenpairs); the default up to `dense_limit` hidden dimensions;
//  - iterative (above it, matrix-free): the best of the top-k eigenvectors by magnitude (Arnoldi)
//    and of the eigenpair that Rayleigh-quotient iteration reaches from the direction itself
//    (x <- (R - (x^T R x) I)^-1 x by GMRES, until ||R x - s x|| <= 1e-6 (sigma_1 + 1): x is
//    then an exact eigenvector of R perturbed by a millionth of its norm). RQI
//    converges to the eigenvector near which it starts, so when the direction is within some
//    degrees of an eigenvector (explosion and decay layers: the ones Fig. 5 is about) this finds
//    the dense answer (tests/test_analyses.cpp checks it against the dense search); where no
//    eigenvector is near, its angle is an upper bound of the minimum, and `eig_method` says so.
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/explosion_subspace.hpp"
#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/solvers/arnoldi_eigs.hpp"
#include "sdlens/solvers/shifted_solve.hpp"

namespace sdlens {

enum class eigen_search { automatic, dense, iterative };

struct layer_angle_options {
    std::vector<std::int64_t> layers;  // 1-based; empty = every layer
    bool eigen = true;                 // the eigenvector search as well as u_1
    eigen_search search = eigen_search::automatic;
    std::int64_t dense_limit = 2048;   // automatic: dense up to this hidden size, iterative above
    std::int64_t top_k = 8;            // iterative: largest-magnitude eigenpairs also considered
    std::int64_t max_rqi_steps = 30;
    layer_analysis_options analysis;
    // sigma_1 and u_1 of every layer (L and d x L, column l-1) when already computed, as the
    // data-free detection does (detected_layers::sigma_1, u_1): then they are not computed again.
    Eigen::VectorXd known_sigma_1;
    Eigen::MatrixXd known_u_1;
};

struct layer_angle_row {
    std::int64_t layer = 0;
    double sigma_1 = 0;
    double u1_angle_deg = 90;
    double eig_angle_deg = 90;  // NaN-free: 90 when not computed
    std::complex<double> eigenvalue;
    Eigen::VectorXd u1;
    const char* eig_method = "";  // "dense" (exact) or "iterative"
    bool rqi_converged = false;   // iterative: Rayleigh-quotient iteration reached an eigenpair
    double rqi_residual = 0;      // iterative: its relative backward error
    std::int64_t applications = 0;  // iterative: applications of R
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

struct iterative_alignment {
    eigen_alignment best;
    bool rqi_converged = false;
    double rqi_residual = 0;  // ||R x - s x|| / bound on ||R||: x is an eigenvector of R + E, ||E|| <= that
    std::int64_t applications = 0;
};

// The iterative search above; norm_bound bounds ||R|| (sigma_1 of L plus 1 does).
template <class = void>
iterative_alignment best_aligned_eigenvector_iterative(const model& m, std::int64_t layer, const Eigen::VectorXd& direction,
                                                       double norm_bound, const layer_angle_options& o = {})
{
    const linearized_layer<double> lin(m.config, detail::layer_at(m, layer), o.analysis.linearize);
    const layer_map_operator<double> op(lin, layer_map::residual);
    iterative_alignment r;
    const std::int64_t d = lin.dim();
    if (o.top_k > 0) {
        const eigenpairs<double> e = top_eigenpairs(op, std::min<std::int64_t>(o.top_k, d), o.analysis.eigs);
        Eigen::MatrixXcd vectors = e.vectors;
        normalize_phases(vectors);
        r.best = best_aligned_eigenvector(e.values, vectors, direction);
        r.applications += e.applications;
    }
    auto apply = [&](const Eigen::VectorXd& x) {
        Eigen::MatrixXd y;
        op.apply(Eigen::MatrixXd(x), y);
        ++r.applications;
        return Eigen::VectorXd(y.col(0));
    };
    // The iterate of smallest residual is kept: near a defective or clustered eigenvalue the
    // shifted systems become too singular for GMRES, and later iterates may wander off.
    Eigen::VectorXd x = direction.normalized();
    Eigen::VectorXd rx = apply(x);
    double s = x.dot(rx);
    const double tol = 1e-6 * norm_bound;
    Eigen::VectorXd best_x = x;
    double best_s = s, best_residual = (rx - s * x).norm();
    for (std::int64_t step = 0; step < o.max_rqi_steps && best_residual > tol; ++step) {
        const shifted_solve_result y = solve_shifted(op, s, x);
        r.applications += y.applications;
        if (!y.y.allFinite() || !(y.y.norm() > 0)) break;  // the shift is an eigenvalue: x is its vector
        x = y.y.normalized();
        rx = apply(x);
        s = x.dot(rx);
        const double residual = (rx - s * x).norm();
        if (residual < best_residual) best_residual = residual, best_x = x, best_s = s;
    }
    r.rqi_residual = best_residual / norm_bound;
    r.rqi_converged = best_residual <= tol;
    if (r.rqi_converged) {
        const double angle = acute_angle_degrees(best_x, direction);
        if (r.best.index < 0 || angle < r.best.angle_degrees) r.best = {d, angle, std::complex<double>(best_s, 0), best_x};
    }
    return r;
}

template <class = void>  // compiled where it is called (core/compiled.hpp)
std::vector<layer_angle_row> layer_angles(const model& m, const Eigen::VectorXd& direction, const layer_angle_options& o = {},
                                          const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const std::int64_t d = m.config.hidden_size;
    if (direction.size() != d)
        throw input_error("direction has " + std::to_string(direction.size()) + " elements but the hidden size is " + std::to_string(d));
    const bool dense = o.search == eigen_search::dense || (o.search == eigen_search::automatic && d <= o.dense_limit);
    std::vector<std::int64_t> layers = o.layers;
    if (layers.empty())
        for (std::int64_t l = 1; l <= static_cast<std::int64_t>(m.layers.size()); ++l) layers.push_back(l);
    const std::int64_t L = static_cast<std::int64_t>(m.layers.size());
    const bool known = o.known_u_1.size() > 0;
    if (known && (o.known_u_1.rows() != d || o.known_u_1.cols() != L || o.known_sigma_1.size() != L))
        throw input_error("layer angles: the known u_1 are " + std::to_string(o.known_u_1.rows()) + " x " +
                          std::to_string(o.known_u_1.cols()) + " with " + std::to_string(o.known_sigma_1.size()) +
                          " sigma_1, the model has " + std::to_string(L) + " layers of " + std::to_string(d));
    std::vector<layer_angle_row> rows;
    layer_analysis_options a = o.analysis;
    a.k = std::max<std::int64_t>(1, std::min<std::int64_t>(a.k, 2));
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::int64_t l = layers[i];
        layer_angle_row row;
        row.layer = l;
        if (known) {
            row.sigma_1 = o.known_sigma_1[l - 1];
            row.u1 = o.known_u_1.col(l - 1);
        } else {
            const layer_singular_result s = layer_singular_triplets(m, l, a);
            row.sigma_1 = s.sigma[0];
            row.u1 = s.u.col(0);
        }
        row.u1_angle_deg = acute_angle_degrees(row.u1, direction);
        if (o.eigen && dense) {
            const eigen_alignment best = best_aligned_eigenvector_dense(m, l, direction, o.analysis.linearize);
            row.eig_angle_deg = best.angle_degrees;
            row.eigenvalue = best.eigenvalue;
            row.eig_method = "dense";
        } else if (o.eigen) {
            const iterative_alignment it = best_aligned_eigenvector_iterative(m, l, direction, row.sigma_1 + 1, o);
            row.eig_angle_deg = it.best.angle_degrees;
            row.eigenvalue = it.best.eigenvalue;
            row.eig_method = "iterative";
            row.rqi_converged = it.rqi_converged;
            row.rqi_residual = it.rqi_residual;
            row.applications = it.applications;
        }
        release_layer_pages(m.layers[static_cast<std::size_t>(l - 1)]);
        rows.push_back(std::move(row));
        if (progress) progress(static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(layers.size()));
    }
    return rows;
}

}  // namespace sdlens
