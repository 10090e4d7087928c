#pragma once
// GGUF block formats, decoded and encoded block by block. Layouts follow ggml's block_q8_0,
// block_q4_0, block_q4_K and block_q6_K (little-endian, f16 scales); the decoders were checked
// against ggml-quants.c's dequantize_row_* and the encoders invert them.
#include <algorithm>
#include <cmath>
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

// Encoders. Like ggml's reference quantizers they round each value to the nearest level; unlike
// them they quantize against the f16 scale as stored (rounded up to the next f16), so no value
// falls outside the representable range and the error stays within half a step. The output is
// therefore not bit-identical to ggml's, only as close or closer.
namespace detail {
inline void write_f16(std::byte* p, std::uint16_t bits) { std::memcpy(p, &bits, 2); }

// The smallest f16 not below x (x >= 0, finite); scales must cover the values they encode.
inline std::uint16_t f16_not_below(float x)
{
    std::uint16_t h = float_to_f16(x);
    if (f16_to_float(h) < x) ++h;  // positive halves are ordered like their bit patterns
    return h;
}

inline int round_clamp(float v, int lo, int hi)
{
    return std::clamp(static_cast<int>(std::lround(v)), lo, hi);
}
}  // namespace detail

// Q8_0: d = max|x| / 127, q = round(x / d).
inline void quantize_q8_0(const float* src, std::byte* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 32; ++b, src += 32, dst += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(src[j]));
        const std::uint16_t dh = detail::f16_not_below(amax / 127.0f);
        const float d = f16_to_float(dh);
        detail::write_f16(dst, dh);
        for (int j = 0; j < 32; ++j)
            dst[2 + j] = static_cast<std::byte>(static_cast<std::int8_t>(d > 0 ? detail::round_clamp(src[j] / d, -127, 127) : 0));
    }
}

// Q4_0: as ggml, the value of largest magnitude maps exactly to level -8 (d = -max / 8), so the
// opposite extreme may clip to level 7: the error is at most one step |d| there, half elsewhere.
inline void quantize_q4_0(const float* src, std::byte* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 32; ++b, src += 32, dst += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; ++j)
            if (std::fabs(src[j]) > amax) {
                amax = std::fabs(src[j]);
                max = src[j];
            }
        std::uint16_t dh = detail::f16_not_below(amax / 8.0f);
        if (max > 0) dh |= 0x8000;  // d = -max / 8 carries the opposite sign
        const float d = f16_to_float(dh);
        detail::write_f16(dst, dh);
        for (int j = 0; j < 16; ++j) {
            const int lo = d != 0 ? detail::round_clamp(src[j] / d + 8.0f, 0, 15) : 8;
            const int hi = d != 0 ? detail::round_clamp(src[j + 16] / d + 8.0f, 0, 15) : 8;
            dst[2 + j] = static_cast<std::byte>(lo | (hi << 4));
        }
    }
}

