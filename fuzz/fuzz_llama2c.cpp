// libFuzzer target: arbitrary bytes through the llama2.c checkpoint reader and model builder,
// and through the llama2.c tokenizer reader. Only input_error may come out.
#include <cstddef>
#include <cstdint>
#include <memory>

#include <sdlens/io/llama2c.hpp>
#include <sdlens/io/tokenizer.hpp>
#include <sdlens/model/gguf_families.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    try {
        (void)sdlens::looks_like_llama2c(bytes, size);
        auto ck = std::make_shared<const sdlens::checkpoint>(sdlens::parse_llama2c(bytes, size, "fuzz.bin"));
        const sdlens::model m = sdlens::build_llama2c_model(ck);
        (void)sdlens::materialize(m);
    } catch (const sdlens::input_error&) {
    }
    try {
        const auto t = sdlens::tokenizer::parse_llama2c(bytes, size, "fuzz_tok.bin");
        (void)t.decode(t.encode("Hello, w\xC3\xB6rld \xFF!", true));
    } catch (const sdlens::input_error&) {
    }
    return 0;
}
