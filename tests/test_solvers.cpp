// The solvers on dense matrices with known spectra: Lanczos SVD against Eigen's JacobiSVD, Arnoldi
// eigenpairs against Eigen's EigenSolver, failure reporting and determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <Eigen/Core>

#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/solvers/arnoldi_eigs.hpp>
#include <sdlens/solvers/lanczos_svd.hpp>

#include "dense_reference.hpp"

namespace {
using namespace sdlens;
using Eigen::MatrixXd;
using Eigen::VectorXd;

MatrixXd gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n;
    MatrixXd m(rows, cols);
    for (Eigen::Index j = 0; j < cols; ++j)
        for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = n(rng);
    return m;
}

// Q1 diag(s) Q2^T with random orthogonal Q1, Q2: singular values known exactly.
MatrixXd with_singular_values(const VectorXd& s, std::int64_t rows, std::int64_t cols, std::uint64_t seed)
{
    const MatrixXd q1 = test::orthogonal_factor(gaussian(rows, rows, seed));
    const MatrixXd q2 = test::orthogonal_factor(gaussian(cols, cols, seed + 1));
    MatrixXd d = MatrixXd::Zero(rows, cols);
    d.diagonal().head(s.size()) = s;
    return q1 * d * q2.transpose();
}

double angle_deg(const VectorXd& a, const VectorXd& b)
{
    return std::acos(std::min(1.0, std::abs(a.dot(b)) / (a.norm() * b.norm()))) * 180 / M_PI;
}
}  // namespace

TEST_CASE("Lanczos SVD matches JacobiSVD on rectangular and square matrices")
{
    for (auto [rows, cols] : {std::pair<int, int>{150, 120}, {120, 150}, {100, 100}}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const MatrixXd a = gaussian(rows, cols, 7) + 5 * gaussian(rows, 1, 8) * gaussian(1, cols, 9);  // a spike
        const auto svd = test::reference_svd(a);
        const dense_operator<double> op(a);
        for (std::int64_t k : {1, 4}) {
            lanczos_svd<dense_operator<double>> solver(op, k);
            const auto nconv = solver.compute();
            REQUIRE(solver.info() == Spectra::CompInfo::Successful);
            CHECK(nconv == k);
            // tol 1e-10 sigma_1 on the residual bounds the sigma error by 1e-10 sigma_1 (Weyl).
            for (std::int64_t i = 0; i < k; ++i)
                CHECK(solver.singular_values()[i] == doctest::Approx(svd.sigma[i]).epsilon(1e-8));
            // The spike separates sigma_1: vector error ~ residual / gap, far below 0.01 degrees.
            CHECK(angle_deg(solver.left_singular_vectors().col(0), svd.u.col(0)) < 0.01);
            CHECK(angle_deg(solver.right_singular_vectors().col(0), svd.v.col(0)) < 0.01);
            CHECK(solver.residuals().maxCoeff() < 1e-8 * svd.sigma[0]);
            CHECK(solver.applications() >= 2);
        }
    }
}

TEST_CASE("Lanczos SVD handles exact low rank (invariant subspace breakdown)")
{
    VectorXd s(3);
    s << 3, 2, 1;
    const MatrixXd a = with_singular_values(s, 40, 30, 3);
    const dense_operator<double> op(a);
    lanczos_svd<dense_operator<double>> solver(op, 3);
    solver.compute();
    REQUIRE(solver.info() == Spectra::CompInfo::Successful);
    for (int i = 0; i < 3; ++i) CHECK(solver.singular_values()[i] == doctest::Approx(s[i]).epsilon(1e-10));
}

TEST_CASE("Lanczos SVD reports non-convergence on clustered singular values")
{
    // 200 singular values within 1e-4 of each other: separating the top 5 needs far more than one
    // restart of an 8-vector subspace.
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(0, 1e-4);
    VectorXd s(200);
    for (auto& x : s) x = 1 + u(rng);
    std::sort(s.data(), s.data() + s.size(), std::greater<>());
    const MatrixXd a = with_singular_values(s, 200, 200, 6);
    const dense_operator<double> op(a);
    lanczos_svd<dense_operator<double>> solver(op, 5, 8);
    solver.compute(1);
    CHECK(solver.info() != Spectra::CompInfo::Successful);
    lanczos_options o;
    o.ncv = 8;
    o.max_restarts = 1;
    CHECK_THROWS_AS(top_singular_triplets(op, 5, o), computation_error);
}

TEST_CASE("Lanczos SVD is deterministic")
{
    const MatrixXd a = gaussian(80, 80, 12);
    const dense_operator<double> op(a);
    lanczos_svd<dense_operator<double>> s1(op, 3), s2(op, 3);
    s1.compute();
    s2.compute();
    CHECK(std::memcmp(s1.left_singular_vectors().data(), s2.left_singular_vectors().data(), sizeof(double) * 80 * 3) == 0);
    CHECK(s1.applications() == s2.applications());
}

TEST_CASE("Arnoldi eigenpairs match EigenSolver; dense fallback sorts by magnitude")
{
    const MatrixXd a = gaussian(120, 120, 21) / std::sqrt(120.0) + 3 * gaussian(120, 1, 22) * gaussian(1, 120, 23) / 120;
    const auto es = test::reference_eig(a);
    std::vector<std::complex<double>> want(es.values.data(), es.values.data() + 120);
    std::sort(want.begin(), want.end(), [](auto x, auto y) { return std::abs(x) > std::abs(y); });
    const dense_operator<double> op(a);
    const auto got = top_eigenpairs(op, 4);
    REQUIRE(got.values.size() == 4);
    for (int i = 0; i < 4; ++i) {
        // Conjugate pairs may come in either order: compare with the nearest reference value.
        double nearest = 1e300;
        for (const auto& w : want) nearest = std::min(nearest, std::abs(w - got.values[i]));
        CHECK(nearest < 1e-9 * std::abs(want[0]));
        CHECK(std::abs(got.values[i]) == doctest::Approx(std::abs(want[static_cast<std::size_t>(i)])).epsilon(1e-9));
    }
    const auto dense = dense_eigenpairs<double>(a, 4);
    for (int i = 0; i < 4; ++i) CHECK(std::abs(dense.values[i]) == doctest::Approx(std::abs(want[static_cast<std::size_t>(i)])).epsilon(1e-12));
    // Operators too small for Arnoldi go to the dense fallback.
    const MatrixXd small = gaussian(4, 4, 2);
    const dense_operator<double> sop(small);
    const auto e = top_eigenpairs(sop, 2);
    CHECK(e.dense);
    CHECK(e.values.size() == 2);
}

TEST_CASE("Arnoldi reports non-convergence as a computation_error")
{
    // A random orthogonal matrix: every eigenvalue on the unit circle, nothing to separate.
    const MatrixXd q = test::orthogonal_factor(gaussian(300, 300, 4));
    const dense_operator<double> op(q);
    eigs_options o;
    o.max_restarts = 2;
    o.ncv = 12;
    CHECK_THROWS_AS(top_eigenpairs(op, 5, o), computation_error);
}
