// sdlens::sdlens_compiled (core/compiled.hpp): the dense eigen-decomposition, in double.
#include <sdlens/solvers/arnoldi_eigs.hpp>

namespace sdlens {
SDLENS_DENSE_EIGENPAIRS_INSTANTIATIONS(SDLENS_INSTANTIATE, double)
}  // namespace sdlens
