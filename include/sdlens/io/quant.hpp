#pragma once
// GGUF block formats, decoded block by block. Layouts follow ggml's block_q8_0, block_q4_0,
// block_q4_K and block_q6_K (little-endian, f16 scales).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "sdlens/io/half.hpp"

namespace sdlens {

namespace detail {
inline float read_f16(const std::byte* p)
{
    std::uint16_t b;
    std::memcpy(&b, p, 2);
    return f16_to_float(b);
}
}  // namespace detail

// Q8_0: per block of 32, an f16 scale d then 32 int8 q; x = d * q.
inline void dequantize_q8_0(const std::byte* src, float* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 32; ++b, src += 34, dst += 32) {
        const float d = detail::read_f16(src);
        for (int j = 0; j < 32; ++j) dst[j] = d * static_cast<float>(static_cast<std::int8_t>(src[2 + j]));
    }
}

// Q4_0: per block of 32, an f16 scale d then 16 bytes; element j < 16 is the low nibble of
// byte j, element j + 16 its high nibble; x = d * (nibble - 8).
inline void dequantize_q4_0(const std::byte* src, float* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 32; ++b, src += 18, dst += 32) {
        const float d = detail::read_f16(src);
        for (int j = 0; j < 16; ++j) {
            const auto q = static_cast<std::uint8_t>(src[2 + j]);
            dst[j] = d * static_cast<float>((q & 0x0F) - 8);
            dst[j + 16] = d * static_cast<float>((q >> 4) - 8);
        }
    }
}

namespace detail {
// Q4_K packs 8 six-bit (scale, min) pairs into 12 bytes.
inline void q4_k_scale_min(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m)
{
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}
}  // namespace detail

// Q4_K: per super-block of 256, f16 d and dmin, 12 bytes of packed scales/mins, 128 bytes of
// nibbles; each 64 elements use two sub-blocks: low nibbles then high nibbles of 32 bytes;
// x = d*sc*q - dmin*m.
inline void dequantize_q4_k(const std::byte* src, float* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 256; ++b, src += 144) {
        const float d = detail::read_f16(src);
        const float dmin = detail::read_f16(src + 2);
        const auto* scales = reinterpret_cast<const std::uint8_t*>(src + 4);
        const auto* q = reinterpret_cast<const std::uint8_t*>(src + 16);
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
            std::uint8_t sc, m;
            detail::q4_k_scale_min(is, scales, sc, m);
            const float d1 = d * sc, m1 = dmin * m;
            detail::q4_k_scale_min(is + 1, scales, sc, m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

// Q6_K: per super-block of 256, 128 bytes of low nibbles, 64 bytes of high 2-bit pairs,
// 16 int8 scales, f16 d; x = d * scale * (q - 32).
inline void dequantize_q6_k(const std::byte* src, float* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 256; ++b, src += 210) {
        const auto* ql = reinterpret_cast<const std::uint8_t*>(src);
        const auto* qh = ql + 128;
        const auto* sc = reinterpret_cast<const std::int8_t*>(src + 192);
        const float d = detail::read_f16(src + 208);
        for (int half = 0; half < 2; ++half, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * sc[is + 0] * static_cast<float>(q1);
                dst[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
                dst[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
                dst[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
            }
        }
    }
}

}  // namespace sdlens
