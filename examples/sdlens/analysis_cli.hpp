#pragma once
// What the analysis subcommands share: a model with its tokenizer, the tokens of --text or
// --tokens (BOS as the model's tokenizer adds it unless --bos/--no-bos says otherwise), pieces
// for people, a --direction file checked against the model, the explosion layer when --layer is
// not given, and arrays as JSON or .npy.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xnpy.hpp>
#include <xtensor/xtensor.hpp>

#include <sdlens/analysis/detect_layers.hpp>
#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/io/tokenizer.hpp>
#include <sdlens/model/load.hpp>

#include "cli.hpp"

namespace sdlens::cli {

std::vector<int> parse_token_list(const std::string& s);  // cmd_forward.cpp
// Comma-separated integers; a bad entry fails naming the option and what was expected.
std::vector<int> parse_int_list(const std::string& s, const std::string& option, const std::string& what);
std::string printable_piece(const std::string& p);        // cmd_forward.cpp

struct loaded_model {
    std::string path;
    model m;
    std::optional<tokenizer> tok;
};

inline loaded_model load_with_tokenizer(const std::string& path, const std::string& tokenizer_path = "")
{
    loaded_model r{path, load_model(path, {tokenizer_path}), std::nullopt};
    r.tok = load_tokenizer(*r.m.source, tokenizer_path);
    return r;
}

// --bos / --no-bos; neither: the model's tokenizer decides.
struct bos_choice {
    bool bos = false, no_bos = false;
    void add_to(CLI::App* cmd)
    {
        auto* b = cmd->add_flag("--bos", bos, "Prepend BOS to each text (default: as the model's tokenizer does)");
        auto* n = cmd->add_flag("--no-bos", no_bos, "Do not prepend BOS");
        b->excludes(n);
    }
    bool adds(const tokenizer& t) const { return bos ? true : no_bos ? false : t.adds_bos(); }
};

inline const tokenizer& need_tokenizer(const loaded_model& lm, const std::string& why)
{
    if (!lm.tok) fail_input(lm.path, "the model has no tokenizer (give --tokenizer FILE" + why + ")");
    return *lm.tok;
}

// The tokens of --tokens, else of --text (default: the paper's probe sentence).
inline std::vector<int> input_tokens(const loaded_model& lm, const std::string& text, const std::string& ids, const bos_choice& bos)
{
    if (!ids.empty()) return parse_token_list(ids);
    const tokenizer& t = need_tokenizer(lm, " or --tokens IDS");
    return t.encode(text, bos.adds(t));
}

// --corpus and the options of reading it (empirical, detect, report).
struct corpus_args {
    std::string corpus;
    std::int64_t lines = 1000, max_tokens = 0;
    double threshold = 0;
    bos_choice bos;
    void add_to(CLI::App* cmd, bool required)
    {
        auto* c = cmd->add_option("--corpus", corpus, "Text file, one sample per line (lines of 11..999 characters are used)");
        if (required) c->required();
        cmd->add_option("--lines", lines, "Qualifying lines to use (0 = all)")->capture_default_str()->check(CLI::NonNegativeNumber);
        cmd->add_option("--threshold", threshold, "Norm above which a state is high-norm (default: automatic, see empirical_direction.hpp)")
            ->check(CLI::PositiveNumber);
        cmd->add_option("--max-tokens", max_tokens, "Keep only the first N tokens of each line (default: all; a line longer than the model's positions is an error)")
            ->check(CLI::NonNegativeNumber);
        bos.add_to(cmd);
    }
};

// The empirical high-norm direction of the corpus, with progress under the command's name (cmd_empirical.cpp).
// progress(what, i, n): where the caller shows progress (the report's steps); empty: a meter
// under the command's name.
empirical_result run_empirical(const loaded_model& lm, const corpus_args& a, const std::string& command,
                               const std::function<void(const char*, std::int64_t, std::int64_t)>& progress = {});
// Its JSON, with the first `top` high-norm tokens and their pieces (cmd_empirical.cpp).
nlohmann::json empirical_json(const loaded_model& lm, const empirical_result& r, std::size_t top);

inline std::vector<std::string> pieces_of(const loaded_model& lm, const std::vector<int>& tokens)
{
    std::vector<std::string> out;
    for (int t : tokens) out.push_back(lm.tok ? lm.tok->piece(t) : std::to_string(t));
    return out;
}
inline std::string piece_of(const loaded_model& lm, int token) { return lm.tok ? lm.tok->piece(token) : std::to_string(token); }

inline nlohmann::json vector_json(const Eigen::VectorXd& v)
{
    nlohmann::json a = nlohmann::json::array();
    for (Eigen::Index i = 0; i < v.size(); ++i) a.push_back(std::isfinite(v[i]) ? nlohmann::json(v[i]) : nlohmann::json(nullptr));
    return a;
}
inline nlohmann::json matrix_rows_json(const Eigen::MatrixXd& m)
{
    nlohmann::json a = nlohmann::json::array();
    for (Eigen::Index r = 0; r < m.rows(); ++r) a.push_back(vector_json(m.row(r).transpose()));
    return a;
}

// Rows of equal length (NaN-padded to the longest) as one float64 .npy array.
inline void write_npy_rows(const std::string& path, const std::vector<Eigen::VectorXd>& rows)
{
    std::size_t n = 0;
    for (const auto& r : rows) n = std::max<std::size_t>(n, static_cast<std::size_t>(r.size()));
    xt::xtensor<double, 2> a = xt::xtensor<double, 2>::from_shape({rows.size(), n});
    a.fill(std::numeric_limits<double>::quiet_NaN());
    for (std::size_t i = 0; i < rows.size(); ++i)
        for (Eigen::Index j = 0; j < rows[i].size(); ++j) a(i, static_cast<std::size_t>(j)) = rows[i][j];
    try {
        xt::dump_npy(path, a);
    } catch (const std::exception& e) {
        fail_input(path, std::string("cannot write: ") + e.what());
    }
}

inline Eigen::VectorXd direction_for(const model& m, const std::string& path)
{
    Eigen::VectorXd v = read_direction_file(path);
    if (v.size() != m.config.hidden_size)
        fail_input(path, "the direction has " + std::to_string(v.size()) + " elements but the model's hidden size is " +
                             std::to_string(m.config.hidden_size));
    return v.normalized();
}

inline int check_layer_option(const model& m, int layer, const char* option = "--layer")
{
    if (layer < 1 || layer > static_cast<int>(m.layers.size()))
        fail_input(option, "layer " + std::to_string(layer) + " is outside 1.." + std::to_string(m.layers.size()));
    return layer;
}

// --layer, or the first explosion layer found without data (detect_layers.hpp).
inline int explosion_layer_or_detect(const model& m, int layer, const std::string& command)
{
    if (layer != 0) return check_layer_option(m, layer);
    progress_meter meter(command);
    const detected_layers d = detect_layers_data_free(m, {}, [&](std::int64_t i, std::int64_t n) { meter("finding the explosion layer, layer", i, n); });
    if (d.explosion_layers.empty())
        fail_input(command, "no explosion layer found in the linearization (the model may have no singular defect): give --layer E");
    return static_cast<int>(d.explosion_layers.front());
}

}  // namespace sdlens::cli
