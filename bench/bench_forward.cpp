// Speed of the reference forward pass on a Llama-shaped model (d 2048, 16 layers, FFN 5632,
// 32 heads, 4 kv heads, vocab 32000: ~836M parameters) stored in F32 and BF16: prompt processing
// of 128 and 512 tokens, and generation one token at a time, on 2 threads; peak RSS per dtype.
// bench/vs_llama_cpp.sh runs llama.cpp's llama-bench on the same shapes, taking turns with this.
// On a 2-core Ice Lake server (AVX-512, no AVX512-BF16), two rounds, sdlens vs llama.cpp
// (February 2025 build), tokens/s:
//          pp128              pp512              generation         peak RSS
//   F32    105-116 vs 77-81   118-125 vs 74-82   6.9-7.7 vs 6.5-7.0    3269 vs 3277 MiB
//   BF16   104-128 vs 89-93   106-133 vs 83      11.4-13.9 vs 10.3-11  1682 vs 1683 MiB
// llama.cpp on another CPU (with AVX512-BF16) measured F32 142.2 / 138.6 / 14.3 and BF16
// 303.9 / 261.7 / 33.3: compare only numbers taken on one machine.
// On a 2-core AMD EPYC (Zen 3: AVX2+FMA, no AVX-512), bench/vs_llama_cpp.sh, two rounds, sdlens vs
// llama.cpp (upstream 0253fb21f, May 2026, GGML_NATIVE), tokens/s, ratio range over the rounds:
//          pp128                     pp512                     generation
//   F32    103 / 89 vs 83 / 82 1.08-1.24   109 / 96 vs 84 / 84 1.15-1.30   8.7 / 9.7 vs 11.9 / 11.5 0.73-0.85
//   BF16   112 / 99 vs 77 / 77 1.29-1.45   112 / 97 vs 75 / 75 1.30-1.50   16.5 / 16.4 vs 17.9 / 18.0 0.91-0.92
//   Q8_0   110 / 95 vs 94 / 96 1.00-1.17   111 / 96 vs 88 / 89 1.08-1.26   30.1 / 29.9 vs 30.7 / 30.3 0.98-0.99
//   Q4_K   102 / 89 vs 114 / 110 0.81-0.89 111 / 94 vs 106 / 106 0.89-1.05 19.6 / 19.2 vs 41.6 / 45.1 0.43-0.47
// (Q8_0 and Q4_K_M: llama-quantize's files of the same F32 GGUF, read by both programs.) Without
// software prefetches on AMD (dot_kernels.hpp), generation went to F32 10.1 and BF16 19.0 in a
// later run of this benchmark alone.
//
// The checkpoint is written once per process and dtype, under the temp dir, by a child process
// (so the writer's buffers do not count in this process's peak RSS), and deleted at exit.
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <sdlens/analysis/exploding_paths.hpp>
#include <sdlens/analysis/fake_quantization.hpp>
#include <sdlens/analysis/perplexity.hpp>
#include <sdlens/forward/forward.hpp>
#include <sdlens/io/gguf_writer.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "bench_support.hpp"

