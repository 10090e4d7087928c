#include "dense_reference.hpp"

#include <stdexcept>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

namespace sdlens::test {

reference_svd_result reference_svd(const Eigen::MatrixXd& a)
{
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    return {svd.singularValues(), svd.matrixU(), svd.matrixV()};
}

reference_eig_result reference_eig(const Eigen::MatrixXd& a)
{
    const Eigen::EigenSolver<Eigen::MatrixXd> es(a, true);
    if (es.info() != Eigen::Success) throw std::runtime_error("reference EigenSolver did not converge");
    return {es.eigenvalues(), es.eigenvectors()};
}

Eigen::MatrixXd orthogonal_factor(const Eigen::MatrixXd& a) { return a.householderQr().householderQ(); }

}  // namespace sdlens::test
