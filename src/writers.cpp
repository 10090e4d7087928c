// sdlens::sdlens_compiled (core/compiled.hpp): the checkpoint writers and the planted models.
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/plant.hpp>

namespace sdlens {
SDLENS_HF_WRITER_INSTANTIATIONS(SDLENS_INSTANTIATE)
SDLENS_GGUF_WRITER_INSTANTIATIONS(SDLENS_INSTANTIATE)
SDLENS_PLANT_INSTANTIATIONS(SDLENS_INSTANTIATE)
}  // namespace sdlens
