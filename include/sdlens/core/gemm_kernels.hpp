#pragma once
// Y = X W^T for prompts (many rows of X) with AVX-512 or AVX2+FMA, chosen at run time so that a
// build without -march flags (where Eigen's GEMM is SSE-only) still multiplies at close to the FMA
// peak.
// X is row-major float (T x K); W is N stored rows (f32 or bf16) given by pointers, each
// contiguous along K, as the dot kernels take them.
//
// Layout, as in BLIS: X is packed once per product into panels of <= gemm_mr rows, transposed so
// that one k step of a panel is gemm_mr consecutive values (broadcast one by one); for each block
// of nc weight rows and kc columns, the weights are packed, transposed, into micro-panels of 32
// rows (two zmm vectors per k step). The micro-kernel keeps a gemm_mr x 32 tile of Y in 28 zmm
// accumulators: each k step is 2 vector loads, gemm_mr broadcasts and 2 gemm_mr FMAs. A panel of X
// (kc x gemm_mr, 14 KB) stays in L1 while it meets every weight micro-panel of the block (in L2);
// the weights are read from memory once per product. With AVX2 (16 ymm registers) the micro-tile
// is 6 x 16, as BLIS's Haswell kernel: 12 accumulators, 2 weight vectors and 1 broadcast.
//
// Two kernels:
//  - f32: activations and accumulation in f32, bf16 weights widened exactly while packing;
//    the result is an ordinary f32 product (error of order K * eps * sum |x||w|).
//  - bf16 activations (opt in): X rounded to bf16 (nearest even), bf16 weights, VDPBF16PS
//    accumulating pairs of products in f32: twice the f32 rate, as llama.cpp does for BF16
//    models, at the cost of rounding every activation to 8 significant bits (<= 2^-8 relative).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sdlens/core/dot_kernels.hpp"
#include "sdlens/core/threads.hpp"

#ifdef SDLENS_X86_DISPATCH
#define SDLENS_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define SDLENS_AVX512BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

