#pragma once
// Everything sdlens offers, in pipeline order: io -> model -> forward, linearize -> solvers -> analysis.
#include "sdlens/version.hpp"
#include "sdlens/core/error.hpp"

#include "sdlens/io/dtype.hpp"
#include "sdlens/io/mapped_file.hpp"
#include "sdlens/io/tensor_store.hpp"
#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/safetensors.hpp"
#include "sdlens/io/safetensors_writer.hpp"
#include "sdlens/io/gguf.hpp"
#include "sdlens/io/gguf_writer.hpp"
#include "sdlens/io/llama2c.hpp"
#include "sdlens/io/tokenizer.hpp"

#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"
#include "sdlens/model/model.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/load.hpp"
#include "sdlens/model/hf_writer.hpp"
#include "sdlens/model/gguf_families.hpp"
#include "sdlens/model/random_model.hpp"
#include "sdlens/model/plant.hpp"

#include "sdlens/forward/forward.hpp"

#include "sdlens/linearize/layer_operator.hpp"
#include "sdlens/solvers/lanczos_svd.hpp"
#include "sdlens/solvers/arnoldi_eigs.hpp"
#include "sdlens/analysis/layer_directions.hpp"
