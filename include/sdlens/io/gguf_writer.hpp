#pragma once
// Writes GGUF v3 files: typed key/values and tensors of any type sdlens reads, quantizing from
// float for the block types. Used to build test models and by write_gguf_checkpoint.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "sdlens/core/error.hpp"
#include "sdlens/io/dtype.hpp"
#include "sdlens/io/gguf.hpp"

namespace sdlens {

// Encodes n floats (a whole number of blocks for block types) as t.
inline std::vector<std::byte> encode_values(dtype t, const float* src, std::int64_t n)
{
    const std::int64_t nbytes = bytes_for(t, n);
    if (nbytes < 0)
        throw input_error(std::string("cannot encode ") + std::to_string(n) + " values as " + dtype_name(t) +
                          ": not a whole number of blocks");
    std::vector<std::byte> out(static_cast<std::size_t>(nbytes));
    switch (t) {
    case dtype::f32: std::memcpy(out.data(), src, out.size()); break;
    case dtype::f16:
        for (std::int64_t i = 0; i < n; ++i) {
            const std::uint16_t b = float_to_f16(src[i]);
            std::memcpy(out.data() + 2 * i, &b, 2);
        }
        break;
    case dtype::bf16:
        for (std::int64_t i = 0; i < n; ++i) {
            const std::uint16_t b = float_to_bf16(src[i]);
            std::memcpy(out.data() + 2 * i, &b, 2);
        }
        break;
    case dtype::q8_0: quantize_q8_0(src, out.data(), n); break;
    case dtype::q4_0: quantize_q4_0(src, out.data(), n); break;
    case dtype::q4_k: quantize_q4_k(src, out.data(), n); break;
    case dtype::q6_k: quantize_q6_k(src, out.data(), n); break;
    }
    return out;
}

class gguf_writer {
public:
    explicit gguf_writer(std::uint32_t alignment = 32) : alignment_(alignment)
    {
        if (alignment != 32) add_u32("general.alignment", alignment);
    }

    void add_u8(const std::string& key, std::uint8_t v) { scalar(key, gguf_value_type::u8, v); }
    void add_i8(const std::string& key, std::int8_t v) { scalar(key, gguf_value_type::i8, v); }
    void add_u16(const std::string& key, std::uint16_t v) { scalar(key, gguf_value_type::u16, v); }
    void add_i16(const std::string& key, std::int16_t v) { scalar(key, gguf_value_type::i16, v); }
    void add_u32(const std::string& key, std::uint32_t v) { scalar(key, gguf_value_type::u32, v); }
    void add_i32(const std::string& key, std::int32_t v) { scalar(key, gguf_value_type::i32, v); }
    void add_u64(const std::string& key, std::uint64_t v) { scalar(key, gguf_value_type::u64, v); }
    void add_i64(const std::string& key, std::int64_t v) { scalar(key, gguf_value_type::i64, v); }
    void add_f32(const std::string& key, float v) { scalar(key, gguf_value_type::f32, v); }
    void add_f64(const std::string& key, double v) { scalar(key, gguf_value_type::f64, v); }
    void add_bool(const std::string& key, bool v) { scalar(key, gguf_value_type::boolean, std::uint8_t(v ? 1 : 0)); }
    void add_string(const std::string& key, std::string_view v)
    {
        begin_kv(key, gguf_value_type::string);
        put_string(meta_, v);
    }
    void add_string_array(const std::string& key, const std::vector<std::string>& v)
    {
        begin_array(key, gguf_value_type::string, v.size());
        for (const auto& s : v) put_string(meta_, s);
    }
    void add_f32_array(const std::string& key, const std::vector<float>& v) { array(key, gguf_value_type::f32, v); }
    void add_i32_array(const std::string& key, const std::vector<std::int32_t>& v) { array(key, gguf_value_type::i32, v); }
    // A key whose value bytes the caller has encoded (tests build nested arrays and odd types).
    void add_raw(const std::string& key, std::uint32_t type, const std::vector<std::byte>& value)
    {
        put_string(meta_, key);
        put(meta_, type);
        meta_.insert(meta_.end(), value.begin(), value.end());
        ++kv_count_;
    }

    // shape is row-major, outermost first (written to the file reversed, as ggml's ne).
    void add_tensor(const std::string& name, dtype t, const std::vector<std::int64_t>& shape, const float* values)
    {
        std::int64_t n = 1;
        for (auto s : shape) n *= s;
        for (std::int64_t i = 0; i < n; ++i)
            if (!std::isfinite(values[i])) throw input_error("tensor '" + name + "' holds a value that is not finite");
        add_tensor_bytes(name, t, shape, encode_values(t, values, n));
    }
    void add_tensor_bytes(const std::string& name, dtype t, const std::vector<std::int64_t>& shape, std::vector<std::byte> bytes)
    {
        const std::uint64_t offset = (data_.size() + alignment_ - 1) / alignment_ * alignment_;
        data_.resize(static_cast<std::size_t>(offset));
        data_.insert(data_.end(), bytes.begin(), bytes.end());
        put_string(infos_, name);
        put(infos_, static_cast<std::uint32_t>(shape.size()));
        for (auto it = shape.rbegin(); it != shape.rend(); ++it) put(infos_, static_cast<std::uint64_t>(*it));
        put(infos_, ggml_type_id(t));
        put(infos_, offset);
        ++tensor_count_;
    }

    std::vector<std::byte> bytes() const
    {
        std::vector<std::byte> out;
        put(out, std::uint32_t{0x46554747u});  // "GGUF"
        put(out, std::uint32_t{3});
        put(out, tensor_count_);
        put(out, kv_count_);
        out.insert(out.end(), meta_.begin(), meta_.end());
        out.insert(out.end(), infos_.begin(), infos_.end());
        out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_);
        out.insert(out.end(), data_.begin(), data_.end());
        return out;
    }

    void write(const std::string& path) const
    {
        const auto b = bytes();
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        if (!f) fail_input(path, "cannot open for writing");
        f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
        if (!f) fail_input(path, "write failed");
    }

private:
    template <class T>
    static void put(std::vector<std::byte>& out, T v)
    {
        const auto n = out.size();
        out.resize(n + sizeof(T));
        std::memcpy(out.data() + n, &v, sizeof(T));
    }
    static void put_string(std::vector<std::byte>& out, std::string_view s)
    {
        put(out, static_cast<std::uint64_t>(s.size()));
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        out.insert(out.end(), p, p + s.size());
    }
    void begin_kv(const std::string& key, gguf_value_type t)
    {
        put_string(meta_, key);
        put(meta_, static_cast<std::uint32_t>(t));
        ++kv_count_;
    }
    void begin_array(const std::string& key, gguf_value_type elem, std::size_t n)
    {
        begin_kv(key, gguf_value_type::array);
        put(meta_, static_cast<std::uint32_t>(elem));
        put(meta_, static_cast<std::uint64_t>(n));
    }
    template <class T>
    void scalar(const std::string& key, gguf_value_type t, T v)
    {
        begin_kv(key, t);
        put(meta_, v);
    }
    template <class T>
    void array(const std::string& key, gguf_value_type t, const std::vector<T>& v)
    {
        begin_array(key, t, v.size());
        for (const auto& x : v) put(meta_, x);
    }

    std::uint64_t alignment_;
    std::uint64_t tensor_count_ = 0, kv_count_ = 0;
    std::vector<std::byte> meta_, infos_, data_;
};

}  // namespace sdlens