namespace sdlens::kernels {

// Packing buffers a caller keeps between products, so that each product does not fault in (and
// zero) fresh pages: the packed X (up to T x K values), and a packed weight block per thread.
struct gemm_workspace {
    std::vector<float> x_f32;
    std::vector<std::uint32_t> x_bf16;
    std::vector<std::vector<float>> w_f32;
    std::vector<std::vector<std::uint32_t>> w_bf16;
};

#ifdef SDLENS_X86_DISPATCH
// GCC 12's AVX-512 intrinsics pass an uninitialized vector as the unused merge source of their
// masked builtins, which -Wall reports once they are inlined into our code (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

inline bool has_avx512()
{
    static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return yes;
}

inline bool has_avx512_bf16()
{
    static const bool yes = has_avx512() && __builtin_cpu_supports("avx512bf16");
    return yes;
}

constexpr int gemm_mr = 14;                // rows of X per micro-tile: 28 of the 32 zmm registers accumulate
constexpr int gemm_nr = 32;                // weight rows per micro-tile: two zmm vectors
constexpr std::int64_t gemm_kc = 256;      // k steps per block (f32 values, or bf16 pairs)
constexpr std::int64_t gemm_nc_max = 256;  // weight rows per packed block: kc x nc x 4 B = 256 KB, in L2

namespace gemm_detail {

inline std::int64_t round_up(std::int64_t a, std::int64_t b) { return (a + b - 1) / b * b; }

// Transposes 16 rows of 16 32-bit values in place (r[i][j] -> r[j][i]).
SDLENS_AVX512_TARGET __attribute__((always_inline)) inline void transpose16(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    __m512 out[16];
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) {
        const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        out[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        out[j + 8] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        out[j + 4] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        out[j + 12] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = out[i];
}

inline __mmask16 first_lanes(std::int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
inline __mmask32 first_halves(std::int64_t n) { return n >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << n) - 1u); }

// 16 values of a row from k on (n valid, zeros after), as f32.
SDLENS_AVX512_TARGET inline __m512 load16_f32(const float* p, std::int64_t n)
{
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first_lanes(n), p);
}
SDLENS_AVX512_TARGET inline __m512 load16_f32(const std::uint16_t* p, std::int64_t n)
{
    const __m256i h = n >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(first_lanes(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Packs weight rows w[0..rows) (rows <= 32; missing rows are zero), k in [k0, k0 + kc), as f32
// into dst[k][32] (kc rounded up to 16 steps).
template <class WT>
SDLENS_AVX512_TARGET void pack_w_f32(const WT* const* w, int rows, std::int64_t k0, std::int64_t kc, float* dst)
{
    for (int h = 0; h < 2; ++h)
        for (std::int64_t kk = 0; kk < kc; kk += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; ++j) {
                const int row = 16 * h + j;
                if (row >= rows) {
                    r[j] = _mm512_setzero_ps();
                    continue;
                }
                r[j] = load16_f32(w[row] + k0 + kk, kc - kk);
            }
            transpose16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; ++c) _mm512_store_ps(dst + (kk + c) * gemm_nr + 16 * h, r[c]);
        }
}

// The same for bf16 rows seen as pairs (k even, k odd) in 32-bit lanes: pairs [p0, p0 + kc) of
// rows of K bf16 values (an odd K ends in a zero) into dst[pair][32].
SDLENS_AVX512_TARGET inline void pack_w_bf16_pairs(const std::uint16_t* const* w, int rows, std::int64_t K, std::int64_t p0,
                                                   std::int64_t kc, std::uint32_t* dst)
{
    for (int h = 0; h < 2; ++h)
        for (std::int64_t kk = 0; kk < kc; kk += 16) {
            const std::int64_t k = 2 * (p0 + kk);  // first bf16 element
            const std::int64_t valid = std::max<std::int64_t>(0, std::min<std::int64_t>(K - k, 2 * (kc - kk)));
            const __mmask32 m = first_halves(valid);
            const bool full = valid >= 32;
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; ++j) {
                const int row = 16 * h + j;
                if (row >= rows) {
                    r[j] = _mm512_setzero_ps();
                    continue;
                }
                r[j] = full ? _mm512_loadu_ps(w[row] + k) : _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, w[row] + k));
            }
            transpose16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; ++c)
                _mm512_store_si512(reinterpret_cast<__m512i*>(dst + (kk + c) * gemm_nr + 16 * h), _mm512_castps_si512(r[c]));
        }
}

// Y tile (MR x 32, columns masked by m0, m1) = or += the tile's product over kc steps.
// a: kc x MR broadcast values; b: kc x 32 packed weights.
template <int MR>
SDLENS_AVX512_TARGET void micro_f32(const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy, __mmask16 m0,
                                    __mmask16 m1, bool accumulate)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        a += MR;
        b += gemm_nr;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        float* yi = y + i * ldy;
        if (accumulate) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
        }
        _mm512_mask_storeu_ps(yi, m0, c0[i]);
        _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);
    }
}

// The bf16 micro-kernel: a holds kc x MR pairs of bf16 activations, b kc x 32 pairs of weights.
template <int MR>
SDLENS_AVX512BF16_TARGET void micro_bf16(const std::uint32_t* a, const std::uint32_t* b, std::int64_t kc, float* y,
                                         std::int64_t ldy, __mmask16 m0, __mmask16 m1, bool accumulate)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < kc; ++k) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i]));
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
        a += MR;
        b += gemm_nr;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        float* yi = y + i * ldy;
        if (accumulate) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
        }
        _mm512_mask_storeu_ps(yi, m0, c0[i]);
        _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);
    }
}

