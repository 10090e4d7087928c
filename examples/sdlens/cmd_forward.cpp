// sdlens forward: one forward pass over a text or a list of token ids; prints the tokens, the norm
// of every hidden state (layer index 0..L by token) and the logits at the last position, and
// can save the hidden states [L+1, T, d] as .npy.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <xtensor/xnpy.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/model/load.hpp>
#if __has_include(<sdlens/io/tokenizer.hpp>)
#include <sdlens/io/tokenizer.hpp>
#define SDLENS_CLI_HAS_TOKENIZER 1
#endif

#include "cli.hpp"

namespace sdlens::cli {
namespace {

struct forward_args {
    std::string model_path, tokenizer_path, text, tokens, npy;
    bool no_attention = false, no_bos = false, json = false;
};

}  // namespace

// "1,2,3" (spaces allowed) -> ids; anything else is the user's mistake. Shared with the analyses.
std::vector<int> parse_int_list(const std::string& s, const std::string& option, const std::string& what)
{
    std::vector<int> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
        if (b == std::string::npos) fail_input(option, "empty entry in '" + s + "'");
        item = item.substr(b, e - b + 1);
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (*end != '\0' || errno != 0 || v < -1000000000L || v > 1000000000L)
            fail_input(option, "'" + item + "' is not a " + what);
        out.push_back(static_cast<int>(v));
    }
    if (out.empty()) fail_input(option, "no " + what + "s given");
    return out;
}

std::vector<int> parse_token_list(const std::string& s) { return parse_int_list(s, "--tokens", "token id"); }

// Pieces on one line: control characters shown as escapes (llama2.c's BOS piece is "\n<s>\n").
std::string printable_piece(const std::string& p)
{
    std::string out;
    for (unsigned char c : p) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else out += static_cast<char>(c);
    }
    return out;
}

namespace {

void run_forward(const forward_args& a)
{
    const model m = load_model(a.model_path, {a.tokenizer_path});
    std::vector<int> tokens;
    std::vector<std::string> pieces;
#ifdef SDLENS_CLI_HAS_TOKENIZER
    const std::optional<tokenizer> tok = load_tokenizer(*m.source, a.tokenizer_path);
#endif
    if (!a.text.empty()) {
#ifdef SDLENS_CLI_HAS_TOKENIZER
        if (!tok) fail_input(a.model_path, "the model has no tokenizer: give --tokenizer FILE or --tokens");
        tokens = tok->encode(a.text, !a.no_bos);
#else
        fail_input(a.model_path, "this build cannot tokenize text: give --tokens");
#endif
    } else {
        tokens = parse_token_list(a.tokens);
    }

    forward_options o;
    o.hidden_states = true;
    o.zero_attention = a.no_attention;
    const bool has_head = static_cast<bool>(m.lm_head);  // encoders have none
    if (!has_head) o.logits = forward_options::logits_mode::none;
    const forward_result r = forward(m, tokens, o);  // checks the ids against the vocabulary

    for (int t : tokens) {
#ifdef SDLENS_CLI_HAS_TOKENIZER
        if (tok) {
            pieces.push_back(tok->piece(t));
            continue;
        }
#endif
        pieces.push_back(std::to_string(t));
    }

    const std::size_t layers = r.hidden.shape()[0], T = r.hidden.shape()[1], d = r.hidden.shape()[2];
    std::vector<std::vector<double>> norms(layers, std::vector<double>(T));
    for (std::size_t l = 0; l < layers; ++l)
        for (std::size_t t = 0; t < T; ++t) {
            const float* h = r.hidden.data() + (l * T + t) * d;
            double s = 0;
            for (std::size_t i = 0; i < d; ++i) s += double(h[i]) * h[i];
            norms[l][t] = std::sqrt(s);
        }
    if (!a.npy.empty()) {
        try {
            xt::dump_npy(a.npy, r.hidden);
        } catch (const std::exception& e) {
            fail_input(a.npy, std::string("cannot write: ") + e.what());
        }
    }
    const Eigen::VectorXf logits = has_head ? Eigen::VectorXf(r.logits.row(0).transpose()) : Eigen::VectorXf();

    nlohmann::json j{{"model", a.model_path},
                     {"attention", !a.no_attention},
                     {"tokens", tokens},
                     {"pieces", pieces},
                     {"norms", norms},
                     {"logits", has_head ? nlohmann::json(std::vector<float>(logits.data(), logits.data() + logits.size())) : nlohmann::json(nullptr)}};
    if (!a.npy.empty()) j["npy"] = a.npy;
    emit(a.json, j, [&](std::ostream& out) {
        out << "tokens:";
        for (int t : tokens) out << ' ' << t;
        out << "\npieces:";
        for (const auto& p : pieces) out << " '" << printable_piece(p) << "'";
        out << "\nnorms (hidden state norm; rows: layer index 0 = embeddings .. " << layers - 1
            << ", columns: tokens):\n";
        out << std::fixed << std::setprecision(2);
        for (std::size_t l = 0; l < layers; ++l) {
            out << std::setw(4) << l;
            for (double n : norms[l]) out << ' ' << std::setw(9) << n;
            out << '\n';
        }
        if (!has_head) {
            out << "logits: none (the model is an encoder without a language-model head)\n";
            return;
        }
        // The whole vector is in --json; a person reads the top of it.
        std::vector<int> order(static_cast<std::size_t>(logits.size()));
        std::iota(order.begin(), order.end(), 0);
        const std::size_t top = std::min<std::size_t>(10, order.size());
        std::partial_sort(order.begin(), order.begin() + top, order.end(),
                          [&](int x, int y) { return logits[x] > logits[y]; });
        out << "logits (last position, top " << top << " of " << logits.size() << "):\n";
        out << std::setprecision(4);
        for (std::size_t i = 0; i < top; ++i) {
            out << std::setw(8) << order[i] << ' ' << std::setw(10) << logits[order[i]];
#ifdef SDLENS_CLI_HAS_TOKENIZER
            if (tok) out << "  '" << printable_piece(tok->piece(order[i])) << "'";
#endif
            out << '\n';
        }
        if (!a.npy.empty()) out << "hidden states [" << layers << ", " << T << ", " << d << "] saved to " << a.npy << '\n';
    });
}

}  // namespace

void register_forward(CLI::App& app)
{
    auto a = std::make_shared<forward_args>();
    auto* cmd = app.add_subcommand("forward", "Run one forward pass: hidden-state norms per layer and token, last logits");
    cmd->add_option("model", a->model_path, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")
        ->required();
    auto* text = cmd->add_option("--text", a->text, "Text to tokenize (with BOS unless --no-bos)");
    auto* ids = cmd->add_option("--tokens", a->tokens, "Comma-separated token ids, e.g. 1,2,3");
    text->excludes(ids);
    ids->excludes(text);
    cmd->add_option("--tokenizer", a->tokenizer_path, "Tokenizer file (llama2.c tok*.bin) when the model has none");
    cmd->add_flag("--no-attention", a->no_attention, "Replace every attention output by zero");
    cmd->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to --text");
    cmd->add_option("--npy", a->npy, "Save the hidden states [L+1, T, d] (float32) to this .npy file");
    cmd->add_flag("--json", a->json, "Print JSON");
    cmd->callback([a] {
        if (a->text.empty() && a->tokens.empty()) throw input_error("forward: give --text TEXT or --tokens IDS");
        run_forward(*a);
    });
}

}  // namespace sdlens::cli
