#pragma once
// Products of stored weight rows (f32 or bf16) with activation vectors, and bf16 -> f32
// row decoding: the inner loops of one-token generation, which is bound by memory bandwidth.
// On x86-64 they use AVX2+FMA when the CPU has it, chosen at run time, so that a build without
// -mavx2 (the default) still streams weights at full speed; plain loops elsewhere.
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SDLENS_X86_DISPATCH 1
#endif

namespace sdlens::kernels {

inline float dot_f32_plain(const float* w, const float* x, std::int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // eight partial sums: vectorizable, less rounding drift
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += w[i + k] * x[i + k];
    float s = 0;
    for (; i < n; ++i) s += w[i] * x[i];
    for (float a : acc) s += a;
    return s;
}

inline float bf16_bits_to_float(std::uint16_t b)
{
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float dot_bf16_plain(const std::uint16_t* w, const float* x, std::int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += bf16_bits_to_float(w[i + k]) * x[i + k];
    float s = 0;
    for (; i < n; ++i) s += bf16_bits_to_float(w[i]) * x[i];
    for (float a : acc) s += a;
    return s;
}

inline void bf16_to_f32_plain(const std::uint16_t* src, float* dst, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(src[i]);
}

inline float to_float(float w) { return w; }
inline float to_float(std::uint16_t w) { return bf16_bits_to_float(w); }

// acc[i] += a * w[i]: one stored row added into an accumulator (products with a transposed weight).
template <class WT>
void axpy_plain(float a, const WT* w, float* acc, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i) acc[i] += a * to_float(w[i]);
}

// acc[i] += a[0] w[0][i] + ... + a[3] w[3][i]: four rows per pass over the accumulator, which
// then moves through the cache a quarter as often (it outgrows L1 for rows of 11008 values).
template <class WT, class S>
void axpy4_plain(const S* a, const WT* const* w, S* acc, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        acc[i] += (a[0] * S(to_float(w[0][i])) + a[1] * S(to_float(w[1][i]))) +
                  (a[2] * S(to_float(w[2][i])) + a[3] * S(to_float(w[3][i])));
}

// The same in double, for operators that carry vectors in double (the weights stay as stored).
template <class WT>
double dot_f64_plain(const WT* w, const double* x, std::int64_t n)
{
    double acc[4] = {0, 0, 0, 0};
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; ++k) acc[k] += double(to_float(w[i + k])) * x[i + k];
    double s = 0;
    for (; i < n; ++i) s += double(to_float(w[i])) * x[i];
    return s + (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
template <class WT>
void axpy_f64_plain(double a, const WT* w, double* acc, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i) acc[i] += a * double(to_float(w[i]));
}

#ifdef SDLENS_X86_DISPATCH
__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 v)
{
    const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

// How far ahead of its reads a row kernel asks for the weights. The hardware's stream prefetcher
// of Intel cores stops at every 4 KiB page, and a row is often about a page (2048 bf16 values are
// exactly one): without help every row begins with misses to memory. 4 KiB ahead is the next row
// of such a matrix. On the 2 threads of an Ice Lake server, bench_forward's row_products (1.6 GB
// of rows of 2048, median of 5) went from 13.4 to 20.4 GiB/s for bf16 and from 15.9 to 19.2 for
// f32; 1 KiB ahead gained about half as much, 8 KiB no more. AMD's prefetchers need no help, and
// software prefetches only take load slots there: on 2 threads of an AMD EPYC (Zen 3, AVX2 only)
// f32 rows of 2048 streamed at 36.3 GB/s without them, 34.8 / 31.7 / 29.3 / 28.4 GB/s with them
// 1 / 2 / 4 / 8 KiB ahead. So AMD CPUs get none. A prefetch never faults, so asking past the last
// row is harmless; the address is formed as an integer so that no out-of-range pointer is made.
inline std::uintptr_t prefetch_ahead_bytes()
{
    static const std::uintptr_t bytes = __builtin_cpu_is("amd") ? 0 : 4096;
    return bytes;
}

// Asks for the line `ahead` bytes past p (prefetch_ahead_bytes(), read once per row by the caller).
inline void prefetch_ahead(const void* p, std::uintptr_t ahead)
{
    if (ahead) _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + ahead), _MM_HINT_T0);
}

