// sdlens generate: greedy continuation of a prompt, printed as llama2.c's run prints it (the
// prompt's pieces, then each new piece as it comes; a story ends at BOS). Speed goes to stderr.
#include <cctype>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <sdlens/forward/forward.hpp>
#include <sdlens/model/load.hpp>
#if __has_include(<sdlens/io/tokenizer.hpp>)
#include <sdlens/io/tokenizer.hpp>
#define SDLENS_CLI_HAS_TOKENIZER 1
#endif

#include "cli.hpp"

namespace sdlens::cli {
namespace {

struct generate_args {
    std::string model_path, tokenizer_path, prompt;
    int steps = 256;
    bool json = false;
};

// llama2.c's safe_printf: a piece that is one unprintable byte (a raw <0x..> token) is dropped.
bool printable(const std::string& piece)
{
    if (piece.empty()) return false;
    if (piece.size() == 1) {
        const auto c = static_cast<unsigned char>(piece[0]);
        return std::isprint(c) || std::isspace(c);
    }
    return true;
}

void run_generate(const generate_args& a)
{
    if (a.steps < 0) fail_input("-n", "the number of tokens cannot be negative");
    const model m = load_model(a.model_path, {a.tokenizer_path});
#ifdef SDLENS_CLI_HAS_TOKENIZER
    const std::optional<tokenizer> tok = load_tokenizer(*m.source, a.tokenizer_path);
    if (!tok) fail_input(a.model_path, "the model has no tokenizer: give --tokenizer FILE");
    const std::vector<int> prompt = tok->encode(a.prompt, true);
    auto piece_after = [&](int prev, int t) { return tok->decode(prev, t); };
#else
    fail_input(a.model_path, "this build has no tokenizer support");
    const std::vector<int> prompt;
    auto piece_after = [](int, int t) { return std::to_string(t); };
#endif
    if (prompt.empty()) fail_input("--prompt", "the prompt encodes to no tokens");
    const int stop = static_cast<int>(m.config.bos_token);

    std::string text;
    auto say = [&](int prev, int t) {
        const std::string p = piece_after(prev, t);
        if (!printable(p)) return;
        text += p;
        if (!a.json) {
            std::fputs(p.c_str(), stdout);
            std::fflush(stdout);
        }
    };
    for (std::size_t i = 1; i < prompt.size(); ++i) say(prompt[i - 1], prompt[i]);

    // The prompt in one pass, then one token at a time through the KV cache.
    const auto start = std::chrono::steady_clock::now();
    session s(m);
    Eigen::VectorXf logits = s.run(prompt).logits.row(0).transpose();
    std::vector<int> generated;
    int prev = prompt.back();
    for (int i = 0; i < a.steps; ++i) {
        const int next = argmax(logits);
        if (next == stop) break;
        generated.push_back(next);
        say(prev, next);
        prev = next;
        if (i + 1 < a.steps) logits = s.next(next);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = seconds > 0 ? static_cast<double>(prompt.size() + generated.size()) / seconds : 0.0;

    if (a.json) {
        emit(true,
             nlohmann::json{{"model", a.model_path},
                            {"prompt_tokens", prompt},
                            {"tokens", generated},
                            {"text", text},
                            {"tokens_per_second", rate}},
             [](std::ostream&) {});
    } else {
        std::fputs("\n", stdout);
    }
    std::fprintf(stderr, "achieved tok/s: %f (%zu prompt + %zu generated tokens in %.3f s)\n", rate, prompt.size(),
                 generated.size(), seconds);
}

}  // namespace

void register_generate(CLI::App& app)
{
    auto a = std::make_shared<generate_args>();
    auto* cmd = app.add_subcommand("generate", "Greedy text generation (argmax at every step)");
    cmd->add_option("model", a->model_path, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")
        ->required();
    cmd->add_option("--tokenizer", a->tokenizer_path, "Tokenizer file (llama2.c tok*.bin) when the model has none");
    cmd->add_option("--prompt", a->prompt, "Text to continue (BOS is prepended; empty: start a story)");
    cmd->add_option("-n,--steps", a->steps, "Number of tokens to generate")->capture_default_str();
    cmd->add_flag("--json", a->json, "Print JSON (prompt tokens, generated tokens, text, speed)");
    cmd->callback([a] { run_generate(*a); });
}

}  // namespace sdlens::cli
