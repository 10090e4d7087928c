#pragma once
// A checkpoint as stored: its tensors and its metadata, before any family-specific reading.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "sdlens/io/tensor_store.hpp"

namespace sdlens {

enum class checkpoint_format { safetensors, gguf, llama2c };

inline const char* format_name(checkpoint_format f)
{
    switch (f) {
    case checkpoint_format::safetensors: return "safetensors";
    case checkpoint_format::gguf: return "gguf";
    case checkpoint_format::llama2c: return "llama2c";
    }
    return "?";
}

struct checkpoint {
    std::string path;
    checkpoint_format format = checkpoint_format::safetensors;
    // safetensors: config.json (plus "__metadata__" of the first file under "safetensors_metadata");
    // gguf: every key/value pair, arrays included; llama2c: the header fields.
    nlohmann::json metadata;
    tensor_store tensors;
};

}  // namespace sdlens
