#pragma once
// Opens any supported checkpoint and describes it: a Hugging Face directory (config.json with
// model.safetensors or an index of shards), a .safetensors file beside its config.json, a GGUF
// file, or a llama2.c .bin. The format is told by content (magic bytes), not by file name.
#include <filesystem>
#include <memory>
#include <string>

#include "sdlens/core/compiled.hpp"
#include "sdlens/model/model.hpp"
// Each format's reader and family adapter.
#include "sdlens/io/safetensors.hpp"
#include "sdlens/model/hf_families.hpp"
#include "sdlens/io/gguf.hpp"
#include "sdlens/io/llama2c.hpp"
#include "sdlens/model/gguf_families.hpp"

namespace sdlens {

struct load_options {
    std::string tokenizer_path;  // llama2.c keeps its tokenizer in a separate file
};

template <class = void>  // compiled where it is called (core/compiled.hpp)
model load_model(const std::string& path, const load_options& options = {})
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) fail_input(path, "no such file or directory");
    (void)options;
    if (fs::is_regular_file(path, ec)) {
        // GGUF by its magic; llama2.c by its "ak42" magic or, for the legacy layout that has
        // none, by a header whose implied size is exactly the file's.
        auto file = std::make_shared<const mapped_file>(path);
        if (looks_like_gguf(file->data(), file->size()))
            return build_gguf_model(std::make_shared<const checkpoint>(parse_gguf(file->data(), file->size(), path, file)));
        if (looks_like_llama2c(file->data(), file->size()))
            return build_llama2c_model(std::make_shared<const checkpoint>(parse_llama2c(file->data(), file->size(), path, file)));
        // A safetensors header is a JSON object right after its 8-byte length. Anything else (a
        // tokenizer, a text file) gets a plain answer rather than the JSON parser's complaint.
        if (file->size() > 8 && static_cast<char>(file->data()[8]) != '{')
            fail_input(path, "not a safetensors, GGUF or llama2.c checkpoint");
    }
    auto ckpt = std::make_shared<const checkpoint>(read_safetensors(path));
    return build_hf_model(ckpt);
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_LOAD_INSTANTIATIONS(X) \
    X(model load_model(const std::string&, const load_options&))
SDLENS_LOAD_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
