#pragma once
// Element types of stored weights and how to turn a run of them into float. Block-quantized types
// (GGUF Q8_0, Q4_0, Q4_K, Q6_K) are only ever decoded whole blocks at a time, along a row.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <Eigen/Core>

#include "sdlens/core/dot_kernels.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/io/half.hpp"
#include "sdlens/io/quant.hpp"

namespace sdlens {

enum class dtype { f32, f16, bf16, q8_0, q4_0, q4_k, q6_k };

inline const char* dtype_name(dtype t)
{
    switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::q8_0: return "q8_0";
    case dtype::q4_0: return "q4_0";
    case dtype::q4_k: return "q4_k";
    case dtype::q6_k: return "q6_k";
    }
    return "?";
}

// Elements per block and bytes per block; plain types are blocks of one element.
struct dtype_layout {
    std::int64_t block_elems;
    std::int64_t block_bytes;
};

inline dtype_layout layout_of(dtype t)
{
    switch (t) {
    case dtype::f32: return {1, 4};
    case dtype::f16: return {1, 2};
    case dtype::bf16: return {1, 2};
    case dtype::q8_0: return {32, 34};    // f16 scale + 32 int8
    case dtype::q4_0: return {32, 18};    // f16 scale + 16 bytes of nibbles
    case dtype::q4_k: return {256, 144};  // f16 d, f16 dmin, 12 bytes scales, 128 bytes nibbles
    case dtype::q6_k: return {256, 210};  // 128 low nibbles, 64 high bits, 16 scales, f16 d
    }
    return {1, 1};
}

inline bool is_block_quantized(dtype t) { return layout_of(t).block_elems > 1; }

// Bytes taken by n consecutive elements (n must be a whole number of blocks); -1 when it is not.
inline std::int64_t bytes_for(dtype t, std::int64_t n)
{
    const auto l = layout_of(t);
    if (n < 0 || n % l.block_elems != 0) return -1;
    return n / l.block_elems * l.block_bytes;
}


// Decodes n elements (a whole number of blocks for quantized types) starting at src.
inline void dequantize(dtype t, const std::byte* src, float* dst, std::int64_t n)
{
    switch (t) {
    case dtype::f32: std::memcpy(dst, src, static_cast<std::size_t>(n) * 4); return;
    case dtype::f16:
        for (std::int64_t i = 0; i < n; ++i) {
            std::uint16_t b;
            std::memcpy(&b, src + 2 * i, 2);
            dst[i] = f16_to_float(b);
        }
        return;
    case dtype::bf16:
        if (reinterpret_cast<std::uintptr_t>(src) % alignof(std::uint16_t) == 0) {
            kernels::bf16_to_f32(reinterpret_cast<const std::uint16_t*>(src), dst, n);
            return;
        }
        for (std::int64_t i = 0; i < n; ++i) {
            std::uint16_t b;
            std::memcpy(&b, src + 2 * i, 2);
            dst[i] = bf16_to_float(b);
        }
        return;
    case dtype::q8_0: dequantize_q8_0(src, dst, n); return;
    case dtype::q4_0: dequantize_q4_0(src, dst, n); return;
    case dtype::q4_k: dequantize_q4_k(src, dst, n); return;
    case dtype::q6_k: dequantize_q6_k(src, dst, n); return;
    }
}

// Reads one element of a plain (non-block) type; used for strided access to transposed storage.
inline float load_element(dtype t, const std::byte* base, std::int64_t index)
{
    switch (t) {
    case dtype::f32: {
        float f;
        std::memcpy(&f, base + 4 * index, 4);
        return f;
    }
    case dtype::f16: {
        std::uint16_t b;
        std::memcpy(&b, base + 2 * index, 2);
        return f16_to_float(b);
    }
    case dtype::bf16: {
        std::uint16_t b;
        std::memcpy(&b, base + 2 * index, 2);
        return bf16_to_float(b);
    }
    default: throw input_error(std::string("element access into block-quantized ") + dtype_name(t));
    }
}

}  // namespace sdlens
