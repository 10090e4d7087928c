#pragma once
// Top-k singular triplets of an operator known only through A x and A^T y: Golub-Kahan-Lanczos
// bidiagonalization with thick (IRLBA-style augmented) restarts and full reorthogonalization.
// The subspace is small (ncv vectors of length d), so full reorthogonalization is cheap next to one
// operator application (a pass over a layer's weights) and removes spurious copies of sigma_1.
//
// Spectra style: construct -> compute() -> info(), results as Eigen objects. The operator concept:
//   scalar_type; rows(); cols(); apply(const block& x, block& y); apply_transpose(x, y)
// where block = Eigen::Matrix<scalar_type, Dynamic, Dynamic> (one column per vector).
//
// After m steps, A V = U B and A^T U = V B^T + r e_m^T with B (m x m) upper triangular. With
// B = P S Q^T, the Ritz triplets (s_i, U p_i, V q_i) satisfy A v = s u exactly and
// ||A^T u_i - s_i v_i|| = ||r|| |P(m-1, i)|, the convergence test. A restart keeps the best
// `keep` triplets (B becomes diag(s) plus a column of ||r|| P(m-1, i)) and continues from
// r / ||r||; the reorthogonalization fills in that column by itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <Eigen/Core>
#include <Eigen/SVD>
#include <Spectra/Util/CompInfo.h>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/solvers/dense_operator.hpp"

namespace sdlens {

template <class Op>
class lanczos_svd {
public:
    using Scalar = typename Op::scalar_type;
    using Index = Eigen::Index;
    using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
    using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

    // k wanted triplets; ncv the subspace size (k < ncv <= min(rows, cols)); 0 = max(2k + 1, k + 8).
    lanczos_svd(const Op& op, Index k, Index ncv = 0) : op_(op), k_(k)
    {
        const Index n = std::min<Index>(op.rows(), op.cols());
        if (k < 1 || k > n) throw input_error("lanczos_svd: k = " + std::to_string(k) + " must be in [1, " + std::to_string(n) + "]");
        m_ = ncv > 0 ? ncv : std::max<Index>(2 * k + 1, k + 8);
        m_ = std::min(m_, n);
        if (m_ < k) m_ = k;
    }

    // The start vector; the default is a fixed pseudo-random vector (uniform bits of mt19937_64,
    // portable across standard libraries), so results are reproducible. All-ones would be a poor
    // default: it is the null direction of a centred LayerNorm.
    void set_start(const vector& v0) { start_ = v0; }

    // Runs until the k triplets satisfy ||A^T u_i - s_i v_i|| <= tol * s_1 or max_restarts pass.
    // Returns the number of converged triplets. verify: also compute the true residuals
    // ||A v_i - s_i u_i||, ||A^T u_i - s_i v_i|| (two more block applications).
    Index compute(Index max_restarts = 100, Scalar tol = default_tol(), bool verify = true);

    Spectra::CompInfo info() const { return info_; }
    const vector& singular_values() const { return sigma_; }
    const matrix& left_singular_vectors() const { return left_; }   // rows x k
    const matrix& right_singular_vectors() const { return right_; }  // cols x k
    // sqrt(||A v - s u||^2 + ||A^T u - s v||^2) per triplet (the estimate when not verified).
    const vector& residuals() const { return residuals_; }
    Index restarts() const { return restarts_; }
    // Calls of apply or apply_transpose: each is one pass over the operator's weights.
    Index applications() const { return applications_; }
    Index subspace_size() const { return m_; }

    static Scalar default_tol() { return std::is_same_v<Scalar, float> ? Scalar(1e-5) : Scalar(1e-10); }

private:
    using block = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

    void apply(const block& x, block& y)
    {
        op_.apply(x, y);
        ++applications_;
    }
    void apply_transpose(const block& x, block& y)
    {
        op_.apply_transpose(x, y);
        ++applications_;
    }
    // SVD of the leading n x n block of B; the Ritz triplets whose residual estimate
    // ||A^T u_i - s_i v_i|| = beta |P(n-1, i)| is within tol * s_1.
    Index count_converged(Index n, Scalar beta, Scalar tol)
    {
        svd_.compute(B_.topLeftCorner(n, n), Eigen::ComputeFullU | Eigen::ComputeFullV);
        const vector& s = svd_.singularValues();
        residual_estimates_ = (beta * svd_.matrixU().row(n - 1).head(k_).transpose()).cwiseAbs();
        Index nconv = 0;
        for (Index i = 0; i < k_; ++i)
            if (residual_estimates_[i] <= tol * s[0]) ++nconv;
        return nconv;
    }
    static Scalar breakdown(Scalar anorm) { return anorm * std::numeric_limits<Scalar>::epsilon() * 64; }

