#pragma once
// The isolation step of plant.hpp: a set of orthonormal directions (columns of an isolated
// basis B, d x n) that nothing but the planted parts reads or writes. P = I - B B^T.
#include <cstdint>

#include <Eigen/Core>

#include "sdlens/model/matrix_view.hpp"
#include "sdlens/model/random_model.hpp"

namespace sdlens::detail {

// Rows reading n = g (.) x^ + b: make r (.) g orthogonal to every isolated direction, so the row
// is blind to the isolated content of x^ (g = empty means 1).
inline void blind_rows(row_matrix<float>& w, const Eigen::VectorXf& g, const Eigen::MatrixXd& basis)
{
    for (Eigen::Index i = 0; i < w.rows(); ++i) {
        Eigen::VectorXd r = w.row(i).transpose().cast<double>();
        if (g.size()) r = r.cwiseProduct(g.cast<double>());
        r -= basis * (basis.transpose() * r);
        if (g.size()) r = r.cwiseQuotient(g.cast<double>());
        w.row(i) = r.cast<float>().transpose();
    }
}

// Maps into the residual stream: P w (columns of a (d, k) matrix) and P b.
inline void project_columns(row_matrix<float>& w, const Eigen::MatrixXd& basis)
{
    if (!w.size()) return;
    const Eigen::MatrixXd m = w.cast<double>();
    w = (m - basis * (basis.transpose() * m)).cast<float>();
}
inline void project_vector(Eigen::VectorXf& b, const Eigen::MatrixXd& basis)
{
    if (!b.size()) return;
    Eigen::VectorXd v = b.cast<double>();
    v -= basis * (basis.transpose() * v);
    b = v.cast<float>();
}
// Rows that are vectors of the stream (embeddings): x P.
inline void project_rows(row_matrix<float>& w, const Eigen::MatrixXd& basis)
{
    if (!w.size()) return;
    const Eigen::MatrixXd m = w.cast<double>();
    w = (m - (m * basis) * basis.transpose()).cast<float>();
}

// n more seeded directions orthonormal to the columns of basis and to the all-ones vector (so
// that LayerNorm's centring leaves them alone), appended to basis.
inline Eigen::MatrixXd extend_basis(const Eigen::MatrixXd& basis, std::int64_t n, std::uint64_t seed)
{
    const Eigen::Index d = basis.rows();
    Eigen::MatrixXd out(d, basis.cols() + n);
    out.leftCols(basis.cols()) = basis;
    const Eigen::VectorXd ones = Eigen::VectorXd::Ones(d) / std::sqrt(static_cast<double>(d));
    portable_normal normal(seed);
    for (Eigen::Index j = basis.cols(); j < out.cols(); ++j) {
        Eigen::VectorXd v(d);
        for (Eigen::Index i = 0; i < d; ++i) v[i] = normal();
        for (int pass = 0; pass < 2; ++pass) {  // twice: Gram-Schmidt to working precision
            v -= ones.dot(v) * ones;
            v -= out.leftCols(j) * (out.leftCols(j).transpose() * v);
        }
        out.col(j) = v.normalized();
    }
    return out;
}

}  // namespace sdlens::detail