// Calls the micro-kernel compiled for exactly m rows (1 <= m <= MR): the last panel of X.
template <int MR = gemm_mr>
SDLENS_AVX512_TARGET void micro_rows_f32(int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy,
                                         __mmask16 m0, __mmask16 m1, bool accumulate)
{
    if constexpr (MR > 1)
        if (m < MR) return micro_rows_f32<MR - 1>(m, a, b, kc, y, ldy, m0, m1, accumulate);
    micro_f32<MR>(a, b, kc, y, ldy, m0, m1, accumulate);
}
template <int MR = gemm_mr>
SDLENS_AVX512BF16_TARGET void micro_rows_bf16(int m, const std::uint32_t* a, const std::uint32_t* b, std::int64_t kc, float* y,
                                              std::int64_t ldy, __mmask16 m0, __mmask16 m1, bool accumulate)
{
    if constexpr (MR > 1)
        if (m < MR) return micro_rows_bf16<MR - 1>(m, a, b, kc, y, ldy, m0, m1, accumulate);
    micro_bf16<MR>(a, b, kc, y, ldy, m0, m1, accumulate);
}

// Packs m <= MR rows of X from row t0 on into a panel (stored at t0 * K in the packed X):
// K steps of m values, element (k, i) at k * m + i.
inline void pack_x_panel_f32(const float* X, std::int64_t ldx, std::int64_t t0, int m, std::int64_t K, float* dst)
{
    for (int i = 0; i < m; ++i) {
        const float* x = X + (t0 + i) * ldx;
        for (std::int64_t k = 0; k < K; ++k) dst[k * m + i] = x[k];
    }
}

// The same in bf16 pairs (K2 = ceil(K / 2) pairs; an odd K ends in a zero), rounded to nearest
// even by the hardware conversion (which keeps NaN a NaN).
SDLENS_AVX512BF16_TARGET inline void pack_x_panel_bf16(const float* X, std::int64_t ldx, std::int64_t t0, int m,
                                                       std::int64_t K, std::uint32_t* dst)
{
    const std::int64_t K2 = (K + 1) / 2;
    alignas(64) std::uint32_t pairs[16];
    for (int i = 0; i < m; ++i) {
        const float* x = X + (t0 + i) * ldx;
        for (std::int64_t p = 0; p < K2; p += 16) {
            const std::int64_t k = 2 * p;
            const std::int64_t left = K - k;
            const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(left), x + k);
            const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(std::max<std::int64_t>(0, left - 16)), x + k + 16);
            // cvtne2ps_pbh(a, b) puts b in the low half: elements k .. k + 31 in order.
            _mm512_store_si512(reinterpret_cast<__m512i*>(pairs), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            const std::int64_t n = std::min<std::int64_t>(16, K2 - p);
            for (std::int64_t j = 0; j < n; ++j) dst[(p + j) * m + i] = pairs[j];
        }
    }
}

// A 64-byte aligned span of n elements inside v (grown as needed).
template <class T>
T* aligned_span(std::vector<T>& v, std::size_t n)
{
    const std::size_t extra = 64 / sizeof(T);
    if (v.size() < n + extra) v.resize(n + extra);
    const auto addr = reinterpret_cast<std::uintptr_t>(v.data());
    return v.data() + ((64 - addr % 64) % 64) / sizeof(T);
}

// Weight rows per block handed to a thread: at most gemm_nc_max, and small enough that every
// thread gets a block (the k and v projections of grouped-query attention have few rows).
inline std::int64_t block_rows(std::int64_t N, bool parallel, int nr)
{
    const std::int64_t threads = parallel ? thread_count() : 1;
    return std::min(gemm_nc_max, round_up((N + threads - 1) / threads, nr));
}

