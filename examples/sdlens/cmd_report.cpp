// sdlens report MODEL: runs the analyses of the paper on one checkpoint and writes DIR/index.html
// (a summary, then Fig. 1, 4-10 as inline SVG; no script, no network), DIR/fig-*.svg (each figure
// alone) and DIR/report.json (every plotted number, the options, the model, the time per step).
// Without --corpus the data come from the probe sentence alone, and the page says so.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sdlens/analysis/ablation.hpp>
#include <sdlens/analysis/coefficients.hpp>
#include <sdlens/analysis/detect_layers.hpp>
#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/analysis/exploding_paths.hpp>
#include <sdlens/analysis/explosion_subspace.hpp>
#include <sdlens/analysis/layer_angles.hpp>
#include <sdlens/analysis/norm_profile.hpp>
#include <sdlens/version.hpp>

#include "analysis_cli.hpp"
#include "report_figures.hpp"
#include "report_html.hpp"
#include "svg_plot.hpp"

namespace sdlens::cli {

namespace {

struct report_args : corpus_args {
    std::string model, tokenizer, out = "sdlens-report", text = probe_sentence;
    int layer = 0, generate = 16;
    std::int64_t subspace_k = 64;
    bool json = false;
};

// Times each step and shows it on a terminal: "report: [4/9] angles, layer 3/24, 12 s left".
class step_clock {
public:
    explicit step_clock(int steps) : meter_(std::in_place, "report"), steps_(steps) {}
    void run(const std::string& name, const std::function<void()>& fn)
    {
        label_ = "[" + std::to_string(++index_) + "/" + std::to_string(steps_) + "] " + name;
        if (meter_) progress("report: " + label_);
        const auto start = std::chrono::steady_clock::now();
        fn();
        times_.push_back({{"step", name}, {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}});
    }
    template <class Fn>
    auto value(const std::string& name, Fn&& fn)
    {
        std::optional<decltype(fn())> r;
        run(name, [&] { r.emplace(fn()); });
        return std::move(*r);
    }
    void skip(const std::string& name) { times_.push_back({{"step", name}, {"seconds", 0.0}, {"skipped", true}}); }
    // Progress inside the current step: what, i of n.
    std::function<void(std::int64_t, std::int64_t)> layers(const std::string& what)
    {
        return [this, what](std::int64_t i, std::int64_t n) { if (meter_) (*meter_)(label_ + ", " + what, i, n); };
    }
    std::function<void(const char*, std::int64_t, std::int64_t)> steps()
    {
        return [this](const char* what, std::int64_t i, std::int64_t n) { if (meter_) (*meter_)(label_ + ", " + what, i, n); };
    }
    const nlohmann::json& times() const { return times_; }
    double total() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
    void finish() { meter_.reset(); }

private:
    std::optional<progress_meter> meter_;
    int steps_, index_ = 0;
    std::string label_;
    nlohmann::json times_ = nlohmann::json::array();
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// The numbers of a figure exactly as drawn: every series' points, the annotations and lines.
nlohmann::json figure_json(const svg::figure& f, const std::string& file, const std::string& caption)
{
    nlohmann::json panels = nlohmann::json::array();
    for (const auto& c : f.panels) {
        nlohmann::json series = nlohmann::json::array();
        for (const auto& s : c.data) {
            nlohmann::json x = nlohmann::json::array(), y = nlohmann::json::array();
            for (double v : s.x) x.push_back(finite_or_null(v));
            for (double v : s.y) y.push_back(finite_or_null(v));
            series.push_back({{"label", s.label},
                              {"kind", s.kind == svg::mark_kind::line ? "line" : s.kind == svg::mark_kind::scatter ? "scatter" : "bar"},
                              {"x", x},
                              {"y", y}});
        }
        nlohmann::json notes = nlohmann::json::array(), lines = nlohmann::json::array();
        for (const auto& n : c.notes) notes.push_back({{"x", finite_or_null(n.x)}, {"y", finite_or_null(n.y)}, {"text", n.text}});
        for (const auto& l : c.lines) lines.push_back({{"y", finite_or_null(l.y)}, {"label", l.label}});
        panels.push_back({{"title", c.title},
                          {"x_label", c.x_label},
                          {"y_label", c.y_label},
                          {"x_scale", c.x_scale == svg::scale::log ? "log" : "linear"},
                          {"y_scale", c.y_scale == svg::scale::log ? "log" : "linear"},
                          {"series", series},
                          {"annotations", notes},
                          {"reference_lines", lines}});
    }
    return {{"id", f.id}, {"file", file}, {"title", f.title}, {"caption", caption}, {"panels", panels}, {"text", f.text_lines}};
}

std::string layer_list(const std::vector<std::int64_t>& v)
{
    std::string s;
    for (auto l : v) s += (s.empty() ? "" : ", ") + std::to_string(l);
    return s.empty() ? "none" : s;
}

std::string fixed(double v, int digits)
{
    std::ostringstream o;
    o << std::fixed << std::setprecision(digits) << v;
    return o.str();
}

void write_file(const std::filesystem::path& p, const std::string& content)
{
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) fail_input(p.string(), "write failed");
}

}  // namespace

void register_report(CLI::App& app)
{
    auto a = std::make_shared<report_args>();
    auto* cmd = app.add_subcommand("report", "Run the paper's analyses and write an HTML page with its figures, the SVG files and report.json");
    cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
    a->add_to(cmd, false);
    cmd->add_option("--out", a->out, "Directory for index.html, report.json and fig-*.svg")->capture_default_str();
    cmd->add_option("--text", a->text, "Probe text for Fig. 1 and 10 (default: the paper's probe sentence)");
    cmd->add_option("--layer", a->layer, "Explosion layer E for Fig. 6-10, 1-based (default: the one detected)");
    cmd->add_option("-n", a->generate, "Tokens to generate for Fig. 10")->capture_default_str()->check(CLI::Range(0, 4096));
    cmd->add_option("--k", a->subspace_k, "Right singular vectors of F for Fig. 8 (at most d)")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
    cmd->add_flag("--json", a->json, "Print the summary as JSON");
    cmd->callback([a] {
        namespace fs = std::filesystem;
        const bool with_corpus = !a->corpus.empty();
        step_clock clock(9);

        const loaded_model lm = clock.value("load", [&] { return load_with_tokenizer(a->model, a->tokenizer); });
        const model& m = lm.m;
        if (a->layer != 0) check_layer_option(m, a->layer);
        const tokenizer& tok = need_tokenizer(lm, ": the report runs text through the model");
        std::error_code ec;
        fs::create_directories(a->out, ec);
        if (ec) fail_input(a->out, "cannot create directory: " + ec.message());

        const std::int64_t L = static_cast<std::int64_t>(m.layers.size()), d = m.config.hidden_size;
        std::vector<std::string> piece_names;  // printable, for labels
        for (std::int64_t t = 0; t < m.token_embedding.rows; ++t) piece_names.push_back(printable_piece(piece_of(lm, static_cast<int>(t))));

        detected_layers data_free;
        clock.run("data-free detection", [&] { data_free = detect_layers_data_free(m, {}, clock.layers("sigma_1 and u_1 of L, layer")); });

        const std::vector<int> probe = tok.encode(a->text, a->bos.adds(tok));
        if (probe.empty()) fail_input("--text", "the text has no tokens");
        std::vector<std::string> probe_pieces;
        for (int t : probe) probe_pieces.push_back(piece_names[static_cast<std::size_t>(t)]);
        norm_profile profile;
        clock.run("norm profile", [&] { profile = token_norms(m, probe); });

        // The high-norm states: of the corpus, or of the probe sentence alone (threshold from its norms).
        empirical_result emp;
        clock.run(with_corpus ? "empirical direction (corpus)" : "empirical direction (probe sentence)", [&] {
            if (with_corpus) {
                emp = run_empirical(lm, *a, "report", clock.steps());
                return;
            }
            forward_options fo;
            fo.hidden_states = true;
            fo.logits = forward_options::logits_mode::none;
            const forward_result r = forward(m, probe, fo);
            const Eigen::MatrixXd& n = profile.norms;
            threshold_choice t;
            if (a->threshold > 0) t.threshold = a->threshold, t.found = true;
            else t = automatic_threshold(std::vector<double>(n.data(), n.data() + n.size()));
            empirical_accumulator acc(d, t.threshold);
            acc.add(r.hidden, probe);
            emp = acc.result();
            emp.automatic = t;
        });
        const detected_layers from_data = detect_layers_from_counts(emp);
        const bool found_high = emp.states > 0;
        const std::string data_name = with_corpus ? "the corpus (" + std::to_string(emp.sequences) + " lines)" : "the probe sentence";

        // The reference direction of Fig. 4 and 5: the empirical one when there are high-norm
        // states; else the data-free defect direction; else u_1 of the strongest layer.
        Eigen::VectorXd direction;
        std::string direction_name;
        if (found_high) direction = emp.direction, direction_name = "the empirical high-norm direction of " + data_name;
        else if (data_free.direction.size()) direction = data_free.direction, direction_name = "the data-free singular defect direction";
        else {
            Eigen::Index strongest = 0;
            data_free.sigma_1.maxCoeff(&strongest);
            direction = data_free.u_1.col(strongest);
            direction_name = "u_1 of layer " + std::to_string(strongest + 1) + " (largest sigma_1; no high-norm state to compare with)";
        }
        std::vector<layer_angle_row> angles;
        clock.run("angles", [&] {
            layer_angle_options o;
            o.known_sigma_1 = data_free.sigma_1;  // the detection's: one SVD per layer, not two
            o.known_u_1 = data_free.u_1;
            angles = layer_angles(m, direction, o, clock.layers("u_1 and eigenvectors of R, layer"));
        });

        int E = a->layer;
        if (E == 0 && !data_free.explosion_layers.empty()) E = static_cast<int>(data_free.explosion_layers.front());
        if (E == 0 && !from_data.explosion_layers.empty()) E = static_cast<int>(from_data.explosion_layers.front());
        exploding_paths_result paths;
        explosion_subspace_result subspace;
        coefficients_result coefficients;
        ablation_result ablation;
        Eigen::VectorXd v1;
        if (E > 0) {
            clock.run("exploding paths", [&] {
                exploding_paths_options o;
                o.layer = E;
                paths = exploding_paths(m, o, clock.steps());
            });
            clock.run("explosion subspace", [&] {
                explosion_subspace_options o;
                o.k = std::min<std::int64_t>(a->subspace_k, d);
                subspace = explosion_subspace(m, E, o);
                v1 = subspace.v.col(0);
            });
            clock.run("coefficients", [&] {
                coefficients_options o;
                o.layer = E;
                coefficients = ffn_input_coefficients(m, v1, o, clock.steps());
            });
            clock.run("ablation", [&] { ablation = ablate_direction(m, probe, E, v1, a->generate, tok.eos()); });
        } else
            for (const char* s : {"exploding paths", "explosion subspace", "coefficients", "ablation"}) clock.skip(s);

        // Which tokens explode without attention (Fig. 6's red): above the empirical threshold, or,
        // with none, above the gap that the automatic rule finds among these norms.
        double path_threshold = emp.threshold;
        if (E > 0 && !std::isfinite(path_threshold)) {
            std::vector<double> finite;
            for (Eigen::Index t = 0; t < paths.no_attention.size(); ++t)
                if (std::isfinite(paths.no_attention[t])) finite.push_back(paths.no_attention[t]);
            path_threshold = automatic_threshold(finite).threshold;
        }

        // ---- Summary ----
        std::vector<std::pair<std::int64_t, std::string>> marked;
        auto mark = [&](const std::vector<std::int64_t>& layers, const std::string& name) {
            for (auto l : layers) {
                bool seen = false;
                for (const auto& [ml, mn] : marked) seen = seen || ml == l;
                if (!seen) marked.push_back({l, name});
            }
        };
        mark(data_free.explosion_layers, "explosion");
        mark(data_free.decay_layers, "decay");
        mark(from_data.explosion_layers, "explosion");
        mark(from_data.decay_layers, "decay");

        nlohmann::json high_tokens = nlohmann::json::array();
        std::string high_tokens_text;
        for (std::size_t i = 0; i < emp.tokens.size() && i < 10; ++i) {
            const auto& t = emp.tokens[i];
            const std::string piece = piece_names[static_cast<std::size_t>(t.token)];
            high_tokens.push_back({{"token", t.token}, {"piece", piece_of(lm, t.token)}, {"initial", t.initial}, {"count", t.count}});
            high_tokens_text += std::string(high_tokens_text.empty() ? "" : "; ") + "'" + piece + "' (id " + std::to_string(t.token) + ", " +
                                (t.initial ? "initial" : "non-initial") + ", " + std::to_string(t.count) + (t.count == 1 ? " position)" : " positions)");
        }
        nlohmann::json path_tokens = nlohmann::json::array();
        std::string path_tokens_text;
        if (E > 0)
            for (const auto& t : top_tokens(paths.no_attention, 10)) {
                if (!(t.norm > path_threshold)) break;
                path_tokens.push_back({{"token", t.token}, {"piece", piece_of(lm, t.token)}, {"norm", t.norm}});
                path_tokens_text += std::string(path_tokens_text.empty() ? "" : "; ") + "'" + piece_names[static_cast<std::size_t>(t.token)] +
                                    "' (id " + std::to_string(t.token) + ", norm " + report::short_number(t.norm) + ")";
            }

        std::string angles_text;
        nlohmann::json angles_at = nlohmann::json::array();
        for (const auto& [l, name] : marked)
            for (const auto& r : angles)
                if (r.layer == l) {
                    angles_at.push_back({{"layer", l}, {"role", name}, {"u1_angle_deg", r.u1_angle_deg}, {"eig_angle_deg", r.eig_angle_deg},
                                         {"eigenvalue_real", r.eigenvalue.real()}});
                    angles_text += std::string(angles_text.empty() ? "" : "; ") + "layer " + std::to_string(l) + " (" + name + "): u_1 at " +
                                   report::degrees(r.u1_angle_deg) + ", closest eigenvector of R at " + report::degrees(r.eig_angle_deg) +
                                   " with eigenvalue " + report::short_number(r.eigenvalue.real());
                }

        const auto& c = m.config;
        const std::string model_text = std::string(family_name(c.family)) + ": d " + std::to_string(d) + ", " + std::to_string(L) + " layers, " +
                                       std::to_string(c.num_heads) + " heads (" + std::to_string(c.num_kv_heads) + " key/value), FFN " +
                                       std::to_string(c.ffn_size) + ", vocabulary " + std::to_string(c.vocab_size) + ", " +
                                       dtype_name(c.weight_dtype) + ", " + format_name(m.source->format);
        std::string headline;
        if (found_high) {
            headline = "High-norm tokens found in " + data_name + ": they explode at layer" + (from_data.explosion_layers.size() > 1 ? "s " : " ") +
                       layer_list(from_data.explosion_layers) + " and decay at layer" + (from_data.decay_layers.size() > 1 ? "s " : " ") +
                       layer_list(from_data.decay_layers) + " (data-free, from the weights alone: explosion " + layer_list(data_free.explosion_layers) +
                       ", decay " + layer_list(data_free.decay_layers) + ").";
        } else {
            headline = "No high-norm tokens were found in " + data_name + " (no norm stands 5x above the median with a 2x gap)";
            headline += data_free.explosion_layers.empty() && data_free.decay_layers.empty()
                            ? ", and no layer's linearization stands out: this model shows no singular defect."
                            : "; the weights alone suggest explosion at " + layer_list(data_free.explosion_layers) + " and decay at " +
                                  layer_list(data_free.decay_layers) + ".";
        }

        std::vector<html::summary_row> rows;
        rows.push_back({"Model", model_text});
        rows.push_back({"File", m.source->path});
        rows.push_back({"Explosion / decay layers, data-free (1-based)",
                        layer_list(data_free.explosion_layers) + " / " + layer_list(data_free.decay_layers) + " (sigma_1 of L: median " +
                            report::short_number(data_free.median_sigma) + ")"});
        rows.push_back({"Explosion / decay layers from " + data_name, layer_list(from_data.explosion_layers) + " / " + layer_list(from_data.decay_layers)});
        rows.push_back({"Threshold and mean pairwise angle (Table 2)",
                        found_high ? "threshold " + report::short_number(emp.threshold) + (a->threshold > 0 ? " (given)" : " (automatic)") + ", " +
                                         std::to_string(emp.states) + " high-norm states (" + std::to_string(emp.initial_states) + " initial, " +
                                         std::to_string(emp.non_initial_states) + " non-initial), mean pairwise angle " +
                                         (emp.states > 1 ? report::degrees(emp.mean_pairwise_angle_deg) : std::string("n/a (one state)"))
                                   : "no threshold: no high-norm state (median norm " + report::short_number(emp.automatic.median) + ")"});
        rows.push_back({"Top trigger tokens in " + data_name, high_tokens_text.empty() ? "none" : high_tokens_text});
        if (E > 0) rows.push_back({"Tokens exploding without attention at layer " + std::to_string(E), path_tokens_text.empty() ? "none" : path_tokens_text});
        rows.push_back({"Layer-wise vs reference direction at the detected layers", angles_text.empty() ? "no layer detected" : angles_text});
        if (E > 0) {
            rows.push_back({"Explosion subspace at layer " + std::to_string(E),
                            "v_1's FFN output norm is " + report::short_number(subspace.ratio) + "x the largest of the other " +
                                std::to_string(subspace.v.cols() - 1) + " right singular vectors"});
            rows.push_back({"Ablation of v_1 at layer " + std::to_string(E), "largest probe norm " + report::short_number(ablation.plain.norms.maxCoeff()) +
                                                                                " -> " + report::short_number(ablation.ablated.norms.maxCoeff())});
        }

        std::vector<std::string> notes;
        notes.push_back("Reference direction of Fig. 4 and 5: " + direction_name + ".");
        if (!with_corpus)
            notes.push_back("No --corpus was given: the threshold, the empirical direction, the trigger tokens and the layers 'from data' come from the "
                            "probe sentence '" + a->text + "' alone; give --corpus FILE for the paper's setting (1000 lines of WikiText-2).");
        if (E == 0)
            notes.push_back("No explosion layer was found (data-free or from data), so Fig. 6-10, which are about that layer, are not drawn; "
                            "give --layer E to draw them for a chosen layer.");
        else if (a->layer != 0)
            notes.push_back("Fig. 6-10 are drawn for layer " + std::to_string(E) + ", given by --layer.");
        else
            notes.push_back("Fig. 6-10 are drawn for the explosion layer " + std::to_string(E) + ".");

        // ---- Figures ----
        struct entry {
            svg::figure figure;
            std::string caption;
            std::vector<std::pair<std::string, std::string>> texts;
        };
        std::vector<entry> figures;
        const std::string layers_phrase = marked.empty() ? "" : " (here layer" + std::string(marked.size() > 1 ? "s " : " ") + [&] {
            std::string s;
            for (const auto& [l, name] : marked) s += (s.empty() ? "" : ", ") + std::to_string(l) + " " + name;
            return s;
        }() + ")";
        figures.push_back({report::fig_norms(profile.norms, probe_pieces),
                           found_high ? "Tokens whose norm jumps by orders of magnitude at one layer and falls back at a later one are the high-norm tokens" +
                                            std::string(" (the ones above the threshold ") + report::short_number(emp.threshold) +
                                            "); the other tokens stay low."
                                      : "Every token's norm grows smoothly, with no sudden jump and fall: the probe sentence has no high-norm token.",
                           {}});
        figures.push_back({report::fig_sigma(data_free.sigma_1, data_free.median_sigma, data_free.explosion_layers, data_free.decay_layers),
                           "Layers whose bar stands far above the dashed outlier line are where the weights alone predict the explosion and the decay" +
                               std::string(data_free.explosion_layers.empty() && data_free.decay_layers.empty() ? "; here none does." : "."),
                           {}});
        figures.push_back({report::fig_u1_angles(angles, direction_name, marked),
                           "Layers where the angle drops towards 0 degrees are those whose leading singular vector u_1 points along the high-norm "
                           "direction: the explosion and decay layers" + layers_phrase + "; the others sit near 90 degrees.",
                           {}});
        figures.push_back({report::fig_eigen(angles, marked),
                           "At a decay layer an eigenvector of R lies close to the direction (small angle, top) with a large negative eigenvalue "
                           "(bottom): the layer maps a high-norm state x to about -x and so cancels it.",
                           {}});
        if (E > 0) {
            figures.push_back({report::fig_no_attention(paths, path_threshold, piece_names),
                               "Tokens that stand far above the rest (red) explode even without attention: they are high-norm wherever they appear, "
                               "not only at position 0 (the non-initial high-norm tokens).",
                               {}});
            auto above = [&](const Eigen::VectorXd& v) {
                std::int64_t n = 0, all = 0;
                for (Eigen::Index i = 0; i < v.size(); ++i)
                    if (std::isfinite(v[i])) ++all, n += v[i] > path_threshold;
                return std::pair<std::int64_t, std::int64_t>{n, all};
            };
            const auto [tokens_high, tokens_all] = above(paths.initial);
            const auto [random_high, random_all] = above(paths.random_sorted);
            figures.push_back({report::fig_initial(paths),
                               std::to_string(tokens_high) + " of " + std::to_string(tokens_all) + " tokens and " + std::to_string(random_high) +
                                   " of " + std::to_string(random_all) + " random embeddings exceed the threshold " +
                                   report::short_number(path_threshold) + " at position 0: " +
                                   (2 * tokens_high > tokens_all
                                        ? "the initial token explodes through attention to itself, whatever it encodes."
                                        : "here only those tokens explode as the initial token, not nearly every one as in the paper's LLaMA2."),
                               {}});
            figures.push_back({report::fig_subspace(subspace),
                               "Only v_1 (at the left) makes the FFN output explode; every other input direction stays small: the explosion subspace "
                               "is one-dimensional.",
                               {}});
            figures.push_back({report::fig_coefficients(coefficients, piece_names[static_cast<std::size_t>(coefficients.first_token)]),
                               "A token far above zero at position 0 (red) but not at position 1 (blue) explodes only as the initial token; one "
                               "high at both positions is a non-initial high-norm token; the paper's LLaMA2 has nearly every token high at position 0.",
                               {}});
            const std::string plain_text = printable_piece(tok.decode(ablation.plain_continuation)),
                              ablated_text = printable_piece(tok.decode(ablation.ablated_continuation));
            std::vector<std::pair<std::string, std::string>> texts;
            if (a->generate > 0) texts = {{"Generated, unablated", a->text + plain_text}, {"Generated, v_1 removed at layer " + std::to_string(E), a->text + ablated_text}};
            figures.push_back({report::fig_ablation(ablation, probe_pieces, plain_text, ablated_text),
                               "With v_1 removed before the FFN of layer " + std::to_string(E) +
                                   " the high norms of the intermediate layers disappear (bottom against top)" +
                                   (a->generate == 0 ? std::string(".")
                                    : ablation.plain_continuation == ablation.ablated_continuation
                                        ? std::string("; the greedy continuation is the same here.")
                                        : std::string(", and the greedy continuation changes (below).")),
                               texts});
        }

        html::page page;
        page.title = "sdlens report: " + fs::path(a->model).filename().string();
        if (page.title == "sdlens report: ") page.title = "sdlens report: " + a->model;
        page.headline = headline;
        nlohmann::json figures_json = nlohmann::json::array();
        for (auto& e : figures) {
            const std::string file = e.figure.id + ".svg", svg_text = svg::to_svg(e.figure);
            write_file(fs::path(a->out) / file, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + svg_text);
            page.figures.push_back({file, svg_text, e.figure.title, e.caption, e.texts});
            figures_json.push_back(figure_json(e.figure, file, e.caption));
        }
        const double total = clock.total();
        page.summary = rows;
        page.summary.push_back({"Time", report::short_number(total) + " s in all (" + [&] {
                                    std::string s;
                                    for (const auto& t : clock.times())
                                        if (!t.contains("skipped"))
                                            s += (s.empty() ? "" : ", ") + t["step"].get<std::string>() + " " + fixed(t["seconds"].get<double>(), 2) + " s";
                                    return s;
                                }() + "); sdlens " SDLENS_VERSION_STRING});
        page.notes = notes;

        nlohmann::json model_json = to_json(c);
        model_json["path"] = m.source->path;
        model_json["format"] = format_name(m.source->format);
        nlohmann::json summary{{"headline", headline},
                               {"high_norm_found", found_high},
                               {"data", with_corpus ? "corpus" : "probe sentence"},
                               {"explosion_layers_data_free", data_free.explosion_layers},
                               {"decay_layers_data_free", data_free.decay_layers},
                               {"explosion_layers_from_data", from_data.explosion_layers},
                               {"decay_layers_from_data", from_data.decay_layers},
                               {"threshold", finite_or_null(emp.threshold)},
                               {"high_norm_states", emp.states},
                               {"mean_pairwise_angle_deg", emp.states > 1 ? nlohmann::json(emp.mean_pairwise_angle_deg) : nlohmann::json(nullptr)},
                               {"trigger_tokens", high_tokens},
                               {"exploding_without_attention", path_tokens},
                               {"angles_at_detected_layers", angles_at},
                               {"figure_layer", E > 0 ? nlohmann::json(E) : nlohmann::json(nullptr)},
                               {"reference_direction", direction_name},
                               {"rows", nlohmann::json::array()}};
        for (const auto& r : page.summary) summary["rows"].push_back({{"label", r.label}, {"value", r.value}});
        if (E > 0) {
            summary["subspace_ratio"] = finite_or_null(subspace.ratio);
            summary["ablation_max_norm"] = {ablation.plain.norms.maxCoeff(), ablation.ablated.norms.maxCoeff()};
        }
        nlohmann::json options{{"model", a->model},     {"corpus", a->corpus.empty() ? nlohmann::json(nullptr) : nlohmann::json(a->corpus)},
                               {"lines", a->lines},     {"threshold", a->threshold > 0 ? nlohmann::json(a->threshold) : nlohmann::json("automatic")},
                               {"max_tokens", a->max_tokens}, {"text", a->text},
                               {"layer", a->layer > 0 ? nlohmann::json(a->layer) : nlohmann::json("detected")},
                               {"generate", a->generate}, {"k", a->subspace_k},
                               {"tokenizer", a->tokenizer}, {"out", a->out}};
        nlohmann::json report_json{{"sdlens_version", SDLENS_VERSION_STRING},
                              {"options", options},
                              {"model", model_json},
                              {"summary", summary},
                              {"notes", notes},
                              {"probe", {{"tokens", probe}, {"pieces", probe_pieces}, {"norms", matrix_rows_json(profile.norms)}}},
                              {"empirical", empirical_json(lm, emp, 20)},
                              {"data_free", {{"sigma_1", vector_json(data_free.sigma_1)},
                                             {"median_sigma_1", data_free.median_sigma},
                                             {"mad_sigma_1", data_free.mad_sigma},
                                             {"rayleigh_quotients", data_free.rayleigh}}},
                              {"figures", figures_json},
                              {"steps", clock.times()},
                              {"total_seconds", total}};
        report_json["angles"] = nlohmann::json::array();
        for (const auto& r : angles)
            report_json["angles"].push_back({{"layer", r.layer}, {"sigma_1", r.sigma_1}, {"u1_angle_deg", r.u1_angle_deg}, {"eig_angle_deg", r.eig_angle_deg},
                                        {"eigenvalue", {r.eigenvalue.real(), r.eigenvalue.imag()}}, {"eig_method", r.eig_method}});
        if (E > 0) {
            report_json["ablation"] = {{"layer", E},
                                  {"continuation", ablation.plain_continuation},
                                  {"ablated_continuation", ablation.ablated_continuation},
                                  {"continuation_text", tok.decode(ablation.plain_continuation)},
                                  {"ablated_continuation_text", tok.decode(ablation.ablated_continuation)}};
            report_json["coefficients_first_token"] = coefficients.first_token;
        }
        const fs::path index = fs::path(a->out) / "index.html";
        write_file(index, html::to_html(page));
        write_file(fs::path(a->out) / "report.json", report_json.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");

        nlohmann::json printed{{"summary", summary}, {"index", index.string()}, {"steps", clock.times()}, {"total_seconds", total}};
        clock.finish();
        emit(a->json, printed, [&](std::ostream& out) {
            out << headline << "\n\n";
            for (const auto& r : page.summary) out << "  " << r.label << ": " << r.value << "\n";
            out << "\nreport: " << index.string() << "\n";
        });
    });
}

}  // namespace sdlens::cli
