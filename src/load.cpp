// sdlens::sdlens_compiled (core/compiled.hpp): the checkpoint readers behind load_model.
#include <sdlens/model/load.hpp>

namespace sdlens {
SDLENS_LOAD_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
