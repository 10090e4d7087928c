// sdlens::sdlens_compiled: the FFN linearization's row scales and the Monte-Carlo F1, compiled
// once (core/compiled.hpp).
#include <sdlens/linearize/ffn_linearization.hpp>

namespace sdlens {
SDLENS_FFN_LINEARIZATION_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
