#pragma once
// Products with GGUF block-quantized rows (Q8_0, Q4_0, Q4_K, Q6_K) and f16 rows, read in place:
// each block is decoded in registers (AVX2+FMA+F16C, chosen at run time) or into a block-sized
// buffer (elsewhere) and used at once, so no dequantized copy of a matrix is ever made.
//
// A weight is decoded to exactly the f32 value io/quant.hpp's dequantize_* gives (same operations
// in the same order: d * q, d * sc * q - dmin * m, (d * sc) * q); products and sums are then
// ordinary f32 arithmetic (Q4_K's row product regroups them per sub-block: dot_q4_k_avx2). The activations stay f32 (llama.cpp rounds them to 8-bit blocks
// instead): the result is the f32 product of the stored model, within the usual K u sum |w||x|.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sdlens/core/dot_kernels.hpp"
#include "sdlens/core/gemm_kernels.hpp"
#include "sdlens/io/half.hpp"
#include "sdlens/io/quant.hpp"

namespace sdlens::kernels {

// The stored formats these kernels read, and their block geometry.
enum class row_format { f16, q8_0, q4_0, q4_k, q6_k };

struct row_format_layout {
    int block_elems;
    int block_bytes;
};

constexpr row_format_layout layout_of(row_format f)
{
    switch (f) {
    case row_format::f16: return {8, 16};
    case row_format::q8_0: return {32, 34};
    case row_format::q4_0: return {32, 18};
    case row_format::q4_k: return {256, 144};
    case row_format::q6_k: return {256, 210};
    }
    return {1, 1};
}

// Decodes one block into dst (block_elems floats), as io/quant.hpp does.
inline void decode_block_plain(row_format f, const std::byte* src, float* dst)
{
    switch (f) {
    case row_format::f16:
        for (int i = 0; i < 8; ++i) {
            std::uint16_t b;
            std::memcpy(&b, src + 2 * i, 2);
            dst[i] = f16_to_float(b);
        }
        return;
    case row_format::q8_0: return dequantize_q8_0(src, dst, 32);
    case row_format::q4_0: return dequantize_q4_0(src, dst, 32);
    case row_format::q4_k: return dequantize_q4_k(src, dst, 256);
    case row_format::q6_k: return dequantize_q6_k(src, dst, 256);
    }
}

// One stored row of n elements (a whole number of blocks) times x, block by block.
inline float dot_row_plain(row_format f, const std::byte* row, const float* x, std::int64_t n)
{
    if (f == row_format::f16) {  // any length: no blocks to respect
        float s = 0;
        for (std::int64_t k = 0; k < n; ++k) {
            std::uint16_t b;
            std::memcpy(&b, row + 2 * k, 2);
            s += f16_to_float(b) * x[k];
        }
        return s;
    }
    const auto l = layout_of(f);
    alignas(32) float w[256];
    float s = 0;
    for (std::int64_t k = 0; k < n; k += l.block_elems, row += l.block_bytes) {
        decode_block_plain(f, row, w);
        s += dot_f32_plain(w, x + k, l.block_elems);
    }
    return s;
}

#ifdef SDLENS_X86_DISPATCH
#define SDLENS_AVX2_F16C_TARGET __attribute__((target("avx2,fma,f16c")))

inline bool has_avx2_fma_f16c()
{
    static const bool yes = has_avx2_fma() && __builtin_cpu_supports("f16c");
    return yes;
}

namespace quant_detail {

SDLENS_AVX2_F16C_TARGET inline float f16(const std::byte* p)
{
    std::uint16_t b;
    std::memcpy(&b, p, 2);
    return _cvtsh_ss(b);
}

// 8 unsigned bytes -> 8 floats.
SDLENS_AVX2_F16C_TARGET inline __m256 u8x8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }

// 8 six-bit Q6_K levels (bytes) -> q - 32 as floats.
SDLENS_AVX2_F16C_TARGET inline __m256 q6_levels(__m128i q6)
{
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(q6), _mm256_set1_epi32(32)));
}

// What decode_block_avx2 does with 8 decoded weights: add their products with x into one of
// four accumulators, or store them. (Functors, not lambdas: a lambda's body is not compiled for
// the enclosing function's target, and could not use the AVX2 intrinsics.)
struct accumulate_products {
    __m256* acc;
    const float* x;
    SDLENS_AVX2_F16C_TARGET void operator()(int off, __m256 w) const
    {
        __m256& a = acc[(off / 8) & 3];
        a = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + off), a);
    }
};
struct store_weights {
    float* dst;
    SDLENS_AVX2_F16C_TARGET void operator()(int off, __m256 w) const { _mm256_storeu_ps(dst + off, w); }
};

