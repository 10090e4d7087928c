// sdlens::sdlens_compiled (core/compiled.hpp): singular triplets of the layer maps in double
// precision, and the analysis entry points that choose the precision.
#include <sdlens/analysis/layer_directions.hpp>

namespace sdlens {
SDLENS_LAYER_SVD_INSTANTIATIONS(SDLENS_INSTANTIATE, double)
SDLENS_LAYER_DIRECTIONS_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
