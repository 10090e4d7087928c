// sdlens::sdlens_compiled: the forward pass and its products, compiled once (core/compiled.hpp).
#include <sdlens/forward/forward.hpp>

namespace sdlens {
SDLENS_KERNELS_INSTANTIATIONS(SDLENS_INSTANTIATE)
SDLENS_LINEAR_INSTANTIATIONS(SDLENS_INSTANTIATE)
SDLENS_FORWARD_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