    // Two rounds of classical Gram-Schmidt against the first n columns of basis (CGS2: orthogonal
    // to working precision); returns the coefficients.
    static vector orthogonalize(const matrix& basis, Index n, vector& x)
    {
        vector c = vector::Zero(n);
        for (int pass = 0; pass < 2 && n > 0; ++pass) {
            const vector h = basis.leftCols(n).transpose() * x;
            x.noalias() -= basis.leftCols(n) * h;
            c += h;
        }
        return c;
    }
    // A unit vector orthogonal to the first n columns, after a breakdown (deterministic).
    static vector fresh_direction(const matrix& basis, Index n, Index dim, Index salt)
    {
        for (Index attempt = 0;; ++attempt) {
            vector x = random_vector(dim, 0x5eedULL + static_cast<std::uint64_t>(salt) * 131 + attempt);
            orthogonalize(basis, n, x);
            const Scalar nx = x.norm();
            if (nx > Scalar(1e-3)) return x / nx;
        }
    }
    static vector random_vector(Index n, std::uint64_t seed)
    {
        std::mt19937_64 rng(seed);
        vector v(n);
        for (Index i = 0; i < n; ++i) v[i] = static_cast<Scalar>(static_cast<double>(rng() >> 11) * 0x1.0p-53 - 0.5);
        return v;
    }
    static vector default_start(Index n) { return random_vector(n, 20240601); }

