// sdlens empirical MODEL --corpus FILE: the empirical high-norm direction (paper Sec. 3.1, Table 2).
// sdlens detect MODEL [--corpus FILE]: the explosion and decay layers, data-free from the
// linearization, or from the per-layer counts of a corpus's high-norm states.
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/detect_layers.hpp>
#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/io/corpus.hpp>

#include "analysis_cli.hpp"

namespace sdlens::cli {

empirical_result run_empirical(const loaded_model& lm, const corpus_args& a, const std::string& command,
                               const std::function<void(const char*, std::int64_t, std::int64_t)>& progress)
{
    const tokenizer& tok = need_tokenizer(lm, "");
    corpus_options co;
    co.max_lines = a.lines;
    corpus_reader reader(a.corpus, co);
    const bool add_bos = a.bos.adds(tok);
    const std::int64_t positions = lm.m.config.learned_positions ? lm.m.position_embedding.rows : 0;
    sequence_source next = [&]() -> std::optional<std::vector<int>> {
        const auto line = reader.next();
        if (!line) return std::nullopt;
        std::vector<int> t = tok.encode(*line, add_bos);
        if (a.max_tokens > 0 && static_cast<std::int64_t>(t.size()) > a.max_tokens) t.resize(static_cast<std::size_t>(a.max_tokens));
        if (positions > 0 && static_cast<std::int64_t>(t.size()) > positions)
            fail_input(a.corpus, "line " + std::to_string(reader.lines_read()) + " is " + std::to_string(t.size()) + " tokens, more than the model's " +
                                     std::to_string(positions) + " positions (give --max-tokens)");
        return t;
    };
    empirical_options o;
    o.threshold = a.threshold;
    std::optional<progress_meter> meter;
    if (!progress) meter.emplace(command);
    const std::int64_t total = a.lines > 0 ? a.lines : 0;
    empirical_result r = empirical_high_norm_direction(lm.m, next, o, [&](const char* step, std::int64_t done) {
        const std::int64_t n = std::string(step) == "calibration" ? std::min<std::int64_t>(o.calibration_sequences, total) : total;
        const std::string what = std::string(step) + ", line";
        if (progress) progress(what.c_str(), done, n);
        else (*meter)(what, done, n);
    });
    if (r.sequences == 0) fail_input(a.corpus, "no line of 11 to 999 characters");
    return r;
}

nlohmann::json empirical_json(const loaded_model& lm, const empirical_result& r, std::size_t top)
{
    nlohmann::json tokens = nlohmann::json::array();
    for (std::size_t i = 0; i < r.tokens.size() && i < top; ++i)
        tokens.push_back({{"token", r.tokens[i].token}, {"piece", piece_of(lm, r.tokens[i].token)}, {"initial", r.tokens[i].initial}, {"count", r.tokens[i].count}});
    nlohmann::json j{{"threshold", std::isfinite(r.threshold) ? nlohmann::json(r.threshold) : nlohmann::json(nullptr)},
                     {"threshold_automatic", r.automatic.median > 0},
                     {"direction", r.direction.size() ? vector_json(r.direction) : nlohmann::json(nullptr)},
                     {"states", r.states},
                     {"mean_pairwise_angle_deg", r.states > 1 ? nlohmann::json(r.mean_pairwise_angle_deg) : nlohmann::json(nullptr)},
                     {"angle_states", r.angle_states},
                     {"angle_sampled", r.angle_sampled},
                     {"per_layer_count", r.per_layer_count},
                     {"initial_states", r.initial_states},
                     {"non_initial_states", r.non_initial_states},
                     {"sequences", r.sequences},
                     {"positions", r.positions},
                     {"high_norm_tokens", tokens}};
    if (r.automatic.median > 0)
        j["automatic"] = {{"median_norm", r.automatic.median}, {"gap", {r.automatic.gap_low, r.automatic.gap_high}}, {"found", r.automatic.found}};
    return j;
}

void register_empirical(CLI::App& app)
{
    {
        struct args : corpus_args {
            std::string model, tokenizer, out, npy;
            std::size_t top = 20;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("empirical", "Empirical high-norm direction of a corpus: normalized mean of the states above a threshold");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        a->add_to(cmd, true);
        cmd->add_option("--out", a->out, "Write {\"direction\": [...]} here, for every --direction option");
        cmd->add_option("--top", a->top, "High-norm tokens to list")->capture_default_str();
        cmd->add_option("--npy", a->npy, "Save the direction (float64, d) to this .npy file");
        cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            const loaded_model lm = load_with_tokenizer(a->model, a->tokenizer);
            const empirical_result r = run_empirical(lm, *a, "empirical");
            nlohmann::json j = empirical_json(lm, r, a->top);
            j["model"] = a->model;
            j["corpus"] = a->corpus;
            if (!a->out.empty()) {
                if (!r.direction.size()) fail_input(a->out, "no state exceeded the threshold: there is no direction to write");
                std::ofstream f(a->out, std::ios::trunc);
                f << nlohmann::json{{"direction", vector_json(r.direction)}}.dump() << '\n';
                f.close();
                if (!f) fail_input(a->out, "write failed");
            }
            if (!a->npy.empty() && r.direction.size()) write_npy_rows(a->npy, {r.direction});
            emit(a->json, j, [&](std::ostream& out) {
                out << "corpus: " << r.sequences << " lines, " << r.positions << " tokens\n";
                if (!std::isfinite(r.threshold)) {
                    out << "no high-norm states: no gap of 2x above 5x the median norm (" << r.automatic.median
                        << ") in the first lines; give --threshold to collect anyway\n";
                    return;
                }
                out << "threshold " << r.threshold << (r.automatic.found ? " (automatic)" : "") << ": " << r.states << " states ("
                    << r.initial_states << " initial, " << r.non_initial_states << " non-initial)\n";
                if (r.states > 1)
                    out << "mean pairwise angle " << std::fixed << std::setprecision(2) << r.mean_pairwise_angle_deg << " deg over "
                        << r.angle_states << (r.angle_sampled ? " sampled" : "") << " states\n" << std::defaultfloat;
                out << "per layer index:";
                for (auto c : r.per_layer_count) out << ' ' << c;
                out << "\nhigh-norm tokens (piece, position, count):\n";
                for (std::size_t i = 0; i < r.tokens.size() && i < a->top; ++i)
                    out << "  '" << printable_piece(piece_of(lm, r.tokens[i].token)) << "' " << (r.tokens[i].initial ? "initial" : "non-initial")
                        << ' ' << r.tokens[i].count << '\n';
                if (!a->out.empty()) out << "direction written to " << a->out << '\n';
            });
        });
    }
    {
        struct args : corpus_args {
            std::string model, tokenizer;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("detect", "Explosion and decay layers: data-free from the linearization, or from a corpus");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        a->add_to(cmd, false);
        cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            const loaded_model lm = load_with_tokenizer(a->model, a->tokenizer);
            detected_layers d;
            nlohmann::json extra;
            if (a->corpus.empty()) {
                progress_meter meter("detect");
                d = detect_layers_data_free(lm.m, {}, [&](std::int64_t i, std::int64_t n) { meter("sigma_1 and u_1 of L, layer", i, n); });
                extra = {{"sigma_1", vector_json(d.sigma_1)}, {"median_sigma_1", d.median_sigma}, {"mad_sigma_1", d.mad_sigma},
                         {"rayleigh_quotients", d.rayleigh}};
            } else {
                const empirical_result e = run_empirical(lm, *a, "detect");
                d = detect_layers_from_counts(e);
                extra = {{"threshold", std::isfinite(e.threshold) ? nlohmann::json(e.threshold) : nlohmann::json(nullptr)},
                         {"per_layer_count", e.per_layer_count}};
            }
            nlohmann::json j{{"model", a->model},
                             {"method", d.method},
                             {"explosion_layers", d.explosion_layers},
                             {"decay_layers", d.decay_layers},
                             {"direction", d.direction.size() ? vector_json(d.direction) : nlohmann::json(nullptr)}};
            j.update(extra);
            emit(a->json, j, [&](std::ostream& out) {
                auto list = [](const std::vector<std::int64_t>& v) {
                    std::string s;
                    for (auto l : v) s += (s.empty() ? "" : ", ") + std::to_string(l);
                    return s.empty() ? std::string("none") : s;
                };
                out << "method: " << d.method << "\nexplosion layers: " << list(d.explosion_layers) << "\ndecay layers: " << list(d.decay_layers)
                    << "\n";
                if (d.sigma_1.size()) {
                    out << "sigma_1 of L per layer (median " << d.median_sigma << "):";
                    for (Eigen::Index l = 0; l < d.sigma_1.size(); ++l) out << ' ' << std::setprecision(4) << d.sigma_1[l];
                    out << '\n';
                }
            });
        });
    }
}

}  // namespace sdlens::cli
