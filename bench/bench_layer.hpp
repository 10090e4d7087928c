#pragma once
// The benchmarks' LLaMA2-7B-shaped layer (d = 4096, M = 11008, 32 heads, bf16; d = 128 under
// smoke()), built once per process, and the unit every linearization time is expressed in: one
// streaming pass over the layer's V, O, gate, up and down.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include <sdlens/io/half.hpp>
#include <sdlens/io/tensor_store.hpp>
#include <sdlens/model/config.hpp>
#include <sdlens/model/model.hpp>

#include "bench_support.hpp"

namespace sdlens::bench {

struct bench_layer {
    checkpoint ck;
    model_config config;
    layer_weights w;
    std::vector<const tensor_info*> matrices;  // V, O, gate, up, down
};

inline std::uint64_t splitmix(std::uint64_t& s)
{
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform entries of variance 1/cols (cheap to generate at 7B sizes), plus spike * a b^T.
inline std::vector<std::byte> random_bf16(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double spike = 0)
{
    std::vector<std::byte> bytes(static_cast<std::size_t>(rows * cols * 2));
    const double scale = std::sqrt(3.0 / double(cols));
    std::vector<double> a, b;
    if (spike != 0) {  // unit vectors with +-1/sqrt(n) entries
        std::uint64_t s = seed ^ 0xABCDEF;
        for (std::int64_t i = 0; i < rows; ++i) a.push_back((splitmix(s) & 1 ? 1.0 : -1.0) / std::sqrt(double(rows)));
        for (std::int64_t j = 0; j < cols; ++j) b.push_back((splitmix(s) & 1 ? 1.0 : -1.0) / std::sqrt(double(cols)));
    }
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
        std::uint64_t s = seed * 1000003 + static_cast<std::uint64_t>(r);
        for (std::int64_t c = 0; c < cols; ++c) {
            double x = (static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53 * 2 - 1) * scale;
            if (spike != 0) x += spike * a[static_cast<std::size_t>(r)] * b[static_cast<std::size_t>(c)];
            const std::uint16_t h = float_to_bf16(static_cast<float>(x));
            std::memcpy(bytes.data() + 2 * (r * cols + c), &h, 2);
        }
    }
    return bytes;
}

inline std::unique_ptr<bench_layer> make_layer(bool spiked)
{
    auto l = std::make_unique<bench_layer>();
    const bool smoke = bench::smoke();
    const std::int64_t d = smoke ? 128 : 4096, m = smoke ? 344 : 11008, h = smoke ? 4 : 32;
    model_config& c = l->config;
    c.hidden_size = d;
    c.ffn_size = m;
    c.num_heads = c.num_kv_heads = h;
    c.head_dim = d / h;
    c.num_layers = 1;
    c.weight_dtype = dtype::bf16;
    tensor_store& t = l->ck.tensors;
    std::vector<float> ones(static_cast<std::size_t>(d), 1.0f);
    t.add_f32("attn_norm", {d}, ones.data());
    t.add_f32("ffn_norm", {d}, ones.data());
    // The spike sits in W_O: A, hence L, gets a rank-one term of norm ~spike * |W_V^T b|.
    t.add_owned("v", dtype::bf16, {d, d}, random_bf16(d, d, 1));
    t.add_owned("o", dtype::bf16, {d, d}, random_bf16(d, d, 2, spiked ? 60.0 : 0.0));
    t.add_owned("gate", dtype::bf16, {m, d}, random_bf16(m, d, 3));
    t.add_owned("up", dtype::bf16, {m, d}, random_bf16(m, d, 4));
    t.add_owned("down", dtype::bf16, {d, m}, random_bf16(d, m, 5));
    l->w.attn_norm = whole_vector(t.at("attn_norm"));
    l->w.ffn_norm = whole_vector(t.at("ffn_norm"));
    l->w.wv = whole(t.at("v"));
    l->w.wo = whole(t.at("o"));
    l->w.w_gate = whole(t.at("gate"));
    l->w.w_up = whole(t.at("up"));
    l->w.w_down = whole(t.at("down"));
    for (const char* n : {"v", "o", "gate", "up", "down"}) l->matrices.push_back(&t.at(n));
    return l;
}

// Built once per process: generating 338 MB of weights takes seconds.
inline const bench_layer& layer(bool spiked)
{
    static std::unique_ptr<bench_layer> with, without;
    auto& p = spiked ? with : without;
    if (!p) p = make_layer(spiked);
    return *p;
}

// Sum of n 64-bit words: the fastest read of memory (no decode, integer adds only).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) inline std::uint64_t sum_words(const std::uint64_t* w, std::int64_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 12)));
    }
    alignas(32) std::uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    std::uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; ++i) s += w[i];
    return s;
}
#else
inline std::uint64_t sum_words(const std::uint64_t* w, std::int64_t n)
{
    std::uint64_t s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += w[i];
    return s;
}
#endif

// One streaming read of the layer's matrices, on all threads: the unit of "passes".
inline std::uint64_t stream_once(const bench_layer& l)
{
    std::uint64_t total = 0;
    constexpr std::int64_t chunk = 1 << 17;  // words per work item (1 MiB)
    for (const tensor_info* t : l.matrices) {
        const auto* words = reinterpret_cast<const std::uint64_t*>(t->data);
        const std::int64_t n = static_cast<std::int64_t>(t->nbytes / 8);
        std::uint64_t s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
        for (std::int64_t i = 0; i < n; i += chunk) s += sum_words(words + i, std::min(chunk, n - i));
        total += s;
    }
    return total;
}

inline double seconds_per_pass(const bench_layer& l)
{
    stream_once(l);
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 5;
    std::uint64_t sink = 0;
    for (int i = 0; i < reps; ++i) sink += stream_once(l);
    benchmark::DoNotOptimize(sink);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

inline void report_passes(benchmark::State& state, const bench_layer& l, double seconds_per_iteration)
{
    const double pass = seconds_per_pass(l);
    state.counters["pass_ms"] = pass * 1e3;
    state.counters["passes"] = seconds_per_iteration / pass;
}

}  // namespace sdlens::bench
