// sdlens::sdlens_compiled (core/compiled.hpp): singular triplets of the layer maps in single
// precision.
#include <sdlens/analysis/layer_directions.hpp>

namespace sdlens {
SDLENS_LAYER_SVD_INSTANTIATIONS(SDLENS_INSTANTIATE, float)
}  // namespace sdlens