// Calls emit(offset, w) with the block's weights, 8 consecutive ones at a time (offset: the first
// one's index in the block). Each w lane equals dequantize_*'s value for that weight.
template <class Emit>
SDLENS_AVX2_F16C_TARGET __attribute__((always_inline)) inline void decode_block_avx2(row_format f, const std::byte* blk,
                                                                                       const Emit& emit)
{
    const auto* u = reinterpret_cast<const std::uint8_t*>(blk);
    switch (f) {
    case row_format::f16:
        emit(0, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u))));
        return;
    case row_format::q8_0: {
        const __m256 d = _mm256_set1_ps(f16(blk));
#pragma GCC unroll 4
        for (int j = 0; j < 32; j += 8) {
            const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + 2 + j));
            emit(j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
        return;
    }
    case row_format::q4_0: {
        const __m256 d = _mm256_set1_ps(f16(blk));
        const __m256 eight = _mm256_set1_ps(8.0f);
        const __m128i nib = _mm_set1_epi8(0x0F);
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + 2));
        const __m128i lo = _mm_and_si128(q, nib), hi = _mm_and_si128(_mm_srli_epi16(q, 4), nib);
        // (nibble - 8) is exact in float, so d * (nibble - 8) is the decoder's one rounding.
        emit(0, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_to_ps(lo), eight)));
        emit(8, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), eight)));
        emit(16, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_to_ps(hi), eight)));
        emit(24, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), eight)));
        return;
    }
    case row_format::q4_k: {
        const float d = f16(blk), dmin = f16(blk + 2);
        const std::uint8_t* scales = u + 4;
        const std::uint8_t* q = u + 16;
        const __m128i nib = _mm_set1_epi8(0x0F);
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
            std::uint8_t sc, m;
            sdlens::detail::q4_k_scale_min(is, scales, sc, m);
            const __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(dmin * m);
            sdlens::detail::q4_k_scale_min(is + 1, scales, sc, m);
            const __m256 d2 = _mm256_set1_ps(d * sc), m2 = _mm256_set1_ps(dmin * m);
#pragma GCC unroll 2
            for (int l = 0; l < 32; l += 16) {
                const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + l));
                const __m128i lo = _mm_and_si128(b, nib), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nib);
                // d1 * q - m1 with two roundings, as the decoder (no fused multiply-subtract).
                emit(j + l, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_to_ps(lo)), m1));
                emit(j + l + 8, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_to_ps(_mm_srli_si128(lo, 8))), m1));
                emit(j + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d2, u8x8_to_ps(hi)), m2));
                emit(j + 32 + l + 8, _mm256_sub_ps(_mm256_mul_ps(d2, u8x8_to_ps(_mm_srli_si128(hi, 8))), m2));
            }
        }
        return;
    }
    case row_format::q6_k: {
        const std::uint8_t* ql = u;
        const std::uint8_t* qh = u + 128;
        const auto* sc = reinterpret_cast<const std::int8_t*>(u + 192);
        const float d = f16(blk + 208);
        const __m128i nib = _mm_set1_epi8(0x0F), three = _mm_set1_epi8(3);
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8) {
            const int base = 128 * half;
#pragma GCC unroll 4
            for (int l = 0; l < 32; l += 8) {
                const int is = l / 16;
                const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l));
                const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l + 32));
                const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l));
                // Two bits of h per weight, moved to bits 4-5 of its byte (16-bit shifts: the masks
                // keep bits from crossing into the neighbouring byte).
                const __m128i h1 = _mm_slli_epi16(_mm_and_si128(h, three), 4);
                const __m128i h2 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 2), three), 4);
                const __m128i h3 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 4), three), 4);
                const __m128i h4 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 6), three), 4);
                const __m128i q1 = _mm_or_si128(_mm_and_si128(a, nib), h1);
                const __m128i q2 = _mm_or_si128(_mm_and_si128(b, nib), h2);
                const __m128i q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), nib), h3);
                const __m128i q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(b, 4), nib), h4);
                emit(base + l, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 0]), q6_levels(q1)));
                emit(base + l + 32, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 2]), q6_levels(q2)));
                emit(base + l + 64, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 4]), q6_levels(q3)));
                emit(base + l + 96, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 6]), q6_levels(q4)));
            }
        }
        return;
    }
    }
}

// Elements of a row of n that whole blocks hold: all of them, except an f16 row's last n % 8,
// which the callers take one by one.
inline std::int64_t whole_blocks(row_format f, std::int64_t n) { return n / layout_of(f).block_elems * layout_of(f).block_elems; }

