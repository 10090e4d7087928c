#pragma once
// (A - sigma I) y = b for a matrix-free square operator A (the solvers' operator concept:
// rows(), apply(x, y) on blocks), by Eigen's restarted GMRES (unsupported/IterativeSolvers).
// Eigen's iterative solvers take a matrix-free operator as an EigenBase with a product
// specialization, as Eigen's own matrix-free example does; this header is that adapter.
#include <cstdint>

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <unsupported/Eigen/IterativeSolvers>

namespace sdlens {
template <class Op>
class shifted_operator;
}  // namespace sdlens

namespace Eigen::internal {
template <class Op>
struct traits<sdlens::shifted_operator<Op>> : public traits<Eigen::SparseMatrix<double>> {};
}  // namespace Eigen::internal

namespace sdlens {

template <class Op>
class shifted_operator : public Eigen::EigenBase<shifted_operator<Op>> {
public:
    using Scalar = double;
    using RealScalar = double;
    using StorageIndex = int;
    enum { ColsAtCompileTime = Eigen::Dynamic, MaxColsAtCompileTime = Eigen::Dynamic, IsRowMajor = false };

    shifted_operator(const Op& op, double shift) : op_(&op), shift_(shift) {}
    Eigen::Index rows() const { return op_->rows(); }
    Eigen::Index cols() const { return op_->cols(); }
    template <class Rhs>
    Eigen::Product<shifted_operator, Rhs, Eigen::AliasFreeProduct> operator*(const Eigen::MatrixBase<Rhs>& x) const
    {
        return Eigen::Product<shifted_operator, Rhs, Eigen::AliasFreeProduct>(*this, x.derived());
    }
    Eigen::VectorXd apply(const Eigen::VectorXd& x) const
    {
        Eigen::MatrixXd y;
        op_->apply(Eigen::MatrixXd(x), y);
        ++applications_;
        return y.col(0) - shift_ * x;
    }
    std::int64_t applications() const { return applications_; }

private:
    const Op* op_;
    double shift_;
    mutable std::int64_t applications_ = 0;
};

struct shifted_solve_result {
    Eigen::VectorXd y;
    bool converged = false;
    std::int64_t iterations = 0, applications = 0;
    double relative_residual = 0;
};

// GMRES(restart) to a relative residual of tol, at most max_iterations.
template <class Op>
shifted_solve_result solve_shifted(const Op& op, double shift, const Eigen::VectorXd& b, double tol = 1e-10, int restart = 60,
                                   int max_iterations = 600)
{
    const shifted_operator<Op> a(op, shift);
    Eigen::GMRES<shifted_operator<Op>, Eigen::IdentityPreconditioner> gmres(a);
    gmres.set_restart(restart);
    gmres.setTolerance(tol);
    gmres.setMaxIterations(max_iterations);
    shifted_solve_result r;
    r.y = gmres.solve(b);
    r.converged = gmres.info() == Eigen::Success;
    r.iterations = gmres.iterations();
    r.applications = a.applications();
    r.relative_residual = gmres.error();
    return r;
}

}  // namespace sdlens

namespace Eigen::internal {
template <class Op, class Rhs>
struct generic_product_impl<sdlens::shifted_operator<Op>, Rhs, SparseShape, DenseShape, GemvProduct>
    : generic_product_impl_base<sdlens::shifted_operator<Op>, Rhs, generic_product_impl<sdlens::shifted_operator<Op>, Rhs>> {
    using Scalar = typename Product<sdlens::shifted_operator<Op>, Rhs>::Scalar;
    template <class Dest>
    static void scaleAndAddTo(Dest& dst, const sdlens::shifted_operator<Op>& lhs, const Rhs& rhs, const Scalar& alpha)
    {
        dst.noalias() += alpha * lhs.apply(Eigen::VectorXd(rhs));
    }
};
}  // namespace Eigen::internal