__attribute__((target("avx2,fma"))) inline float dot_f32_avx2(const float* w, const float* x, std::int64_t n)
{
    const std::uintptr_t ahead = prefetch_ahead_bytes();
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead(w + i, ahead);  // the two cache lines of this step
        prefetch_ahead(w + i + 16, ahead);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) s += w[i] * x[i];
    return s;
}

__attribute__((target("avx2,fma"))) inline __m256 load_bf16x8(const std::uint16_t* p)
{
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) inline float dot_bf16_avx2(const std::uint16_t* w, const float* x, std::int64_t n)
{
    const std::uintptr_t ahead = prefetch_ahead_bytes();
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead(w + i, ahead);  // the cache line of this step
        a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) s += bf16_bits_to_float(w[i]) * x[i];
    return s;
}

__attribute__((target("avx2,fma"))) inline void bf16_to_f32_avx2(const std::uint16_t* src, float* dst, std::int64_t n)
{
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < n; ++i) dst[i] = bf16_bits_to_float(src[i]);
}

__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const std::uint16_t* p) { return load_bf16x8(p); }
inline float load1(const float* p) { return *p; }
inline float load1(const std::uint16_t* p) { return bf16_bits_to_float(*p); }

template <class WT>
__attribute__((target("avx2,fma"))) inline void axpy_avx2(float a, const WT* w, float* acc, std::int64_t n)
{
    const __m256 av = _mm256_set1_ps(a);
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(av, load8(w + i), _mm256_loadu_ps(acc + i)));
        _mm256_storeu_ps(acc + i + 8, _mm256_fmadd_ps(av, load8(w + i + 8), _mm256_loadu_ps(acc + i + 8)));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(av, load8(w + i), _mm256_loadu_ps(acc + i)));
    for (; i < n; ++i) acc[i] += a * load1(w + i);
}

template <class WT>
__attribute__((target("avx2,fma"))) inline void axpy4_avx2(const float* a, const WT* const* w, float* acc, std::int64_t n)
{
    const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 s01 = _mm256_fmadd_ps(a1, load8(w[1] + i), _mm256_mul_ps(a0, load8(w[0] + i)));
        const __m256 s23 = _mm256_fmadd_ps(a3, load8(w[3] + i), _mm256_mul_ps(a2, load8(w[2] + i)));
        _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_add_ps(s01, s23)));
    }
    for (; i < n; ++i) acc[i] += (a[0] * load1(w[0] + i) + a[1] * load1(w[1] + i)) + (a[2] * load1(w[2] + i) + a[3] * load1(w[3] + i));
}

// Four stored elements widened to double.
__attribute__((target("avx2,fma"))) inline __m256d load4d(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
__attribute__((target("avx2,fma"))) inline __m256d load4d(const std::uint16_t* p)
{
    const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16)));
}

template <class WT>
__attribute__((target("avx2,fma"))) inline double dot_f64_avx2(const WT* w, const double* x, std::int64_t n)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_pd(load4d(w + i), _mm256_loadu_pd(x + i), a0);
        a1 = _mm256_fmadd_pd(load4d(w + i + 4), _mm256_loadu_pd(x + i + 4), a1);
        a2 = _mm256_fmadd_pd(load4d(w + i + 8), _mm256_loadu_pd(x + i + 8), a2);
        a3 = _mm256_fmadd_pd(load4d(w + i + 12), _mm256_loadu_pd(x + i + 12), a3);
    }
    for (; i + 4 <= n; i += 4) a0 = _mm256_fmadd_pd(load4d(w + i), _mm256_loadu_pd(x + i), a0);
    const __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; ++i) s += double(load1(w + i)) * x[i];
    return s;
}

