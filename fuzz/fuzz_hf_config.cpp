// libFuzzer target: arbitrary bytes as a config.json through hf_model_config (families, RoPE
// scaling, sliding windows, mlp_bias, Gemma's caps, scalars and layer types) and what a loaded config feeds: the RoPE frequencies at a
// few positions, the per-layer attention window, the JSON description and the writer's keys.
// Only input_error may come out; any other exception, crash or out-of-bounds read is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/rope.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto j = nlohmann::json::parse(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size,
                                         nullptr, false);
    if (j.is_discarded()) return 0;  // not JSON: the loader's JSON parser says so before this
    try {
        const sdlens::model_config c = sdlens::hf_model_config(j, "fuzz/config.json");
        (void)sdlens::to_json(c).dump();
        for (int l = 0; l <= static_cast<int>(std::min<std::int64_t>(c.num_layers, 64)) + 1; ++l) (void)c.attention_window(l);
        // A real load checks the dimensions against the tensors; here only sizes a tensor could have.
        if (c.rope != sdlens::rope_style::none && c.rotary_dims <= 4096)
            for (std::int64_t positions : {std::int64_t(1), std::int64_t(4096), std::int64_t(1) << 20}) {
                (void)sdlens::rope_frequencies_for(c, positions);
                (void)sdlens::rope_frequencies_for(c, positions, 1);  // a sliding layer's own base (Gemma 3)
            }
        (void)sdlens::detail::hf_config_keys(c).dump();
        (void)c.score_scale();
    } catch (const sdlens::input_error&) {
    }
    return 0;
}
