#pragma once
// Per-layer results of the linearization (paper Sec. 3.1, 3.2, 3.4), one layer's weights at a
// time (the operators read them in place, so memory stays near one layer's decode buffers):
//  - the leading singular values and vectors of L (u_1 = the layer-wise singular defect direction),
//  - the largest-magnitude eigenvalues of R = L - I and the eigenvector best aligned to a given
//    direction (acute angle on real parts; at a decay layer its eigenvalue's real part is < 0),
//  - the top right singular vectors of F (the explosion subspace).
// Layers are 1-based everywhere in this header, as in the paper and the CLI.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/linearize/layer_operator.hpp"
#include "sdlens/model/model.hpp"
#include "sdlens/solvers/arnoldi_eigs.hpp"
#include "sdlens/solvers/lanczos_svd.hpp"

namespace sdlens {

// Directions have no sign: 90 - |theta - 90| in degrees.
inline double acute_angle_degrees(const Eigen::VectorXd& a, const Eigen::VectorXd& b)
{
    const double na = a.norm(), nb = b.norm();
    if (!(na > 0) || !(nb > 0)) return 90;
    const double c = std::min(1.0, std::abs(a.dot(b)) / (na * nb));
    return std::acos(c) * 180 / 3.14159265358979323846;
}

// The precision the operators carry vectors in (weights are read as stored either way). Single
// precision halves the arithmetic per weight; its solver tolerance (1e-5 relative residual) gives
// directions to ~1e-5 / gap radians, ample for bf16 weights; double is the default.
enum class operator_precision { single, double_ };

struct layer_analysis_options {
    std::int64_t k = 5;  // singular values of L; eigenvalues of R (when eig_k is 0)
    operator_precision precision = operator_precision::double_;
    std::int64_t eig_k = 0;
    linearize_options linearize;
    lanczos_options lanczos;
    eigs_options eigs;
};

struct layer_singular_result {
    std::int64_t layer = 0;     // 1-based
    Eigen::VectorXd sigma;      // descending
    Eigen::MatrixXd u, v;       // d x k
    Eigen::VectorXd residuals;  // per triplet, sqrt(||L v - s u||^2 + ||L^T u - s v||^2)
    std::int64_t restarts = 0, applications = 0;
};

struct eigen_alignment {
    std::int64_t index = -1;  // into the eigenvalues, largest magnitude first
    double angle_degrees = 90;
    std::complex<double> eigenvalue;
    Eigen::VectorXd real_vector;  // the real part of that eigenvector (after normalize_phases)
};

struct layer_eigen_result {
    std::int64_t layer = 0;
    Eigen::VectorXcd eigenvalues;  // of R, largest magnitude first
    Eigen::MatrixXcd eigenvectors;
    eigen_alignment best;
    std::int64_t iterations = 0, applications = 0;
};

namespace detail {
inline const layer_weights& layer_at(const model& m, std::int64_t layer)
{
    if (layer < 1 || layer > static_cast<std::int64_t>(m.layers.size()))
        throw input_error("layer " + std::to_string(layer) + " is outside 1.." + std::to_string(m.layers.size()));
    return m.layers[static_cast<std::size_t>(layer - 1)];
}
template <class Scalar>
layer_singular_result singular_triplets_in(const model& m, std::int64_t layer, const layer_analysis_options& o, layer_map which)
{
    const linearized_layer<Scalar> lin(m.config, layer_at(m, layer), o.linearize);
    const layer_map_operator<Scalar> op(lin, which);
    const auto t = top_singular_triplets(op, std::min<std::int64_t>(o.k, lin.dim()), o.lanczos);
    return {layer, t.sigma.template cast<double>(), t.u.template cast<double>(), t.v.template cast<double>(),
            t.residuals.template cast<double>(), t.restarts, t.applications};
}
}  // namespace detail

// Top-k singular triplets of a layer's map (L by default, F for the explosion subspace).
template <class = void>  // compiled where it is called (core/compiled.hpp)
layer_singular_result layer_singular_triplets(const model& m, std::int64_t layer,
                                                     const layer_analysis_options& o = {},
                                                     layer_map which = layer_map::layer)
{
    if (o.precision == operator_precision::single)
        return detail::singular_triplets_in<float>(m, layer, o, which);
    return detail::singular_triplets_in<double>(m, layer, o, which);
}

// The right singular vectors of F at a layer: the explosion subspace (v_1 first).
template <class = void>
layer_singular_result ffn_right_singular_vectors(const model& m, std::int64_t layer, const layer_analysis_options& o = {})
{
    return layer_singular_triplets(m, layer, o, layer_map::ffn);
}

// Eigenvectors have a complex phase; like LAPACK, rotate each so its largest component is real
// and positive, which makes "the real part" well defined (real eigenvalues give real vectors).
inline void normalize_phases(Eigen::MatrixXcd& vectors)
{
    for (Eigen::Index j = 0; j < vectors.cols(); ++j) {
        Eigen::Index imax = 0;
        vectors.col(j).cwiseAbs().maxCoeff(&imax);
        const std::complex<double> p = vectors(imax, j);
        if (std::abs(p) > 0) vectors.col(j) *= std::conj(p) / std::abs(p);
    }
}

// The eigenvector whose real part is at the smallest acute angle to the direction.
inline eigen_alignment best_aligned_eigenvector(const Eigen::VectorXcd& values, const Eigen::MatrixXcd& vectors,
                                                const Eigen::VectorXd& direction)
{
    eigen_alignment best;
    for (Eigen::Index j = 0; j < vectors.cols(); ++j) {
        const double angle = acute_angle_degrees(vectors.col(j).real(), direction);
        if (best.index < 0 || angle < best.angle_degrees) best = {j, angle, values[j], vectors.col(j).real()};
    }
    return best;
}

// The largest-magnitude eigenpairs of R at a layer, and the one best aligned to the direction.
template <class = void>
layer_eigen_result layer_eigen_analysis(const model& m, std::int64_t layer, const Eigen::VectorXd& direction,
                                               const layer_analysis_options& o = {})
{
    const linearized_layer<double> lin(m.config, detail::layer_at(m, layer), o.linearize);
    if (direction.size() != lin.dim())
        throw input_error("direction has " + std::to_string(direction.size()) + " elements but the hidden size is " +
                          std::to_string(lin.dim()));
    const layer_map_operator<double> op(lin, layer_map::residual);
    auto e = top_eigenpairs(op, std::min<std::int64_t>(o.eig_k > 0 ? o.eig_k : o.k, lin.dim()), o.eigs);
    layer_eigen_result r;
    r.layer = layer;
    r.eigenvalues = e.values;
    r.eigenvectors = e.vectors;
    normalize_phases(r.eigenvectors);
    r.best = best_aligned_eigenvector(r.eigenvalues, r.eigenvectors, direction);
    r.iterations = e.iterations;
    r.applications = e.applications;
    return r;
}

// "1-5,8" -> {1, 2, 3, 4, 5, 8}, checked against 1..num_layers; empty spec = every layer.
inline std::vector<std::int64_t> parse_layer_ranges(const std::string& spec, std::int64_t num_layers)
{
    std::vector<std::int64_t> out;
    if (spec.empty()) {
        for (std::int64_t l = 1; l <= num_layers; ++l) out.push_back(l);
        return out;
    }
    auto number = [&](const std::string& s) -> std::int64_t {
        if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
            fail_input("--layers", "'" + spec + "' is not a list of layers like 1-5,8");
        const std::int64_t v = std::stoll(s);
        if (v < 1 || v > num_layers)
            fail_input("--layers", "layer " + s + " is outside 1.." + std::to_string(num_layers));
        return v;
    };
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto dash = item.find('-');
        std::int64_t lo, hi;
        if (dash == std::string::npos) lo = hi = number(item);
        else {
            lo = number(item.substr(0, dash));
            hi = number(item.substr(dash + 1));
        }
        if (lo > hi) fail_input("--layers", "range " + item + " runs backwards");
        for (std::int64_t l = lo; l <= hi; ++l)
            if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
    }
    if (out.empty() || spec.back() == ',') fail_input("--layers", "'" + spec + "' is not a list of layers like 1-5,8");
    return out;
}