    const Op& op_;
    Index k_ = 1, m_ = 0;
    vector start_;
    matrix U_, V_, B_;
    vector sigma_, residuals_, residual_estimates_;
    matrix left_, right_;
    Index restarts_ = 0, applications_ = 0;
    Eigen::JacobiSVD<matrix> svd_;
    Spectra::CompInfo info_ = Spectra::CompInfo::NotComputed;
};

// Out of line, so that an extern template declaration keeps it out of the files that include this.
template <class Op>
Eigen::Index lanczos_svd<Op>::compute(Index max_restarts, Scalar tol, bool verify)
{
    const Index rows = op_.rows(), cols = op_.cols();
    U_.setZero(rows, m_);
    V_.setZero(cols, m_);
    B_.setZero(m_, m_);
    restarts_ = applications_ = 0;
    info_ = Spectra::CompInfo::NotComputed;

    vector v = start_.size() == cols ? start_ : default_start(cols);
    if (!(v.norm() > 0)) throw input_error("lanczos_svd: zero start vector");
    V_.col(0) = v / v.norm();

    Index kept = 0, nconv = 0;
    const Index keep = std::min<Index>(m_ - 1, k_ + (m_ - k_) / 2);
    vector r;
    Scalar beta = 0, anorm = 0;
    block x(cols, 1), y;
    bool done = false;
    for (Index restart = 0; !done; ++restart) {
        Index steps = m_;  // the subspace size reached in this cycle
        for (Index j = kept; j < m_; ++j) {
            // u-step: A v_j against U[:, :j]; the coefficients are column j of B.
            x = V_.col(j);
            apply(x, y);
            vector u = y.col(0);
            const vector c = orthogonalize(U_, j, u);
            B_.col(j).head(j) = c;
            Scalar alpha = u.norm();
            anorm = std::max(anorm, alpha);
            if (alpha <= breakdown(anorm)) {  // A v_j already in span(U): continue with any new u
                alpha = 0;
                u = fresh_direction(U_, j, rows, restart * m_ + j);
            } else {
                u /= alpha;
            }
            B_(j, j) = alpha;
            U_.col(j) = u;
            // v-step: A^T u_j against V[:, :j+1].
            x = U_.col(j);
            apply_transpose(x, y);
            r = y.col(0);
            orthogonalize(V_, j + 1, r);
            beta = r.norm();
            anorm = std::max(anorm, beta);
            // The residual estimates hold after every step, not only at the end of a cycle:
            // testing them each time (an SVD of at most ncv x ncv) stops a well-separated
            // sigma_1 after a few applications instead of a whole cycle of 2 ncv.
            if (j + 1 >= k_ && j + 1 < m_ && count_converged(j + 1, beta, tol) == k_) {
                steps = j + 1;
                break;
            }
            if (j + 1 < m_) {
                if (beta <= breakdown(anorm)) {
                    beta = 0;
                    V_.col(j + 1) = fresh_direction(V_, j + 1, cols, restart * m_ + j + 7919);
                } else {
                    V_.col(j + 1) = r / beta;
                }
            }
        }
        nconv = steps < m_ ? k_ : count_converged(m_, beta, tol);
        const vector& s = svd_.singularValues();
        const matrix& P = svd_.matrixU();
        const matrix& Q = svd_.matrixV();
        if (nconv == k_ || restart >= max_restarts || m_ == std::min(rows, cols)) {
            restarts_ = restart;
            sigma_ = s.head(k_);
            left_ = U_.leftCols(steps) * P.leftCols(k_);
            right_ = V_.leftCols(steps) * Q.leftCols(k_);
            // A full-dimensional subspace is exact: nothing is left out of it.
            if (m_ == std::min(rows, cols)) nconv = k_;
            done = true;
            break;
        }
        // Thick restart: keep the best `keep` Ritz triplets, continue from r.
        const matrix Uk = U_ * P.leftCols(keep), Vk = V_ * Q.leftCols(keep);
        U_.leftCols(keep) = Uk;
        V_.leftCols(keep) = Vk;
        B_.setZero();
        B_.diagonal().head(keep) = s.head(keep);
        if (beta <= breakdown(anorm)) V_.col(keep) = fresh_direction(V_, keep, cols, restart + 104729);
        else {
            vector rr = r / beta;
            orthogonalize(V_, keep, rr);
            V_.col(keep) = rr / rr.norm();
        }
        kept = keep;
    }
    info_ = nconv == k_ ? Spectra::CompInfo::Successful : Spectra::CompInfo::NotConverging;
    if (verify) {
        block av, atu;
        apply(right_, av);
        apply_transpose(left_, atu);
        residuals_.resize(k_);
        for (Index i = 0; i < k_; ++i)
            residuals_[i] = std::sqrt((av.col(i) - sigma_[i] * left_.col(i)).squaredNorm() +
                                      (atu.col(i) - sigma_[i] * right_.col(i)).squaredNorm());
    } else {
        residuals_ = residual_estimates_;
    }
    return nconv;
}

// The result of the convenience wrappers below.
template <class Scalar>
struct singular_triplets {
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> sigma;
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> u, v;  // columns
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> residuals;
    std::int64_t restarts = 0, applications = 0;
};

struct lanczos_options {
    std::int64_t ncv = 0;  // 0: the solver's default
    std::int64_t max_restarts = 100;
    double tol = 0;  // 0: the solver's default for the scalar type
    bool verify = true;
};

// Top-k singular triplets, or a computation_error when Lanczos did not converge.
template <class Op>
singular_triplets<typename Op::scalar_type> top_singular_triplets(const Op& op, std::int64_t k, const lanczos_options& o = {})
{
    using Scalar = typename Op::scalar_type;
    lanczos_svd<Op> solver(op, k, o.ncv);
    solver.compute(o.max_restarts, o.tol > 0 ? Scalar(o.tol) : lanczos_svd<Op>::default_tol(), o.verify);
    if (solver.info() != Spectra::CompInfo::Successful)
        throw computation_error("Lanczos SVD did not converge to " + std::to_string(k) + " singular triplets in " +
                                std::to_string(o.max_restarts) + " restarts");
    return {solver.singular_values(), solver.left_singular_vectors(), solver.right_singular_vectors(),
            solver.residuals(), static_cast<std::int64_t>(solver.restarts()),
            static_cast<std::int64_t>(solver.applications())};
}

// The dense fallback: Eigen's BDCSVD on a materialized matrix.
template <class Scalar>
singular_triplets<Scalar> dense_top_singular_triplets(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& a, std::int64_t k)
{
    Eigen::BDCSVD<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    k = std::min<std::int64_t>(k, svd.singularValues().size());
    singular_triplets<Scalar> t;
    t.sigma = svd.singularValues().head(k);
    t.u = svd.matrixU().leftCols(k);
    t.v = svd.matrixV().leftCols(k);
    t.residuals = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::Zero(k);
    return t;
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp), in double: on dense operators, the
// tests' and small models' precision (float is compiled where it is called). The dense fallback is
// not in the library: Eigen's BDCSVD alone costs a file 40 s and 1.5 GB to compile.
#define SDLENS_LANCZOS_SVD_INSTANTIATIONS(X, Scalar) \
    X(class lanczos_svd<dense_operator<Scalar>>)     \
    X(singular_triplets<Scalar> top_singular_triplets(const dense_operator<Scalar>&, std::int64_t, const lanczos_options&))
SDLENS_LANCZOS_SVD_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE, double)

}  // namespace sdlens