template <row_format F>
SDLENS_AVX2_F16C_TARGET float dot_row_avx2(const std::byte* row, const float* x, std::int64_t n)
{
    constexpr auto l = layout_of(F);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const std::int64_t full = whole_blocks(F, n);
    const std::byte* blk = row;
    const std::uintptr_t ahead = prefetch_ahead_bytes();
    for (std::int64_t k = 0; k < full; k += l.block_elems, blk += l.block_bytes) {
        for (int c = 0; c < l.block_bytes; c += 64) prefetch_ahead(blk + c, ahead);
        decode_block_avx2(F, blk, accumulate_products{acc, x + k});
    }
    float s = hsum_avx2(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (std::int64_t k = full; k < n; ++k) s += f16(row + 2 * k) * x[k];  // only f16 rows have a tail
    return s;
}

// Q4_K's row product, regrouped: within a sub-block of 32 every weight is d1 * q - m1, so its part
// is d1 * sum(q x) - m1 * sum(x), and sum(x) over each sub-block (x_sums, K / 32 of them) is the
// same for every row of a matrix. Per 8 weights that leaves a conversion and one FMA, where the
// decoded form needs two more operations: generation with Q4_K weights is bound by this, not by
// memory. The rounding differs from the decoded form's (error <= (n + 1) u sum (|d1 q| + |m1|)|x|
// instead of sum |w x|), still within f32 accuracy of the stored model.
SDLENS_AVX2_F16C_TARGET inline float dot_q4_k_avx2(const std::byte* row, const float* x, const float* x_sums, std::int64_t n)
{
    const __m128i nib = _mm_set1_epi8(0x0F);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float offsets = 0;
    const std::uintptr_t ahead = prefetch_ahead_bytes();
    for (std::int64_t k = 0; k < n; k += 256, row += 144) {
        prefetch_ahead(row, ahead);
        prefetch_ahead(row + 64, ahead);
        prefetch_ahead(row + 128, ahead);
        const auto* u = reinterpret_cast<const std::uint8_t*>(row);
        const float d = f16(row), dmin = f16(row + 2);
        const std::uint8_t* q = u + 16;
        const float* xs = x_sums + k / 32;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
            std::uint8_t sc1, m1, sc2, m2;
            sdlens::detail::q4_k_scale_min(is, u + 4, sc1, m1);
            sdlens::detail::q4_k_scale_min(is + 1, u + 4, sc2, m2);
            const float* xb = x + k + j;
            __m256 s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
#pragma GCC unroll 2
            for (int l = 0; l < 32; l += 16) {
                const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + l));
                const __m128i lo = _mm_and_si128(b, nib), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nib);
                s1 = _mm256_fmadd_ps(u8x8_to_ps(lo), _mm256_loadu_ps(xb + l), s1);
                s1 = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xb + l + 8), s1);
                s2 = _mm256_fmadd_ps(u8x8_to_ps(hi), _mm256_loadu_ps(xb + 32 + l), s2);
                s2 = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xb + 32 + l + 8), s2);
            }
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d * sc1), s1, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d * sc2), s2, acc1);
            offsets += dmin * m1 * xs[is] + dmin * m2 * xs[is + 1];
        }
    }
    return hsum_avx2(_mm256_add_ps(acc0, acc1)) - offsets;
}

// Decodes elements [k0, k0 + kc) of a row (k0 a whole number of blocks; kc too, or up to the
// row's end) to dst.
SDLENS_AVX2_F16C_TARGET inline void decode_span_avx2(row_format f, const std::byte* row, std::int64_t k0, std::int64_t kc,
                                                     float* dst)
{
    const auto l = layout_of(f);
    const std::byte* blk = row + k0 / l.block_elems * l.block_bytes;
    const std::int64_t full = whole_blocks(f, kc);
    for (std::int64_t k = 0; k < full; k += l.block_elems, blk += l.block_bytes) decode_block_avx2(f, blk, store_weights{dst + k});
    for (std::int64_t k = full; k < kc; ++k) dst[k] = f16(row + 2 * (k0 + k));  // only f16 rows have a tail
}

}  // namespace quant_detail
#endif  // SDLENS_X86_DISPATCH

// Sums of x over consecutive runs of 32 (n a multiple of 32): what dot_row's Q4_K kernel takes as
// x_sums, computed once for all rows of a matrix.
inline void sums_of_32(const float* x, std::int64_t n, float* sums)
{
    for (std::int64_t j = 0; j < n / 32; ++j) {
        float s = 0;
        for (int i = 0; i < 32; ++i) s += x[32 * j + i];
        sums[j] = s;
    }
}