// The shared driver. Elem: packed element type (float or uint32 bf16 pairs); Ks: k steps in the
// packed layout (K, or ceil(K/2) pairs).
template <int MR, int NR, class Elem, class PackX, class PackW, class Micro>
void gemm_driver(std::int64_t T, std::int64_t N, std::int64_t Ks, float* Y, std::int64_t ldy, bool parallel,
                 std::vector<Elem>& x_storage, std::vector<std::vector<Elem>>& w_storage, PackX&& pack_x, PackW&& pack_w,
                 Micro&& micro)
{
    // Rows are spread evenly over the panels (128 rows: 12 and 13, not 9 x 14 + 2): a panel of
    // few rows has too few independent accumulators to hide the FMA latency.
    const std::int64_t panels = (T + MR - 1) / MR;
    const auto panel_start = [&](std::int64_t p) { return p * T / panels; };
    const std::size_t x_size = static_cast<std::size_t>(T * Ks) + 64 / sizeof(Elem);
    if (x_storage.size() < x_size) x_storage.resize(x_size);
    Elem* xp = x_storage.data();
    const std::int64_t nc = block_rows(N, parallel, NR);
    const std::int64_t blocks = (N + nc - 1) / nc;
    if (w_storage.size() < static_cast<std::size_t>(thread_count())) w_storage.resize(static_cast<std::size_t>(thread_count()));
    (void)parallel;
#pragma omp parallel if (parallel)
    {
#pragma omp for schedule(static)
        for (std::int64_t p = 0; p < panels; ++p) {
            const std::int64_t t0 = panel_start(p), m = panel_start(p + 1) - t0;
            pack_x(t0, static_cast<int>(m), xp + t0 * Ks);
        }
        Elem* const wbuf = aligned_span(w_storage[static_cast<std::size_t>(thread_index())],
                                        static_cast<std::size_t>(nc * round_up(gemm_kc, 16)));
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t blk = 0; blk < blocks; ++blk) {
            const std::int64_t n0 = blk * nc, n1 = std::min(N, n0 + nc);
            for (std::int64_t k0 = 0; k0 < Ks; k0 += gemm_kc) {
                const std::int64_t kc = std::min(gemm_kc, Ks - k0);
                const std::int64_t kc_pad = round_up(kc, 16);
                for (std::int64_t n = n0; n < n1; n += NR)
                    pack_w(n, static_cast<int>(std::min<std::int64_t>(NR, n1 - n)), k0, kc, wbuf + (n - n0) / NR * kc_pad * NR);
                for (std::int64_t p = 0; p < panels; ++p) {
                    const std::int64_t t0 = panel_start(p);
                    const int m = static_cast<int>(panel_start(p + 1) - t0);
                    const Elem* a = xp + t0 * Ks + k0 * m;
                    for (std::int64_t n = n0; n < n1; n += NR) {
                        const std::int64_t cols = std::min<std::int64_t>(NR, n1 - n);
                        micro(m, a, wbuf + (n - n0) / NR * kc_pad * NR, kc, Y + t0 * ldy + n, ldy, cols, k0 > 0);
                    }
                }
            }
        }
    }
}

}  // namespace gemm_detail

// Y (T x N, row stride ldy) = X (T x K, row stride ldx) W^T, W given as N row pointers (f32 or
// bf16 rows of K values), in f32. Threads split the weight rows when parallel. Requires
// has_avx512().
template <class WT>
SDLENS_AVX512_TARGET void gemm_nt_avx512(const float* X, std::int64_t ldx, std::int64_t T, const WT* const* w, std::int64_t N,
                                         std::int64_t K, float* Y, std::int64_t ldy, bool parallel,
                                         gemm_workspace& ws)
{
    using namespace gemm_detail;
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        for (std::int64_t t = 0; t < T; ++t) std::fill(Y + t * ldy, Y + t * ldy + N, 0.0f);
        return;
    }
    gemm_driver<gemm_mr, gemm_nr, float>(
        T, N, K, Y, ldy, parallel, ws.x_f32, ws.w_f32,
        [&](std::int64_t t0, int m, float* dst) { pack_x_panel_f32(X, ldx, t0, m, K, dst); },
        [&](std::int64_t n, int rows, std::int64_t k0, std::int64_t kc, float* dst) { pack_w_f32(w + n, rows, k0, kc, dst); },
        [](int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy_, std::int64_t cols, bool acc) {
            micro_rows_f32(m, a, b, kc, y, ldy_, first_lanes(cols), first_lanes(std::max<std::int64_t>(0, cols - 16)), acc);
        });
}

