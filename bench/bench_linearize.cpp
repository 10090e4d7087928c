// The cost of a layer-wise singular defect direction on a LLaMA2-7B-shaped layer (bench_layer.hpp),
// every time also expressed in passes over the layer's weights (the streaming_pass benchmark):
//  - matrix-free Lanczos u_1 (with a planted rank-one spike separating sigma_1, and without),
//  - one application of L and L^T, and the exact F1's row scalings.
// The paper's dense recipe, to compare with, is in bench_paper_recipe.cpp.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

// The solvers over layer operators, compiled once in the library (its extern declarations).
#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/solvers/lanczos_svd.hpp>

#include "bench_layer.hpp"

namespace {
using namespace sdlens;
using namespace sdlens::bench;

void streaming_pass(benchmark::State& state)
{
    const auto& l = layer(true);
    std::uint64_t bytes = 0;
    for (const tensor_info* t : l.matrices) bytes += t->nbytes;
    for (auto _ : state) benchmark::DoNotOptimize(stream_once(l));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

template <class Scalar>
void lanczos_u1(benchmark::State& state, bool spiked)
{
    const auto& l = layer(spiked);
    double seconds = 0;
    std::int64_t applications = 0, restarts = 0;
    double sigma1 = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        const linearized_layer<Scalar> lin(l.config, l.w);  // includes F1's row scalings
        const layer_map_operator<Scalar> op(lin, layer_map::layer);
        lanczos_svd<layer_map_operator<Scalar>> solver(op, 1);
        solver.compute(200, lanczos_svd<layer_map_operator<Scalar>>::default_tol(), false);
        if (solver.info() != Spectra::CompInfo::Successful) state.SkipWithError("Lanczos did not converge");
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        applications = solver.applications();
        restarts = solver.restarts();
        sigma1 = double(solver.singular_values()[0]);
        benchmark::DoNotOptimize(solver.left_singular_vectors().data());
    }
    state.counters["applications"] = double(applications);
    state.counters["restarts"] = double(restarts);
    state.counters["sigma1"] = sigma1;
    report_passes(state, l, seconds / double(state.iterations()));
}

// One application of L and one of L^T to a vector: each should cost about one pass, so the
// iteration about two.
template <class Scalar>
void apply_layer(benchmark::State& state)
{
    const auto& l = layer(true);
    const linearized_layer<Scalar> lin(l.config, l.w);
    block_of<Scalar> x = block_of<Scalar>::Ones(l.config.hidden_size, 1);
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        const block_of<Scalar> y = lin.layer(x);
        const block_of<Scalar> z = lin.layer_transpose(y);
        benchmark::DoNotOptimize(z.data());
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    report_passes(state, l, seconds / double(state.iterations()));
}

void lanczos_u1_double(benchmark::State& state, bool spiked) { lanczos_u1<double>(state, spiked); }
void lanczos_u1_float(benchmark::State& state, bool spiked) { lanczos_u1<float>(state, spiked); }

void exact_f1_scales(benchmark::State& state)
{
    const auto& l = layer(true);
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto s = exact_ffn_row_scales(l.config, l.w);
        benchmark::DoNotOptimize(s.up_scale.data());
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    report_passes(state, l, seconds / double(state.iterations()));
}

}  // namespace

BENCHMARK(streaming_pass)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(apply_layer, float)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(apply_layer, double)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lanczos_u1_double, spiked, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lanczos_u1_float, spiked, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lanczos_u1_double, no_spike, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lanczos_u1_float, no_spike, false)->Unit(benchmark::kMillisecond);
BENCHMARK(exact_f1_scales)->Unit(benchmark::kMillisecond);
