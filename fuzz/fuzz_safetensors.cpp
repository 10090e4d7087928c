// Fuzzes the safetensors header parser and, through it, the Hugging Face family readers: the
// input is one safetensors file whose "__metadata__" object stands in for config.json. Bad input
// may only ever end in an input_error; anything else (a crash, a sanitizer report, another
// exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <sdlens/io/safetensors.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_families.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    try {
        const auto header = sdlens::parse_safetensors(bytes, size, "fuzz.safetensors");
        auto ckpt = std::make_shared<sdlens::checkpoint>();
        ckpt->path = "fuzz.safetensors";
        ckpt->tensors = sdlens::tensor_store(ckpt->path);
        std::vector<float> values;
        for (const auto& e : header.tensors) {
            ckpt->tensors.add({e.name, e.type, e.shape, bytes + e.begin, e.end - e.begin});
            const auto& t = ckpt->tensors.tensors().back();
            values.resize(static_cast<std::size_t>(t.numel()));
            sdlens::dequantize(t.type, t.data, values.data(), t.numel());
        }
        ckpt->metadata = header.metadata;
        (void)sdlens::materialize(sdlens::build_hf_model(ckpt));
    } catch (const sdlens::input_error&) {
    }
    return 0;
}
