#pragma once
// Writes safetensors files: the header JSON padded with spaces so the data area starts 8-byte
// aligned (as the format allows), then each tensor's bytes in the order given.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/core/error.hpp"
#include "sdlens/io/half.hpp"
#include "sdlens/io/safetensors.hpp"

namespace sdlens {

struct tensor_bytes {
    std::string name;
    dtype type = dtype::f32;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> bytes;
};

// n floats encoded as f32, f16 or bf16 (rounding to nearest even), little-endian.
inline std::vector<std::byte> encode_floats(const float* values, std::int64_t n, dtype t)
{
    std::vector<std::byte> out(static_cast<std::size_t>(n) * (t == dtype::f32 ? 4 : 2));
    for (std::int64_t i = 0; i < n; ++i) {
        if (t == dtype::f32) {
            std::memcpy(out.data() + 4 * i, &values[i], 4);
        } else {
            const std::uint16_t b = t == dtype::f16 ? float_to_f16(values[i]) : float_to_bf16(values[i]);
            std::memcpy(out.data() + 2 * i, &b, 2);
        }
    }
    return out;
}

// metadata: the "__metadata__" object (string values by the format's rules); omitted when empty.
inline void write_safetensors(const std::string& file, const std::vector<tensor_bytes>& tensors,
                              const nlohmann::json& metadata = nlohmann::json::object())
{
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        const char* name = detail::safetensors_dtype_name(t.type);
        if (!name) fail_input(file, "tensor '" + t.name + "': safetensors cannot store " + dtype_name(t.type));
        check_tensor_bytes(file, t.name, t.type, t.shape, t.bytes.size());
        if (header.contains(t.name)) fail_input(file, "tensor '" + t.name + "' given twice");
        header[t.name] = {{"dtype", name}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
        offset += t.bytes.size();
    }
    std::string text = header.dump();
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');
    const std::uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));

    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    if (!out) fail_input(file, "cannot create");
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    out.close();
    if (!out) fail_input(file, "write failed");
}

}  // namespace sdlens
