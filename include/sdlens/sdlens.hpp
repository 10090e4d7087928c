#pragma once
// Everything sdlens offers, in pipeline order: io -> model -> forward, linearize -> solvers -> analysis.
#include "sdlens/version.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/io/dtype.hpp"
#include "sdlens/io/mapped_file.hpp"
#include "sdlens/io/tensor_store.hpp"
#include "sdlens/io/checkpoint.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"
#include "sdlens/model/model.hpp"
