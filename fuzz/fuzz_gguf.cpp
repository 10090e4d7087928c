// libFuzzer target: arbitrary bytes through the GGUF reader, the model builder and the tokenizer.
// Only input_error may come out; any other exception, crash or out-of-bounds read is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>

#include <sdlens/io/gguf.hpp>
#include <sdlens/io/tokenizer.hpp>
#include <sdlens/model/gguf_families.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        auto ck = std::make_shared<const sdlens::checkpoint>(
            sdlens::parse_gguf(reinterpret_cast<const std::byte*>(data), size, "fuzz.gguf"));
        (void)ck->metadata.dump();
        try {
            if (auto t = sdlens::load_tokenizer(*ck)) (void)t->decode(t->encode("Hello, w\xC3\xB6rld 12345!", true));
        } catch (const sdlens::input_error&) {
        }
        const sdlens::model m = sdlens::build_gguf_model(ck);
        (void)sdlens::materialize(m);
    } catch (const sdlens::input_error&) {
    }
    return 0;
}
