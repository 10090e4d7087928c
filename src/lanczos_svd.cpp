// sdlens::sdlens_compiled (core/compiled.hpp): Lanczos SVD over dense operators, in double.
#include <sdlens/solvers/lanczos_svd.hpp>

namespace sdlens {
SDLENS_LANCZOS_SVD_INSTANTIATIONS(SDLENS_INSTANTIATE, double)
}  // namespace sdlens