template <class WT>
__attribute__((target("avx2,fma"))) inline void axpy4_f64_avx2(const double* a, const WT* const* w, double* acc, std::int64_t n)
{
    const __m256d a0 = _mm256_set1_pd(a[0]), a1 = _mm256_set1_pd(a[1]), a2 = _mm256_set1_pd(a[2]), a3 = _mm256_set1_pd(a[3]);
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d s01 = _mm256_fmadd_pd(a1, load4d(w[1] + i), _mm256_mul_pd(a0, load4d(w[0] + i)));
        const __m256d s23 = _mm256_fmadd_pd(a3, load4d(w[3] + i), _mm256_mul_pd(a2, load4d(w[2] + i)));
        _mm256_storeu_pd(acc + i, _mm256_add_pd(_mm256_loadu_pd(acc + i), _mm256_add_pd(s01, s23)));
    }
    for (; i < n; ++i)
        acc[i] += (a[0] * double(load1(w[0] + i)) + a[1] * double(load1(w[1] + i))) +
                  (a[2] * double(load1(w[2] + i)) + a[3] * double(load1(w[3] + i)));
}

template <class WT>
__attribute__((target("avx2,fma"))) inline void axpy_f64_avx2(double a, const WT* w, double* acc, std::int64_t n)
{
    const __m256d av = _mm256_set1_pd(a);
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_pd(acc + i, _mm256_fmadd_pd(av, load4d(w + i), _mm256_loadu_pd(acc + i)));
        _mm256_storeu_pd(acc + i + 4, _mm256_fmadd_pd(av, load4d(w + i + 4), _mm256_loadu_pd(acc + i + 4)));
    }
    for (; i < n; ++i) acc[i] += a * double(load1(w + i));
}

inline bool has_avx2_fma()
{
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#endif

inline float dot_f32(const float* w, const float* x, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return dot_f32_avx2(w, x, n);
#endif
    return dot_f32_plain(w, x, n);
}

inline float dot_bf16(const std::uint16_t* w, const float* x, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return dot_bf16_avx2(w, x, n);
#endif
    return dot_bf16_plain(w, x, n);
}

// Row products in the activation's precision: float (f32 and bf16 weights), or double.
inline float dot(const float* w, const float* x, std::int64_t n) { return dot_f32(w, x, n); }
inline float dot(const std::uint16_t* w, const float* x, std::int64_t n) { return dot_bf16(w, x, n); }

template <class WT>
double dot(const WT* w, const double* x, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return dot_f64_avx2(w, x, n);
#endif
    return dot_f64_plain(w, x, n);
}

template <class WT>
void axpy(float a, const WT* w, float* acc, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return axpy_avx2(a, w, acc, n);
#endif
    axpy_plain(a, w, acc, n);
}

template <class WT>
void axpy(double a, const WT* w, double* acc, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return axpy_f64_avx2(a, w, acc, n);
#endif
    axpy_f64_plain(a, w, acc, n);
}

template <class WT>
void axpy4(const float* a, const WT* const* w, float* acc, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return axpy4_avx2(a, w, acc, n);
#endif
    axpy4_plain(a, w, acc, n);
}

template <class WT>
void axpy4(const double* a, const WT* const* w, double* acc, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return axpy4_f64_avx2(a, w, acc, n);
#endif
    axpy4_plain(a, w, acc, n);
}

inline void bf16_to_f32(const std::uint16_t* src, float* dst, std::int64_t n)
{
#ifdef SDLENS_X86_DISPATCH
    if (has_avx2_fma()) return bf16_to_f32_avx2(src, dst, n);
#endif
    bf16_to_f32_plain(src, dst, n);
}

}  // namespace sdlens::kernels
