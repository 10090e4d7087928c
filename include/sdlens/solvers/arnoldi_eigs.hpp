#pragma once
// Eigenpairs of a real non-symmetric operator (a layer's R = L - I) known only through R x:
// Spectra's implicitly restarted Arnoldi (GenEigsSolver) over the operator, largest magnitude by
// default; and the dense fallback, Eigen::EigenSolver on a materialized matrix. Square operators
// with the concept of lanczos_svd.hpp (scalar_type, rows(), cols(), apply(x, y)).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Spectra/GenEigsSolver.h>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/solvers/dense_operator.hpp"

namespace sdlens {

// Adapts an operator to Spectra's matrix-operation concept (perform_op on raw pointers).
template <class Op>
class spectra_operator {
public:
    using Scalar = typename Op::scalar_type;

    explicit spectra_operator(const Op& op) : op_(&op), x_(op.cols(), 1) {}
    Eigen::Index rows() const { return op_->rows(); }
    Eigen::Index cols() const { return op_->cols(); }
    void perform_op(const Scalar* x_in, Scalar* y_out) const
    {
        x_ = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(x_in, cols());
        op_->apply(x_, y_);
        Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(y_out, rows()) = y_.col(0);
        ++applications_;
    }
    std::int64_t applications() const { return applications_; }

private:
    const Op* op_;
    mutable Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> x_, y_;
    mutable std::int64_t applications_ = 0;
};

template <class Scalar>
struct eigenpairs {
    Eigen::Matrix<std::complex<Scalar>, Eigen::Dynamic, 1> values;                   // largest magnitude first
    Eigen::Matrix<std::complex<Scalar>, Eigen::Dynamic, Eigen::Dynamic> vectors;     // columns, unit norm
    std::int64_t iterations = 0, applications = 0;
    bool dense = false;  // computed by the dense fallback
};

struct eigs_options {
    std::int64_t ncv = 0;  // 0: max(2k + 1, 20), at most n
    std::int64_t max_restarts = 1000;
    double tol = 1e-10;
};

// The dense fallback: all eigenpairs, sorted by decreasing magnitude, the first k kept.
template <class Scalar>
eigenpairs<Scalar> dense_eigenpairs(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& a, std::int64_t k)
{
    Eigen::EigenSolver<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> es(a, true);
    if (es.info() != Eigen::Success) throw computation_error("dense eigen-decomposition did not converge");
    const auto& values = es.eigenvalues();
    std::vector<Eigen::Index> order(static_cast<std::size_t>(values.size()));
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Eigen::Index>(i);
    // Ties (conjugate pairs) broken by index, so the order is deterministic.
    std::stable_sort(order.begin(), order.end(), [&](Eigen::Index x, Eigen::Index y) { return std::abs(values[x]) > std::abs(values[y]); });
    k = std::min<std::int64_t>(k, values.size());
    eigenpairs<Scalar> out;
    out.values.resize(k);
    out.vectors.resize(a.rows(), k);
    const auto vectors = es.eigenvectors();
    for (std::int64_t i = 0; i < k; ++i) {
        out.values[i] = values[order[static_cast<std::size_t>(i)]];
        out.vectors.col(i) = vectors.col(order[static_cast<std::size_t>(i)]).normalized();
    }
    out.dense = true;
    return out;
}

// Top-k eigenpairs by magnitude with Spectra; operators too small for Arnoldi (n < k + 3) are
// materialized and handed to the dense fallback. Throws computation_error when not converged.
template <class Op>
eigenpairs<typename Op::scalar_type> top_eigenpairs(const Op& op, std::int64_t k, const eigs_options& o = {})
{
    using Scalar = typename Op::scalar_type;
    using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
    const std::int64_t n = op.rows();
    if (op.cols() != n) throw input_error("eigenpairs need a square operator");
    if (k < 1 || k > n) throw input_error("eigenpairs: k = " + std::to_string(k) + " must be in [1, " + std::to_string(n) + "]");
    if (n < k + 3) {
        matrix dense;
        op.apply(matrix::Identity(n, n), dense);
        auto out = dense_eigenpairs<Scalar>(dense, k);
        out.applications = 1;
        return out;
    }
    const std::int64_t ncv = std::min<std::int64_t>(n, std::max<std::int64_t>(o.ncv > 0 ? o.ncv : std::max<std::int64_t>(2 * k + 1, 20), k + 2));
    spectra_operator<Op> sop(op);
    Spectra::GenEigsSolver<spectra_operator<Op>> solver(sop, k, ncv);
    solver.init();  // Spectra's fixed-seed start vector: deterministic
    solver.compute(Spectra::SortRule::LargestMagn, o.max_restarts, Scalar(o.tol), Spectra::SortRule::LargestMagn);
    if (solver.info() != Spectra::CompInfo::Successful)
        throw computation_error("Arnoldi (Spectra GenEigsSolver) did not converge to " + std::to_string(k) +
                                " eigenpairs in " + std::to_string(o.max_restarts) + " restarts");
    eigenpairs<Scalar> out;
    out.values = solver.eigenvalues();
    out.vectors = solver.eigenvectors();
    for (Eigen::Index i = 0; i < out.vectors.cols(); ++i) out.vectors.col(i).normalize();
    out.iterations = solver.num_iterations();
    out.applications = sop.applications();
    return out;
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp), in double (float is compiled where
// it is called); the dense decomposition and Arnoldi each in a file of its own.
#define SDLENS_DENSE_EIGENPAIRS_INSTANTIATIONS(X, Scalar) \
    X(eigenpairs<Scalar> dense_eigenpairs(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>&, std::int64_t))
#define SDLENS_ARNOLDI_EIGS_INSTANTIATIONS(X, Scalar) \
    X(eigenpairs<Scalar> top_eigenpairs(const dense_operator<Scalar>&, std::int64_t, const eigs_options&))
SDLENS_DENSE_EIGENPAIRS_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE, double)
SDLENS_ARNOLDI_EIGS_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE, double)

}  // namespace sdlens
