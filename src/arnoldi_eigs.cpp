// sdlens::sdlens_compiled (core/compiled.hpp): Arnoldi over dense operators, in double.
#include <sdlens/solvers/arnoldi_eigs.hpp>

namespace sdlens {
SDLENS_ARNOLDI_EIGS_INSTANTIATIONS(SDLENS_INSTANTIATE, double)
}  // namespace sdlens