namespace {
using namespace sdlens;

model_config bench_config()
{
    model_config c = small_config(model_family::llama);
    if (bench::smoke()) return c;
    c.hidden_size = 2048;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 4;
    c.head_dim = 64;
    c.rotary_dims = 64;
    c.ffn_size = 5632;
    c.vocab_size = 32000;
    c.max_positions = 2048;
    return c;
}

// A checkpoint directory that removes itself.
struct temp_checkpoint {
    std::filesystem::path dir;
    ~temp_checkpoint()
    {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

// Writes the checkpoint in a child process, so that the writer's buffers do not count in this
// process's peak RSS.
// Block-quantized dtypes are written as GGUF (model.gguf in dir), the others as safetensors.
void write_in_child(const std::filesystem::path& dir, const model_config& c, dtype t)
{
    const pid_t child = fork();
    if (child == 0) {
        int code = 0;
        try {
            if (is_block_quantized(t)) {
                std::filesystem::create_directories(dir);
                write_gguf_checkpoint((dir / "model.gguf").string(), c, random_weights(c, 1), t);
            } else {
                write_hf_checkpoint(dir.string(), c, random_weights(c, 1), t);
            }
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "bench_forward: %s\n", ex.what());
            code = 1;
        }
        _exit(code);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("bench_forward: writing the checkpoint failed");
}

void use_two_threads()
{
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    Eigen::setNbThreads(2);
}

// Peak resident memory since the last reset_peak_rss(): VmHWM, which Linux lets a process reset
// (getrusage's maximum cannot be, and would count the model of the other dtype too).
double peak_rss_mb()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

void reset_peak_rss()
{
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
}

// The GGUF file another program wrote for a quantized dtype, named by the environment
// (SDLENS_BENCH_GGUF_Q8_0, SDLENS_BENCH_GGUF_Q4_K: bench/vs_llama_cpp.sh passes llama-quantize's
// outputs, so both programs read one file); empty when unset.
std::string given_gguf(dtype t)
{
    std::string name = std::string("SDLENS_BENCH_GGUF_") + dtype_name(t);
    for (auto& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    const char* v = std::getenv(name.c_str());
    return v ? v : "";
}

// The loaded model of one dtype. Every dtype's file is written on first use, before this process
// starts any OpenMP thread (a child of a process with an OpenMP thread pool must not use OpenMP),
// and kept for the process's lifetime. One model is mapped at a time: switching dtype unmaps the
// other and resets the peak, so each dtype's peak RSS is its own. A newly loaded model runs one
// token first, as llama-bench warms up: every weight is then mapped, so the first timed
// benchmark of a dtype does not pay page faults that the others do not.
const model& bench_model(dtype t)
{
    struct entry {
        temp_checkpoint files;
        std::unique_ptr<model> m;
    };
    static std::map<dtype, entry> cache;  // a benchmark's fixture: built once, deleted at exit
    if (cache.empty()) {
        std::random_device rd;
        const std::string tag = std::to_string(rd());
        for (dtype d : {dtype::f32, dtype::bf16, dtype::q8_0, dtype::q4_k}) {
            auto& e = cache[d];
            if (!given_gguf(d).empty()) continue;
            e.files.dir = std::filesystem::temp_directory_path() / ("sdlens-bench-" + tag + "-" + dtype_name(d));
            write_in_child(e.files.dir, bench_config(), d);
        }
    }
    auto& e = cache.at(t);
    if (!e.m) {
        for (auto& other : cache) other.second.m.reset();
        reset_peak_rss();
        const std::string given = given_gguf(t);
        const std::string path = !given.empty() ? given
                                 : is_block_quantized(t) ? (e.files.dir / "model.gguf").string()
                                                         : e.files.dir.string();
        e.m = std::make_unique<model>(load_model(path));
        use_two_threads();
        forward(*e.m, {0});
    }
    return *e.m;
}

std::vector<int> bench_tokens(const model_config& c, int n)
{
    std::mt19937 rng(1);
    std::vector<int> t(static_cast<std::size_t>(n));
    for (auto& x : t) x = static_cast<int>(rng() % static_cast<unsigned>(c.vocab_size));
    return t;
}

// bf16_act: activations rounded to bf16 in the matrix products (forward_options::bf16_activations),
// as llama.cpp computes with BF16 weights.
void prompt_processing(benchmark::State& state, dtype t, bool bf16_act)
{
    use_two_threads();
    const model& m = bench_model(t);
    const int n = bench::smoke() ? 16 : static_cast<int>(state.range(0));
    const auto tokens = bench_tokens(m.config, n);
    forward_options o;
    o.bf16_activations = bf16_act;
#ifdef SDLENS_X86_DISPATCH
    if (bf16_act && !kernels::has_avx512_bf16()) state.SetLabel("no AVX512-BF16 here: the f32 kernel, as bf16");
#endif
    for (auto _ : state) {
        forward_result r = forward(m, tokens, o);  // logits of the last position, as llama.cpp
        benchmark::DoNotOptimize(r.logits.data());
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

// One window of `sdlens quant-eval` on the same shape: the forward pass with logits at every
// position, then the window's NLL (hf style), for the unquantized model and for per-tensor W8A8
// RTN (weights quantized once, outside the timing; activations on every product). The issue's
// yardstick: RTN's tok/s against none's and against prompt_processing of the same dtype.
void quant_eval_window(benchmark::State& state, dtype t, quant_method method)
{
    use_two_threads();
    const model& m = bench_model(t);
    const int n = bench::smoke() ? 16 : static_cast<int>(state.range(0));
    const auto tokens = bench_tokens(m.config, n);
    quantization_options qo;
    qo.scheme = quant_scheme::of(method);
    const quantized_linears q(m, qo);
    forward_options o = q.apply();
    o.logits = forward_options::logits_mode::all;
    for (auto _ : state) {
        forward_result r = forward(m, tokens, o);
        perplexity_accumulator acc;
        acc.add_window(tokens, r.logits, 0, nullptr);
        benchmark::DoNotOptimize(acc.result().nll);
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["quantized_MB"] = static_cast<double>(q.weight_bytes()) / (1 << 20);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

void generation(benchmark::State& state, dtype t)
{
    use_two_threads();
    const model& m = bench_model(t);
    const int n = bench::smoke() ? 4 : 32;
    const auto tokens = bench_tokens(m.config, n);
    for (auto _ : state) {
        session s(m);
        for (int tok : tokens) {
            Eigen::VectorXf logits = s.next(tok);
            benchmark::DoNotOptimize(logits.data());
        }
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

// The exploding-paths sweep (analysis/exploding_paths.hpp) over the whole 32000-token vocabulary
// through layer 2: every token alone without attention, every token at position 0, and as many
// random embeddings, as batches of one-token sequences. tok/s counts the three sweeps' tokens;
// token-layers/s (tokens x layers run) is the rate to set beside prompt processing's tok/s x 16.
void paths_sweep(benchmark::State& state, dtype t)
{
    use_two_threads();
    const model& m = bench_model(t);
    exploding_paths_options o;
    o.layer = 2;
    std::int64_t tokens = 0;
    for (auto _ : state) {
        const exploding_paths_result r = exploding_paths(m, o);
        benchmark::DoNotOptimize(r.no_attention.data());
        tokens += r.no_attention.size() + static_cast<std::int64_t>(r.initial.size()) + r.random_sorted.size();
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
    state.counters["token_layers/s"] = benchmark::Counter(static_cast<double>(tokens * o.layer), benchmark::Counter::kIsRate);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

// One token's product with a stored matrix far larger than the caches (1.6 GB of rows of 2048
// values, as the bench model's wq/wo), through multiply_transposed as generation calls it: the
// rate at which the one-token path streams weights, to set beside the machine's memory
// bandwidth.
void row_products(benchmark::State& state, dtype t)
{
    use_two_threads();
    const std::int64_t cols = 2048;
    const std::int64_t rows = (bench::smoke() ? (std::int64_t(1) << 22) : std::int64_t(1600) << 20) / bytes_for(t, cols);
    std::vector<std::byte> bytes(static_cast<std::size_t>(rows * bytes_for(t, cols)));
    std::mt19937 rng(2);
    if (is_block_quantized(t)) {
        std::vector<float> row(static_cast<std::size_t>(cols));
        for (std::int64_t r = 0; r < rows; ++r) {
            for (auto& v : row) v = static_cast<float>(rng() % 1000) / 1000.0f - 0.5f;
            const std::vector<std::byte> enc = encode_values(t, row.data(), cols);
            std::memcpy(bytes.data() + r * bytes_for(t, cols), enc.data(), enc.size());
        }
    } else if (t == dtype::bf16)
        for (std::size_t i = 0; i + 1 < bytes.size(); i += 2) {
            const std::uint16_t b = float_to_bf16(static_cast<float>(rng() % 1000) / 1000.0f);
            std::memcpy(bytes.data() + i, &b, 2);
        }
    else
        for (std::size_t i = 0; i + 3 < bytes.size(); i += 4) {
            const float f = static_cast<float>(rng() % 1000) / 1000.0f;
            std::memcpy(bytes.data() + i, &f, 4);
        }
    tensor_info w{"w", t, {rows, cols}, bytes.data(), bytes.size()};
    const matrix_view view = whole(w);
    row_matrix<float> x = row_matrix<float>::Ones(1, cols), y, scratch;
    for (auto _ : state) {
        multiply_transposed(x, view, y, scratch);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
}  // namespace

BENCHMARK_CAPTURE(row_products, f32, sdlens::dtype::f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(row_products, bf16, sdlens::dtype::bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(prompt_processing, f32, sdlens::dtype::f32, false)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(generation, f32, sdlens::dtype::f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(prompt_processing, bf16, sdlens::dtype::bf16, false)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(prompt_processing, bf16_act, sdlens::dtype::bf16, true)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(generation, bf16, sdlens::dtype::bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(row_products, q8_0, sdlens::dtype::q8_0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(row_products, q4_k, sdlens::dtype::q4_k)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(prompt_processing, q8_0, sdlens::dtype::q8_0, false)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(generation, q8_0, sdlens::dtype::q8_0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(prompt_processing, q4_k, sdlens::dtype::q4_k, false)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(generation, q4_k, sdlens::dtype::q4_k)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(quant_eval_window, bf16/none, sdlens::dtype::bf16, sdlens::quant_method::none)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(quant_eval_window, bf16/rtn, sdlens::dtype::bf16, sdlens::quant_method::rtn)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(quant_eval_window, f32/none, sdlens::dtype::f32, sdlens::quant_method::none)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(quant_eval_window, f32/rtn, sdlens::dtype::f32, sdlens::quant_method::rtn)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(paths_sweep, bf16, sdlens::dtype::bf16)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(paths_sweep, f32, sdlens::dtype::f32)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
