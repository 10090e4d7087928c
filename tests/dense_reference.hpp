#pragma once
// Independent float64 references for the tests: Eigen's dense decompositions, compiled once in
// dense_reference.cpp (each costs a file that instantiates it tens of seconds to compile).
#include <Eigen/Core>

namespace sdlens::test {

// Thin SVD by Eigen's two-sided Jacobi (JacobiSVD): singular values to high relative accuracy,
// descending; columns of u and v are the singular vectors.
struct reference_svd_result {
    Eigen::VectorXd sigma;
    Eigen::MatrixXd u, v;
};
reference_svd_result reference_svd(const Eigen::MatrixXd& a);

// All eigenpairs of a real square matrix by Eigen's EigenSolver (Hessenberg QR), in its order.
struct reference_eig_result {
    Eigen::VectorXcd values;
    Eigen::MatrixXcd vectors;
};
reference_eig_result reference_eig(const Eigen::MatrixXd& a);

// The orthogonal factor Q of a Householder QR of a (square): a random orthogonal matrix when a
// is Gaussian.
Eigen::MatrixXd orthogonal_factor(const Eigen::MatrixXd& a);

}  // namespace sdlens::test
