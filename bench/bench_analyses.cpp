// The empirical high-norm direction (analysis/empirical_direction.hpp) over the first 1000
// qualifying lines of WikiText-2 test (../shared/corpora; skipped when absent), on a planted
// llama of d 1024, 8 layers, FFN 1536, 16 heads (4 kv), vocabulary 512 whose tokenizer is the
// byte-fallback one `sdlens plant` writes: one token per character, so ~4x the tokens a real
// tokenizer would make of the same lines. Seconds per run, tokens/s, and peak RSS: memory must
// not grow with the corpus (hidden states of one line at a time, a bounded sample for angles).
#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/io/corpus.hpp>
#include <sdlens/io/tokenizer.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>
#include <sdlens/model/tokenizer_writer.hpp>

#include "bench_support.hpp"

namespace {
using namespace sdlens;

double peak_rss_mb()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    return 0;
}

void empirical_wikitext(benchmark::State& state)
{
    const std::filesystem::path corpus = std::filesystem::path(SDLENS_SHARED_DIR) / "corpora" / "wikitext2-test.txt";
    if (!std::filesystem::exists(corpus)) {
        state.SkipWithError("../shared/corpora/wikitext2-test.txt is absent");
        for (auto _ : state) {
        }
        return;
    }
    plant_sizes s;
    s.hidden = bench::smoke() ? 64 : 1024;
    s.layers = 8;
    s.heads = 16;
    s.kv_heads = 4;
    s.vocab = 512;
    s.positions = 2048;
    const std::int64_t lines = bench::smoke() ? 3 : 1000;
    plant_options po;
    po.explosion_layer = 2;
    po.decay_layer = 7;
    std::random_device rd;
    const auto dir = std::filesystem::temp_directory_path() / ("sdlens-bench-empirical-" + std::to_string(rd()));
    // Written by a child, so the writer's buffers do not count in this process's peak RSS.
    const pid_t child = fork();
    if (child == 0) {
        int code = 0;
        try {
            const planted_model p = plant_random_model(plant_model_config(model_family::llama, s), po);
            write_hf_checkpoint(dir.string(), p.config, p.weights, dtype::bf16);
            write_hf_tokenizer(dir.string(), make_placeholder_vocabulary(p.config, p.truth.delimiter_token));
        } catch (...) {
            code = 1;
        }
        _exit(code);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        state.SkipWithError("writing the planted model failed");
        for (auto _ : state) {
        }
        return;
    }
    {
        const model m = load_model(dir.string());
        const tokenizer tok = *load_tokenizer(*m.source);
        std::int64_t tokens = 0, states = 0;
        for (auto _ : state) {
            corpus_options co;
            co.max_lines = lines;
            corpus_reader reader(corpus.string(), co);
            sequence_source next = [&]() -> std::optional<std::vector<int>> {
                auto line = reader.next();
                if (!line) return std::nullopt;
                auto t = tok.encode(*line, tok.adds_bos());
                tokens += static_cast<std::int64_t>(t.size());
                return t;
            };
            const empirical_result r = empirical_high_norm_direction(m, next, {});
            states = r.states;
            benchmark::DoNotOptimize(r.direction.data());
        }
        state.counters["tok/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
        state.counters["high_norm_states"] = static_cast<double>(states);
        state.counters["peak_rss_MB"] = peak_rss_mb();
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

}  // namespace

BENCHMARK(empirical_wikitext)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