// The same with X rounded to bf16 (nearest even) and bf16 weights, products accumulated in f32
// by VDPBF16PS. Requires has_avx512_bf16().
SDLENS_AVX512BF16_TARGET inline void gemm_nt_avx512_bf16(const float* X, std::int64_t ldx, std::int64_t T,
                                                         const std::uint16_t* const* w, std::int64_t N, std::int64_t K, float* Y,
                                                         std::int64_t ldy, bool parallel, gemm_workspace& ws)
{
    using namespace gemm_detail;
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        for (std::int64_t t = 0; t < T; ++t) std::fill(Y + t * ldy, Y + t * ldy + N, 0.0f);
        return;
    }
    const std::int64_t K2 = (K + 1) / 2;
    gemm_driver<gemm_mr, gemm_nr, std::uint32_t>(
        T, N, K2, Y, ldy, parallel, ws.x_bf16, ws.w_bf16,
        [&](std::int64_t t0, int m, std::uint32_t* dst) { pack_x_panel_bf16(X, ldx, t0, m, K, dst); },
        [&](std::int64_t n, int rows, std::int64_t p0, std::int64_t kc, std::uint32_t* dst) {
            pack_w_bf16_pairs(w + n, rows, K, p0, kc, dst);
        },
        [](int m, const std::uint32_t* a, const std::uint32_t* b, std::int64_t kc, float* y, std::int64_t ldy_,
           std::int64_t cols, bool acc) {
            micro_rows_bf16(m, a, b, kc, y, ldy_, first_lanes(cols), first_lanes(std::max<std::int64_t>(0, cols - 16)), acc);
        });
}

// The AVX2+FMA kernel, for CPUs without AVX-512 (every AMD CPU before Zen 4, most Intel client
// CPUs): the same driver with a 6 x 16 micro-tile of ymm registers.
constexpr int gemm_mr_avx2 = 6;   // 12 of the 16 ymm registers accumulate
constexpr int gemm_nr_avx2 = 16;  // two ymm vectors of weight rows per k step

#define SDLENS_AVX2_TARGET __attribute__((target("avx2,fma")))

namespace gemm_detail {

// Transposes 8 rows of 8 floats in place (r[i][j] -> r[j][i]).
SDLENS_AVX2_TARGET __attribute__((always_inline)) inline void transpose8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// 8 values of a row from p on (n valid, zeros after; n may be <= 0), as f32.
template <class WT>
SDLENS_AVX2_TARGET inline __m256 load8_f32(const WT* p, std::int64_t n)
{
    if (n >= 8) return load8(p);
    alignas(32) float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::int64_t i = 0; i < n; ++i) part[i] = load1(p + i);
    return _mm256_load_ps(part);
}

// Packs weight rows w[0..rows) (rows <= 16; missing rows are zero), k in [k0, k0 + kc), as f32
// into dst[k][16] (kc rounded up to 16 steps, the driver's padding).
template <class WT>
SDLENS_AVX2_TARGET void pack_w_f32_avx2(const WT* const* w, int rows, std::int64_t k0, std::int64_t kc, float* dst)
{
    const std::int64_t kc_pad = round_up(kc, 16);
    for (int h = 0; h < 2; ++h)
        for (std::int64_t kk = 0; kk < kc_pad; kk += 8) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const int row = 8 * h + j;
                r[j] = row < rows ? load8_f32(w[row] + k0 + kk, kc - kk) : _mm256_setzero_ps();
            }
            transpose8(r);
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) _mm256_store_ps(dst + (kk + c) * gemm_nr_avx2 + 8 * h, r[c]);
        }
}

