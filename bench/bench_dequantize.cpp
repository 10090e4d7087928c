// Decoding speed of each stored dtype, in elements per second: bounds how fast any pass over
// weights can be.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <sdlens/io/dtype.hpp>

#include "bench_support.hpp"

namespace {
void dequantize_rows(benchmark::State& state, sdlens::dtype t)
{
    const std::int64_t n = sdlens::bench::smoke() ? 4096 : 4096 * 1024;
    std::vector<std::byte> src(static_cast<std::size_t>(sdlens::bytes_for(t, n)));
    std::mt19937 rng(1);
    for (auto& b : src) b = static_cast<std::byte>(rng() & 0x3F);  // small exponents keep values finite
    std::vector<float> dst(static_cast<std::size_t>(n));
    for (auto _ : state) {
        sdlens::dequantize(t, src.data(), dst.data(), n);
        benchmark::DoNotOptimize(dst.data());
    }
    state.SetItemsProcessed(state.iterations() * n);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(src.size()));
}
}  // namespace

BENCHMARK_CAPTURE(dequantize_rows, f32, sdlens::dtype::f32);
BENCHMARK_CAPTURE(dequantize_rows, bf16, sdlens::dtype::bf16);
BENCHMARK_CAPTURE(dequantize_rows, f16, sdlens::dtype::f16);
BENCHMARK_CAPTURE(dequantize_rows, q8_0, sdlens::dtype::q8_0);
BENCHMARK_CAPTURE(dequantize_rows, q4_k, sdlens::dtype::q4_k);
BENCHMARK_CAPTURE(dequantize_rows, q6_k, sdlens::dtype::q6_k);
