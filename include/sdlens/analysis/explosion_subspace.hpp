#pragma once
// The explosion subspace (paper Sec. 3.4, Fig. 8): the right singular vectors v_i of the FFN's
// linearization F at the explosion layer, each fed as +v_i and -v_i (unit inputs) through that
// layer's real FFN block, norm and nonlinearity included. Only v_1 explodes: its output norm
// stands far above every other's (LLaMA2-7B layer 2: ~5000 against < ~100).
//
// k singular triplets come from Lanczos on the matrix-free F; every one of them (all = true)
// from the symmetric eigendecomposition of F^T F with F formed densely (one application of F to
// the identity, then O(d^3)): sigma_i = sqrt(lambda_i). Squaring costs the small singular values
// their relative accuracy (to ~1e-16 sigma_1^2 / sigma_i^2), not the vectors' orthonormality, and
// the leading vectors, the ones that explode, keep full accuracy when their gaps are not tiny.
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

struct explosion_subspace_options {
    std::int64_t k = 64;
    bool all = false;  // every right singular vector, by a dense SVD
    layer_analysis_options analysis;
};

struct explosion_subspace_result {
    int layer = 0;
    Eigen::VectorXd sigma;                   // of F, descending
    Eigen::MatrixXd v;                       // d x k right singular vectors
    Eigen::VectorXd plus_norms, minus_norms;  // ||FFN block(+v_i)||, ||FFN block(-v_i)||
    double ratio = 0;  // v_1's larger output norm over the largest of every other v_i
    const char* method = "lanczos";
};

// F at a layer as a dense d x d matrix (F applied to the identity).
template <class = void>
Eigen::MatrixXd dense_layer_map(const model& m, std::int64_t layer, layer_map which, const linearize_options& o = {})
{
    const linearized_layer<double> lin(m.config, detail::layer_at(m, layer), o);
    return lin.apply(which, Eigen::MatrixXd::Identity(lin.dim(), lin.dim()));
}

// Output norms of a layer's real FFN block for each column of `inputs`, and of its negative.
template <class = void>
void ffn_block_output_norms(const model& m, int layer, const Eigen::MatrixXd& inputs, Eigen::VectorXd& plus, Eigen::VectorXd& minus)
{
    forward_options fo;
    fo.logits = forward_options::logits_mode::none;
    session s(m, fo);
    const row_matrix<float> x = inputs.transpose().cast<float>();
    plus = s.ffn_block(layer, x).cast<double>().rowwise().norm();
    minus = s.ffn_block(layer, row_matrix<float>(-x)).cast<double>().rowwise().norm();
}

template <class = void>  // compiled where it is called (core/compiled.hpp)
explosion_subspace_result explosion_subspace(const model& m, int layer, const explosion_subspace_options& o = {})
{
    explosion_subspace_result r;
    r.layer = layer;
    if (o.all) {
        const Eigen::MatrixXd F = dense_layer_map(m, layer, layer_map::ffn, o.analysis.linearize);
        const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(F.transpose() * F);
        if (eig.info() != Eigen::Success) throw input_error("explosion subspace: the dense eigensolver did not converge");
        const Eigen::Index d = F.cols();
        r.sigma.resize(d);
        r.v.resize(d, d);
        for (Eigen::Index i = 0; i < d; ++i) {  // ascending eigenvalues -> descending singular values
            r.sigma[i] = std::sqrt(std::max(0.0, eig.eigenvalues()[d - 1 - i]));
            r.v.col(i) = eig.eigenvectors().col(d - 1 - i);
        }
        r.method = "dense";
    } else {
        layer_analysis_options a = o.analysis;
        a.k = std::max<std::int64_t>(1, o.k);
        const layer_singular_result s = ffn_right_singular_vectors(m, layer, a);
        r.sigma = s.sigma;
        r.v = s.v;
    }
    ffn_block_output_norms(m, layer, r.v, r.plus_norms, r.minus_norms);
    const double first = std::max(r.plus_norms[0], r.minus_norms[0]);
    double others = 0;
    for (Eigen::Index i = 1; i < r.plus_norms.size(); ++i) others = std::max({others, r.plus_norms[i], r.minus_norms[i]});
    r.ratio = others > 0 ? first / others : std::numeric_limits<double>::infinity();
    return r;
}

}  // namespace sdlens