// Q4_K: each sub-block of 32 gets x ~ d*sc*q - dmin*m with q in [0, 15] and six-bit sc, m.
// The offset m covers the sub-block's minimum (clamped to <= 0 as ggml does) and the scale its
// range; both are rounded up so the sub-block's values stay inside the levels.
inline void quantize_q4_k(const float* src, std::byte* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 256; ++b, src += 256, dst += 144) {
        float lows[8], highs[8];
        float max_low = 0.0f;
        for (int s = 0; s < 8; ++s) {
            float lo = 0.0f, hi = 0.0f;
            for (int l = 0; l < 32; ++l) {
                lo = std::min(lo, src[32 * s + l]);
                hi = std::max(hi, src[32 * s + l]);
            }
            lows[s] = -lo;
            highs[s] = hi;
            max_low = std::max(max_low, -lo);
        }
        const std::uint16_t dminh = detail::f16_not_below(max_low / 63.0f);
        const float dmin = f16_to_float(dminh);
        std::uint8_t m[8], sc[8];
        float step[8], max_step = 0.0f;
        for (int s = 0; s < 8; ++s) {
            m[s] = dmin > 0 ? static_cast<std::uint8_t>(std::min(63.0f, std::ceil(lows[s] / dmin))) : 0;
            step[s] = (highs[s] + dmin * m[s]) / 15.0f;
            max_step = std::max(max_step, step[s]);
        }
        const std::uint16_t dh = detail::f16_not_below(max_step / 63.0f);
        const float d = f16_to_float(dh);
        for (int s = 0; s < 8; ++s) sc[s] = d > 0 ? static_cast<std::uint8_t>(std::min(63.0f, std::ceil(step[s] / d))) : 0;

        detail::write_f16(dst, dh);
        detail::write_f16(dst + 2, dminh);
        auto* scales = reinterpret_cast<std::uint8_t*>(dst + 4);
        std::fill(scales, scales + 12, std::uint8_t{0});
        for (int j = 0; j < 8; ++j) {  // inverse of q4_k_scale_min
            if (j < 4) {
                scales[j] = sc[j];
                scales[j + 4] = m[j];
            } else {
                scales[j + 4] = static_cast<std::uint8_t>((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
                scales[j - 4] |= static_cast<std::uint8_t>((sc[j] >> 4) << 6);
                scales[j] |= static_cast<std::uint8_t>((m[j] >> 4) << 6);
            }
        }
        std::uint8_t levels[256];
        for (int s = 0; s < 8; ++s) {
            const float ds = d * sc[s], ms = dmin * m[s];
            for (int l = 0; l < 32; ++l)
                levels[32 * s + l] = static_cast<std::uint8_t>(ds > 0 ? detail::round_clamp((src[32 * s + l] + ms) / ds, 0, 15) : 0);
        }
        auto* q = reinterpret_cast<std::uint8_t*>(dst + 16);
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(levels[j + l] | (levels[j + l + 32] << 4));
    }
}

// Q6_K: each sub-block of 16 gets x ~ d*sc*(q - 32) with q in [0, 63] and an int8 sc; the
// sub-block's scale maps its largest magnitude to level 31 and is rounded up to a multiple of d.
inline void quantize_q6_k(const float* src, std::byte* dst, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / 256; ++b, src += 256, dst += 210) {
        float step[16], max_step = 0.0f;
        for (int s = 0; s < 16; ++s) {
            float amax = 0.0f;
            for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(src[16 * s + l]));
            step[s] = amax / 31.0f;
            max_step = std::max(max_step, step[s]);
        }
        const std::uint16_t dh = detail::f16_not_below(max_step / 127.0f);
        const float d = f16_to_float(dh);
        auto* ql = reinterpret_cast<std::uint8_t*>(dst);
        auto* qh = ql + 128;
        auto* sc = reinterpret_cast<std::int8_t*>(dst + 192);
        std::uint8_t levels[256];
        for (int s = 0; s < 16; ++s) {
            sc[s] = static_cast<std::int8_t>(d > 0 ? std::min(127.0f, std::ceil(step[s] / d)) : 0);
            const float ds = d * sc[s];
            for (int l = 0; l < 16; ++l)
                levels[16 * s + l] = static_cast<std::uint8_t>(ds > 0 ? detail::round_clamp(src[16 * s + l] / ds, -32, 31) + 32 : 32);
        }
        detail::write_f16(dst + 208, dh);
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                const std::uint8_t* L = levels + j + l;
                ql[l] = static_cast<std::uint8_t>((L[0] & 0xF) | ((L[64] & 0xF) << 4));
                ql[l + 32] = static_cast<std::uint8_t>((L[32] & 0xF) | ((L[96] & 0xF) << 4));
                qh[l] = static_cast<std::uint8_t>((L[0] >> 4) | ((L[32] >> 4) << 2) | ((L[64] >> 4) << 4) | ((L[96] >> 4) << 6));
            }
    }
}

}  // namespace sdlens