// One stored row of n elements (a whole number of blocks of f) times x. x_sums (optional, Q4_K
// only): sums_of_32 of x, when the caller multiplies many rows by one x.
inline float dot_row(row_format f, const std::byte* row, const float* x, std::int64_t n, const float* x_sums = nullptr)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma_f16c()) {
        using namespace quant_detail;
        if (f == row_format::q4_k) {
            if (x_sums) return dot_q4_k_avx2(row, x, x_sums, n);
            std::vector<float> sums(static_cast<std::size_t>(n / 32));
            sums_of_32(x, n, sums.data());
            return dot_q4_k_avx2(row, x, sums.data(), n);
        }
        switch (f) {
        case row_format::f16: return dot_row_avx2<row_format::f16>(row, x, n);
        case row_format::q8_0: return dot_row_avx2<row_format::q8_0>(row, x, n);
        case row_format::q4_0: return dot_row_avx2<row_format::q4_0>(row, x, n);
        case row_format::q4_k: return dot_row_avx2<row_format::q4_k>(row, x, n);
        case row_format::q6_k: return dot_row_avx2<row_format::q6_k>(row, x, n);
        }
    }
#endif
    return dot_row_plain(f, row, x, n);
}

#ifdef SDLENS_X86_DISPATCH
// Y (T x N, row stride ldy) = X (T x K, row stride ldx) W^T for N stored rows of format f, by the
// packed kernels: while a block of weights is packed, each row's k block (gemm_kc values, whole
// blocks of every format: 256 is a multiple of 8, 32 and 256) is decoded into a small buffer of
// f32 and packed from there, so the decode is paid once per weight per product. False when the
// CPU has neither AVX-512 nor AVX2+FMA+F16C.
inline bool gemm_nt_rows(const float* X, std::int64_t ldx, std::int64_t T, row_format f, const std::byte* const* w,
                         std::int64_t N, std::int64_t K, float* Y, std::int64_t ldy, bool parallel, gemm_workspace& ws)
{
    using namespace gemm_detail;
    static_assert(gemm_kc % 256 == 0, "a k block must hold whole super-blocks");
    if (!has_avx2_fma_f16c()) return false;
    if (T <= 0 || N <= 0) return true;
    if (K <= 0) {
        for (std::int64_t t = 0; t < T; ++t) std::fill(Y + t * ldy, Y + t * ldy + N, 0.0f);
        return true;
    }
    const auto micro_avx2 = [](int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy_,
                               std::int64_t cols, bool acc) { micro_rows_f32_avx2(m, a, b, kc, y, ldy_, cols, acc); };
    const auto micro_avx512 = [](int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy_,
                                 std::int64_t cols, bool acc) {
        micro_rows_f32(m, a, b, kc, y, ldy_, first_lanes(cols), first_lanes(std::max<std::int64_t>(0, cols - 16)), acc);
    };
    // Decodes rows [n, n + rows), columns [k0, k0 + kc), then packs them as f32 rows.
    const auto pack = [&](std::int64_t n, int rows, std::int64_t k0, std::int64_t kc, float* dst, auto&& pack_f32) {
        alignas(64) float decoded[gemm_nr][gemm_kc];
        const float* ptr[gemm_nr];
        for (int r = 0; r < rows; ++r) {
            quant_detail::decode_span_avx2(f, w[n + r], k0, kc, decoded[r]);
            ptr[r] = decoded[r];
        }
        pack_f32(ptr, rows, kc, dst);
    };
    const auto pack_x = [&](std::int64_t t0, int m, float* dst) { pack_x_panel_f32(X, ldx, t0, m, K, dst); };
    if (has_avx512()) {
        gemm_driver<gemm_mr, gemm_nr, float>(
            T, N, K, Y, ldy, parallel, ws.x_f32, ws.w_f32, pack_x,
            [&](std::int64_t n, int rows, std::int64_t k0, std::int64_t kc, float* dst) {
                pack(n, rows, k0, kc, dst, [](const float* const* p, int r, std::int64_t c, float* d) { pack_w_f32(p, r, 0, c, d); });
            },
            micro_avx512);
    } else {
        gemm_driver<gemm_mr_avx2, gemm_nr_avx2, float>(
            T, N, K, Y, ldy, parallel, ws.x_f32, ws.w_f32, pack_x,
            [&](std::int64_t n, int rows, std::int64_t k0, std::int64_t kc, float* dst) {
                pack(n, rows, k0, kc, dst,
                     [](const float* const* p, int r, std::int64_t c, float* d) { pack_w_f32_avx2(p, r, 0, c, d); });
            },
            micro_avx2);
    }
    return true;
}
#endif

}  // namespace sdlens::kernels
