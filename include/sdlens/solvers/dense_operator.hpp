#pragma once
// A dense matrix as an operator of the solvers' concept (scalar_type, rows(), cols(), apply(x, y),
// apply_transpose(x, y) on blocks of column vectors): for tests, small layers and dense baselines.
#include <cstdint>

#include <Eigen/Core>

namespace sdlens {

template <class Scalar>
class dense_operator {
public:
    using scalar_type = Scalar;
    using block = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

    explicit dense_operator(const block& m) : m_(&m) {}
    std::int64_t rows() const { return m_->rows(); }
    std::int64_t cols() const { return m_->cols(); }
    void apply(const block& x, block& y) const { y.noalias() = *m_ * x; }
    void apply_transpose(const block& x, block& y) const { y.noalias() = m_->transpose() * x; }

private:
    const block* m_;
};

}  // namespace sdlens