// Y tile (MR x cols, cols <= 16) = or += the tile's product over kc steps.
template <int MR>
SDLENS_AVX2_TARGET void micro_f32_avx2(const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy,
                                       std::int64_t cols, bool accumulate)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
    for (std::int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
        a += MR;
        b += gemm_nr_avx2;
    }
    if (cols == gemm_nr_avx2) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            float* yi = y + i * ldy;
            if (accumulate) {
                c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(yi));
                c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(yi + 8));
            }
            _mm256_storeu_ps(yi, c0[i]);
            _mm256_storeu_ps(yi + 8, c1[i]);
        }
        return;
    }
    // The last columns of Y: only cols of them are ours. (Unrolled like every loop over the
    // accumulators: indexed at run time, GCC keeps them in memory and stores all 12 per k step.)
    alignas(32) float tile[gemm_nr_avx2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        float* yi = y + i * ldy;
        _mm256_store_ps(tile, c0[i]);
        _mm256_store_ps(tile + 8, c1[i]);
        for (std::int64_t j = 0; j < cols; ++j) yi[j] = accumulate ? yi[j] + tile[j] : tile[j];
    }
}

template <int MR = gemm_mr_avx2>
SDLENS_AVX2_TARGET void micro_rows_f32_avx2(int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy,
                                            std::int64_t cols, bool accumulate)
{
    if constexpr (MR > 1)
        if (m < MR) return micro_rows_f32_avx2<MR - 1>(m, a, b, kc, y, ldy, cols, accumulate);
    micro_f32_avx2<MR>(a, b, kc, y, ldy, cols, accumulate);
}

}  // namespace gemm_detail

// Y (T x N, row stride ldy) = X (T x K, row stride ldx) W^T, W given as N row pointers (f32 or
// bf16 rows of K values, bf16 widened exactly while packing), in f32, as gemm_nt_avx512. Requires
// has_avx2_fma().
template <class WT>
SDLENS_AVX2_TARGET void gemm_nt_avx2(const float* X, std::int64_t ldx, std::int64_t T, const WT* const* w, std::int64_t N,
                                     std::int64_t K, float* Y, std::int64_t ldy, bool parallel, gemm_workspace& ws)
{
    using namespace gemm_detail;
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        for (std::int64_t t = 0; t < T; ++t) std::fill(Y + t * ldy, Y + t * ldy + N, 0.0f);
        return;
    }
    gemm_driver<gemm_mr_avx2, gemm_nr_avx2, float>(
        T, N, K, Y, ldy, parallel, ws.x_f32, ws.w_f32,
        [&](std::int64_t t0, int m, float* dst) { pack_x_panel_f32(X, ldx, t0, m, K, dst); },
        [&](std::int64_t n, int rows, std::int64_t k0, std::int64_t kc, float* dst) { pack_w_f32_avx2(w + n, rows, k0, kc, dst); },
        [](int m, const float* a, const float* b, std::int64_t kc, float* y, std::int64_t ldy_, std::int64_t cols, bool acc) {
            micro_rows_f32_avx2(m, a, b, kc, y, ldy_, cols, acc);
        });
}

// The packed product of the CPU: AVX-512, else AVX2+FMA; false when the CPU has neither.
template <class WT>
bool gemm_nt(const float* X, std::int64_t ldx, std::int64_t T, const WT* const* w, std::int64_t N, std::int64_t K, float* Y,
             std::int64_t ldy, bool parallel, gemm_workspace& ws)
{
    if (has_avx512()) {
        gemm_nt_avx512(X, ldx, T, w, N, K, Y, ldy, parallel, ws);
        return true;
    }
    if (has_avx2_fma()) {
        gemm_nt_avx2(X, ldx, T, w, N, K, Y, ldy, parallel, ws);
        return true;
    }
    return false;
}

#pragma GCC diagnostic pop
#endif  // SDLENS_X86_DISPATCH

}  // namespace sdlens::kernels
