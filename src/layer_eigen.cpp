// sdlens::sdlens_compiled (core/compiled.hpp): eigenpairs of the layers' residual maps.
#include <sdlens/analysis/layer_directions.hpp>

namespace sdlens {
SDLENS_LAYER_EIGEN_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
