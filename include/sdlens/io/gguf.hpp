#pragma once
// GGUF (v2 and v3, little-endian) as llama.cpp writes it: a header, typed key/value metadata,
// tensor descriptions, then aligned tensor data. The data stays in the mapping; every count,
// length and offset is checked against the bytes that are actually there before it is used.
//
// Metadata lands in checkpoint::metadata as JSON, one entry per key. Integers, floats and bools
// become JSON numbers and booleans, arrays JSON arrays (nested ones too). A string that is valid
// UTF-8 becomes a JSON string; one that is not (token pieces of byte-level vocabularies can be
// any bytes) becomes a JSON binary value holding the exact bytes, so nothing is lost and dumping
// the metadata never throws. gguf_string_bytes() reads either form back.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/mapped_file.hpp"

namespace sdlens {

// GGUF metadata value types.
enum class gguf_value_type : std::uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

// ggml tensor type ids; only those sdlens can decode map to a dtype.
inline std::optional<dtype> dtype_from_ggml(std::uint32_t id)
{
    switch (id) {
    case 0: return dtype::f32;
    case 1: return dtype::f16;
    case 2: return dtype::q4_0;
    case 8: return dtype::q8_0;
    case 12: return dtype::q4_k;
    case 14: return dtype::q6_k;
    case 30: return dtype::bf16;
    default: return std::nullopt;
    }
}

inline std::uint32_t ggml_type_id(dtype t)
{
    switch (t) {
    case dtype::f32: return 0;
    case dtype::f16: return 1;
    case dtype::q4_0: return 2;
    case dtype::q8_0: return 8;
    case dtype::q4_k: return 12;
    case dtype::q6_k: return 14;
    case dtype::bf16: return 30;
    }
    return 0;
}

// Names of the ggml types sdlens cannot decode, so the error says what the file holds.
inline std::string ggml_type_name(std::uint32_t id)
{
    static constexpr const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1",
                                            "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
                                            "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                                            "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
    if (id < sizeof(names) / sizeof(names[0])) return names[id];
    return "unknown";
}

// The exact bytes of a metadata string, whichever JSON form it was stored in.
inline std::optional<std::string> gguf_string_bytes(const nlohmann::json& v)
{
    if (v.is_string()) return v.get<std::string>();
    if (v.is_binary()) {
        const auto& b = v.get_binary();
        return std::string(b.begin(), b.end());
    }
    return std::nullopt;
}

namespace detail {

inline bool valid_utf8(const std::string& s)
{
    std::size_t i = 0;
    const auto n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        int len;
        std::uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (int k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

class gguf_parser {
public:
    gguf_parser(const std::byte* data, std::size_t size, const std::string& source)
        : base_(data), r_(data, size, source) {}

    checkpoint parse(std::shared_ptr<const void> owner)
    {
        checkpoint ck;
        ck.path = r_.source();
        ck.format = checkpoint_format::gguf;
        ck.tensors = tensor_store(r_.source());
        if (owner) ck.tensors.keep_alive(std::move(owner));

        const auto magic = r_.read<std::uint32_t>("magic");
        if (magic != 0x46554747u) fail("not a GGUF file (no GGUF magic)");
        const auto version = r_.read<std::uint32_t>("version");
        if (version == 1) fail("GGUF version 1 is not supported (convert it with a newer llama.cpp)");
        if (version != 2 && version != 3)
            fail("unsupported GGUF version " + std::to_string(version) +
                 (version > 0xFFFF ? " (a big-endian file?)" : ""));
        const auto tensor_count = r_.read<std::uint64_t>("tensor count");
        const auto kv_count = r_.read<std::uint64_t>("metadata count");
        // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor
        // description at least 8 + 4 + 8 + 4 + 8; counts beyond that cannot be real.
        if (kv_count > r_.remaining() / 13) fail("metadata count " + std::to_string(kv_count) + " is impossible for the file's size");
        if (tensor_count > r_.remaining() / 32)
            fail("tensor count " + std::to_string(tensor_count) + " is impossible for the file's size");

        ck.metadata = nlohmann::json::object();
        for (std::uint64_t i = 0; i < kv_count; ++i) {
            std::string key = read_string("metadata key");
            if (!valid_utf8(key)) fail("metadata key " + std::to_string(i) + " is not UTF-8");
            if (ck.metadata.contains(key)) fail("metadata key '" + key + "' appears twice");
            const auto type = r_.read<std::uint32_t>("metadata value type");
            ck.metadata[key] = read_value(type, key, 0);
        }

        std::uint64_t alignment = 32;
        if (ck.metadata.contains("general.alignment")) {
            const auto& a = ck.metadata["general.alignment"];
            if (!a.is_number_unsigned() || a.get<std::uint64_t>() == 0 || a.get<std::uint64_t>() > (1u << 20) ||
                (a.get<std::uint64_t>() & (a.get<std::uint64_t>() - 1)) != 0)
                fail("general.alignment must be a power of two up to 2^20");
            alignment = a.get<std::uint64_t>();
        }

        struct pending {
            tensor_info info;
            std::uint64_t offset;
        };
        std::vector<pending> infos;
        infos.reserve(static_cast<std::size_t>(tensor_count));  // bounded by the file size above
        for (std::uint64_t i = 0; i < tensor_count; ++i) {
            pending p;
            p.info.name = read_string("tensor name");
            if (!valid_utf8(p.info.name)) fail("tensor " + std::to_string(i) + " has a name that is not UTF-8");
            const auto& name = p.info.name;
            const auto n_dims = r_.read<std::uint32_t>("tensor dimension count");
            if (n_dims == 0 || n_dims > 4)
                fail("tensor '" + name + "' has " + std::to_string(n_dims) + " dimensions (GGUF allows 1 to 4)");
            std::vector<std::int64_t> ne(n_dims);
            for (auto& e : ne) {
                const auto v = r_.read<std::uint64_t>("tensor dimension");
                if (v > (std::uint64_t(1) << 40)) fail("tensor '" + name + "' has an impossible dimension " + std::to_string(v));
                e = static_cast<std::int64_t>(v);
            }
            p.info.shape.assign(ne.rbegin(), ne.rend());  // ggml's ne[0] is the contiguous axis
            const auto type_id = r_.read<std::uint32_t>("tensor type");
            const auto t = dtype_from_ggml(type_id);
            if (!t)
                fail("tensor '" + name + "' has ggml type " + std::to_string(type_id) + " (" + ggml_type_name(type_id) +
                     "), which sdlens cannot read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
            p.info.type = *t;
            p.offset = r_.read<std::uint64_t>("tensor offset");
            if (p.offset % alignment != 0)
                fail("tensor '" + name + "' offset " + std::to_string(p.offset) + " is not a multiple of the alignment " +
                     std::to_string(alignment));
            // Exact byte count with overflow checks (a mismatch cannot happen: computed here).
            std::int64_t n = 1;
            for (auto s : p.info.shape) {
                if (s != 0 && n > (std::int64_t(1) << 50) / s) fail("tensor '" + name + "' has an impossible element count");
                n *= s;
            }
            const std::int64_t inner = p.info.shape.back();
            if (inner % layout_of(*t).block_elems != 0)
                fail("tensor '" + name + "': innermost dimension " + std::to_string(inner) + " is not a multiple of the " +
                     dtype_name(*t) + " block size");
            p.info.nbytes = static_cast<std::uint64_t>(bytes_for(*t, n));
            infos.push_back(std::move(p));
        }

        const std::uint64_t header_end = r_.pos();
        const std::uint64_t data_start = (header_end + alignment - 1) / alignment * alignment;
        if (data_start > r_.size() && tensor_count > 0) fail("truncated: no tensor data after the header");
        const std::uint64_t data_size = data_start <= r_.size() ? r_.size() - data_start : 0;

        // Offsets must lie inside the data section and tensors must not overlap.
        std::vector<std::size_t> order(infos.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](auto a, auto b) { return infos[a].offset < infos[b].offset; });
        std::uint64_t prev_end = 0;
        const std::string* prev_name = nullptr;
        for (auto i : order) {
            const auto& p = infos[i];
            if (p.offset > data_size || p.info.nbytes > data_size - p.offset)
                fail("truncated: tensor '" + p.info.name + "' needs bytes [" + std::to_string(p.offset) + ", " +
                     std::to_string(p.offset + p.info.nbytes) + ") of a data section of " + std::to_string(data_size) + " bytes");
            if (prev_name && p.offset < prev_end)
                fail("tensors '" + *prev_name + "' and '" + p.info.name + "' overlap");
            prev_end = p.offset + p.info.nbytes;
            prev_name = &p.info.name;
        }
        for (auto& p : infos) {
            p.info.data = base_ + data_start + p.offset;
            ck.tensors.add(std::move(p.info));
        }
        return ck;
    }

private:
    [[noreturn]] void fail(const std::string& problem) const { fail_input(r_.source(), problem); }

    std::string read_string(const char* what)
    {
        const auto len = r_.read<std::uint64_t>(what);
        if (len > r_.remaining())
            fail(std::string(what) + " at offset " + std::to_string(r_.pos() - 8) + " claims " + std::to_string(len) +
                 " bytes, beyond the end of the file");
        const auto* p = r_.take(static_cast<std::size_t>(len), what);
        return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
    }

    // Smallest number of bytes one value of a type occupies: bounds array lengths before any
    // allocation.
    static std::uint64_t min_size(std::uint32_t type)
    {
        switch (static_cast<gguf_value_type>(type)) {
        case gguf_value_type::u8: case gguf_value_type::i8: case gguf_value_type::boolean: return 1;
        case gguf_value_type::u16: case gguf_value_type::i16: return 2;
        case gguf_value_type::u32: case gguf_value_type::i32: case gguf_value_type::f32: return 4;
        case gguf_value_type::u64: case gguf_value_type::i64: case gguf_value_type::f64: case gguf_value_type::string: return 8;
        case gguf_value_type::array: return 12;
        }
        return 1;
    }

    nlohmann::json read_value(std::uint32_t type, const std::string& key, int depth)
    {
        switch (static_cast<gguf_value_type>(type)) {
        case gguf_value_type::u8: return r_.read<std::uint8_t>("metadata value");
        case gguf_value_type::i8: return r_.read<std::int8_t>("metadata value");
        case gguf_value_type::u16: return r_.read<std::uint16_t>("metadata value");
        case gguf_value_type::i16: return r_.read<std::int16_t>("metadata value");
        case gguf_value_type::u32: return r_.read<std::uint32_t>("metadata value");
        case gguf_value_type::i32: return r_.read<std::int32_t>("metadata value");
        case gguf_value_type::u64: return r_.read<std::uint64_t>("metadata value");
        case gguf_value_type::i64: return r_.read<std::int64_t>("metadata value");
        case gguf_value_type::f32: return r_.read<float>("metadata value");
        case gguf_value_type::f64: return r_.read<double>("metadata value");
        case gguf_value_type::boolean: {
            const auto b = r_.read<std::uint8_t>("metadata value");
            if (b > 1) fail("metadata '" + key + "': bool value " + std::to_string(b) + " is neither 0 nor 1");
            return b != 0;
        }
        case gguf_value_type::string: {
            std::string s = read_string("metadata string");
            if (valid_utf8(s)) return s;
            return nlohmann::json::binary(std::vector<std::uint8_t>(s.begin(), s.end()));
        }
        case gguf_value_type::array: {
            if (depth >= 8) fail("metadata '" + key + "': arrays nested deeper than 8");
            const auto elem = r_.read<std::uint32_t>("metadata array type");
            const auto count = r_.read<std::uint64_t>("metadata array length");
            if (elem > 12) fail("metadata '" + key + "': unknown array element type " + std::to_string(elem));
            if (count > r_.remaining() / min_size(elem))
                fail("metadata '" + key + "': array length " + std::to_string(count) + " is beyond the end of the file");
            nlohmann::json a = nlohmann::json::array();  // grows with what is read, not with count
            for (std::uint64_t i = 0; i < count; ++i) a.push_back(read_value(elem, key, depth + 1));
            return a;
        }
        }
        fail("metadata '" + key + "' has unknown value type " + std::to_string(type));
    }

    const std::byte* base_;
    byte_reader r_;
};

}  // namespace detail

// Parses GGUF bytes that owner keeps alive (a mapping; null when the caller guarantees it).
inline checkpoint parse_gguf(const std::byte* data, std::size_t size, const std::string& source,
                             std::shared_ptr<const void> owner = nullptr)
{
    return detail::gguf_parser(data, size, source).parse(std::move(owner));
}

inline checkpoint read_gguf(const std::string& path)
{
    auto file = std::make_shared<const mapped_file>(path);
    return parse_gguf(file->data(), file->size(), path, file);
}

// True when the bytes start like a GGUF file.
inline bool looks_like_gguf(const std::byte* data, std::size_t size)
{
    return size >= 4 && std::memcmp(data, "GGUF", 4) == 0;
}

}  // namespace sdlens