// A direction from JSON: {"direction": [...]} (a ground_truth.json has that key too) or a bare array.
inline Eigen::VectorXd read_direction_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) fail_input(path, "cannot open the direction file");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail_input(path, std::string("not valid JSON (") + e.what() + ")");
    }
    const nlohmann::json* arr = &j;
    if (j.is_object()) {
        auto it = j.find("direction");
        if (it == j.end()) fail_input(path, "no \"direction\" key");
        arr = &*it;
    }
    if (!arr->is_array() || arr->empty()) fail_input(path, "the direction is not a non-empty array of numbers");
    Eigen::VectorXd v(static_cast<Eigen::Index>(arr->size()));
    for (std::size_t i = 0; i < arr->size(); ++i) {
        if (!(*arr)[i].is_number()) fail_input(path, "direction element " + std::to_string(i) + " is not a number");
        v[static_cast<Eigen::Index>(i)] = (*arr)[i].get<double>();
        if (!std::isfinite(v[static_cast<Eigen::Index>(i)]))
            fail_input(path, "direction element " + std::to_string(i) + " is not finite");
    }
    if (!(v.norm() > 0)) fail_input(path, "the direction is the zero vector");
    return v;
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp): the analyses and the solvers over
// the layer operators they run, one precision or one solver per file.
#define SDLENS_LAYER_SVD_INSTANTIATIONS(X, Scalar)                                                               \
    X(class lanczos_svd<layer_map_operator<Scalar>>)                                                            \
    X(singular_triplets<Scalar> top_singular_triplets(const layer_map_operator<Scalar>&, std::int64_t,            \
                                                      const lanczos_options&))                                   \
    X(layer_singular_result detail::singular_triplets_in<Scalar>(const model&, std::int64_t,                      \
                                                                 const layer_analysis_options&, layer_map))
#define SDLENS_LAYER_DIRECTIONS_INSTANTIATIONS(X)                                                                 \
    X(layer_singular_result layer_singular_triplets(const model&, std::int64_t, const layer_analysis_options&, layer_map)) \
    X(layer_singular_result ffn_right_singular_vectors(const model&, std::int64_t, const layer_analysis_options&))
#define SDLENS_LAYER_EIGEN_INSTANTIATIONS(X)                                                                      \
    X(eigenpairs<double> top_eigenpairs(const layer_map_operator<double>&, std::int64_t, const eigs_options&))     \
    X(layer_eigen_result layer_eigen_analysis(const model&, std::int64_t, const Eigen::VectorXd&,                  \
                                              const layer_analysis_options&))
SDLENS_LAYER_SVD_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE, float)
SDLENS_LAYER_SVD_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE, double)
SDLENS_LAYER_DIRECTIONS_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)
SDLENS_LAYER_EIGEN_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
