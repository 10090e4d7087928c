// sdlens demo: the whole method on a model whose answer is known. Plants singular defects into a
// random model (d = 256, 12 layers, explosion at layer 2, decay at layer 10), writes it as a real
// checkpoint, loads it back, and finds the defects the way the paper does, without looking at the
// ground truth: norms of a probe sequence, the empirical high-norm direction (normalized mean of
// the states above a threshold), the layer-wise singular defect directions u_1 of every layer,
// and the eigenvector of R best aligned to the empirical direction at the layers found. The
// summary puts each finding next to what was planted.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/detect_layers.hpp>
#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/analysis/layer_angles.hpp>
#include <sdlens/analysis/norm_profile.hpp>
#include <sdlens/forward/forward.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>

#include "cli.hpp"

namespace sdlens::cli {

nlohmann::json write_planted_model(const planted_model& p, const std::string& out_dir, dtype type, bool gguf);  // cmd_plant.cpp

namespace {

// What the probe's hidden states say, through the library's analyses: the norms, the automatic
// threshold, the empirical direction, and the explosion/decay layers from the per-layer counts.
struct demo_findings {
    Eigen::MatrixXd norms;  // (L+1) x T
    empirical_result empirical;
    std::int64_t explosion = 0, decay = 0;  // 1-based; 0 = not found
    std::vector<std::int64_t> high_tokens;  // positions whose norm ever exceeds the threshold
};

demo_findings analyse_states(const xt::xtensor<float, 3>& h, const std::vector<int>& tokens)
{
    demo_findings f;
    f.norms = hidden_state_norms(h);
    const threshold_choice t = automatic_threshold(std::vector<double>(f.norms.data(), f.norms.data() + f.norms.size()));
    empirical_accumulator acc(static_cast<std::int64_t>(h.shape(2)), t.threshold);
    acc.add(h, tokens);
    f.empirical = acc.result();
    f.empirical.automatic = t;
    const detected_layers d = detect_layers_from_counts(f.empirical);
    if (!d.explosion_layers.empty()) f.explosion = d.explosion_layers.front();
    if (!d.decay_layers.empty()) f.decay = d.decay_layers.front();
    for (Eigen::Index p = 0; p < f.norms.cols(); ++p)
        if ((f.norms.col(p).array() > t.threshold).any()) f.high_tokens.push_back(p);
    return f;
}

model_config demo_config(model_family family)
{
    plant_sizes s;
    s.hidden = 256;
    s.layers = 12;
    s.heads = 8;
    s.ffn = 688;
    s.vocab = 256;
    return plant_model_config(family, s);
}

}  // namespace

void register_demo(CLI::App& app)
{
    struct options {
        std::string out = "sdlens-demo", family = "llama";
        bool json = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("demo", "Plant singular defects into a random model, then find them with the paper's analyses");
    cmd->add_option("--out", opt->out, "Directory for the planted checkpoint")->capture_default_str();
    cmd->add_option("--family", opt->family, "Architecture: llama, qwen2, phi3, gpt2 or neox")
        ->capture_default_str()
        ->check(CLI::IsMember({"llama", "qwen2", "phi3", "gpt2", "neox"}));
    cmd->add_flag("--json", opt->json, "Print JSON");
    cmd->callback([opt] {
        const std::map<std::string, model_family> families{{"llama", model_family::llama}, {"qwen2", model_family::qwen2},
                                                           {"phi3", model_family::phi3},   {"gpt2", model_family::gpt2},
                                                           {"neox", model_family::neox}};
        const model_config c = demo_config(families.at(opt->family));
        plant_options po;
        po.explosion_layer = 0;  // the family's default: where any token at position 0 triggers
        po.decay_layer = 10;
        po.seed = 2024;
        progress("planting...");
        const planted_model planted = plant_random_model(c, po);
        const auto written = write_planted_model(planted, opt->out, dtype::f32, false);
        const plant_ground_truth& truth = planted.truth;

        // Everything below reads only the checkpoint on disk.
        progress("forward pass...");
        const model m = load_model(written["model"].get<std::string>());
        const int delim = static_cast<int>(default_delimiter_token(m.config));
        const int bos = static_cast<int>(m.config.bos_token);
        const std::vector<int> probe{bos, 40, 41, 42, 43, 44, delim, 50, 51, 52, 53, 54, 55, 56, 57, 58};
        forward_options fo;
        fo.hidden_states = true;
        fo.logits = forward_options::logits_mode::none;
        const forward_result r = forward(m, probe, fo);
        const demo_findings f = analyse_states(r.hidden, probe);
        const empirical_result& emp = f.empirical;
        const bool found_high = emp.states > 0;

        const std::int64_t L = m.config.num_layers;
        struct layer_row {
            double sigma = 0, angle_empirical = 90, angle_planted = 90;
        };
        std::vector<layer_row> rows(static_cast<std::size_t>(L));
        std::vector<std::int64_t> aligned;
        layer_angle_options lo;
        lo.eigen = false;
        const auto angles = layer_angles(m, found_high ? emp.direction : truth.direction, lo, [&](std::int64_t i, std::int64_t n) {
            progress("layer-wise directions: layer " + std::to_string(i) + "/" + std::to_string(n));
        });
        for (const auto& a : angles) {
            layer_row& row = rows[static_cast<std::size_t>(a.layer - 1)];
            row.sigma = a.sigma_1;
            row.angle_empirical = found_high ? a.u1_angle_deg : 90;
            row.angle_planted = acute_angle_degrees(a.u1, truth.direction);
            if (row.angle_empirical < 5) aligned.push_back(a.layer);
        }
        struct eig_row {
            std::int64_t layer;
            double angle_empirical, angle_planted, eigenvalue;
        };
        std::vector<eig_row> eigs;
        for (std::int64_t l : aligned) {
            progress("eigenvectors of R: layer " + std::to_string(l));
            // Over all d eigenvectors: the explosion layer's best-aligned one is not among the largest.
            const auto best = best_aligned_eigenvector_dense(m, l, emp.direction);
            eigs.push_back({l, best.angle_degrees, acute_angle_degrees(best.real_vector, truth.direction), best.eigenvalue.real()});
        }
        progress_done();

        // Trigger tokens = the probe positions that became high-norm; ordinary = the others.
        auto mean_norm = [&](std::size_t l, bool high) {
            double s = 0;
            int n = 0;
            for (std::size_t t = 0; t < probe.size(); ++t) {
                const bool is_high = std::find(f.high_tokens.begin(), f.high_tokens.end(), std::int64_t(t)) != f.high_tokens.end();
                if (is_high == high) s += f.norms(static_cast<Eigen::Index>(l), static_cast<Eigen::Index>(t)), ++n;
            }
            return n ? s / n : 0.0;
        };
        std::int64_t decay_eig_layer = 0;
        double decay_eigenvalue = 0, decay_eig_angle = 90;
        for (const auto& e : eigs)
            if (e.layer == f.decay) decay_eig_layer = e.layer, decay_eigenvalue = e.eigenvalue, decay_eig_angle = e.angle_empirical;

        nlohmann::json j;
        j["model"] = written["model"];
        j["ground_truth"] = {{"explosion_layer", truth.explosion_layer}, {"decay_layer", truth.decay_layer},
                             {"decay_eigenvalue", truth.decay_eigenvalue}, {"trigger_tokens", truth.trigger_tokens}};
        j["probe_tokens"] = probe;
        j["found"] = {{"explosion_layer", f.explosion},
                      {"decay_layer", f.decay},
                      {"aligned_layers", aligned},
                      {"high_norm_positions", f.high_tokens},
                      {"threshold", emp.threshold},
                      {"high_norm_states", emp.states},
                      {"mean_pairwise_angle_degrees", emp.mean_pairwise_angle_deg},
                      {"empirical_vs_planted_degrees", found_high ? acute_angle_degrees(emp.direction, truth.direction) : 90.0}};
        auto row_of = [](const Eigen::MatrixXd& a, std::int64_t r) {
            std::vector<double> v(static_cast<std::size_t>(a.cols()));
            for (Eigen::Index c = 0; c < a.cols(); ++c) v[static_cast<std::size_t>(c)] = a(r, c);
            return v;
        };
        auto layers = nlohmann::json::array();
        for (std::int64_t l = 0; l <= L; ++l) {
            nlohmann::json row{{"layer", l}, {"norms", row_of(f.norms, l)},
                               {"trigger_mean_norm", mean_norm(static_cast<std::size_t>(l), true)},
                               {"ordinary_mean_norm", mean_norm(static_cast<std::size_t>(l), false)}};
            if (l >= 1) {
                const auto& lr = rows[static_cast<std::size_t>(l - 1)];
                row["sigma_1"] = lr.sigma;
                row["u1_vs_empirical_degrees"] = lr.angle_empirical;
                row["u1_vs_planted_degrees"] = lr.angle_planted;
            }
            layers.push_back(row);
        }
        j["layers"] = layers;
        auto ej = nlohmann::json::array();
        for (const auto& e : eigs)
            ej.push_back({{"layer", e.layer}, {"angle_empirical_degrees", e.angle_empirical},
                          {"angle_planted_degrees", e.angle_planted}, {"eigenvalue_real", e.eigenvalue}});
        j["eigen"] = ej;

        emit(opt->json, j, [&](std::ostream& out) {
            auto found = [](std::int64_t l) { return l ? std::to_string(l) : std::string("none"); };
            out << "sdlens demo: planted " << opt->family << " model (d " << c.hidden_size << ", " << L << " layers) in "
                << j["model"].get<std::string>() << "\n"
                << "probe: BOS, 5 tokens, a delimiter (id " << delim << "), 9 tokens\n\n"
                << std::fixed << std::setprecision(1)
                << "  explosion layer   found " << found(f.explosion) << "   planted " << truth.explosion_layer << "\n"
                << "  decay layer       found " << found(f.decay) << "   planted " << truth.decay_layer << "\n"
                << "  high-norm tokens  positions";
            for (auto t : f.high_tokens) out << ' ' << t;
            out << " (threshold " << emp.threshold << ", " << emp.states << " states, mean pairwise angle "
                << std::setprecision(2) << emp.mean_pairwise_angle_deg << " deg)\n"
                << "  empirical high-norm direction vs planted: " << std::setprecision(3)
                << (found_high ? acute_angle_degrees(emp.direction, truth.direction) : 90.0) << " deg\n\n"
                << " layer   trigger norm  ordinary norm   sigma_1(L)   u_1 vs empirical   u_1 vs planted\n";
            for (std::int64_t l = 0; l <= L; ++l) {
                out << std::setw(6) << l << std::setprecision(1) << std::setw(15) << mean_norm(static_cast<std::size_t>(l), true)
                    << std::setw(15) << mean_norm(static_cast<std::size_t>(l), false);
                if (l >= 1) {
                    const auto& lr = rows[static_cast<std::size_t>(l - 1)];
                    out << std::setprecision(2) << std::setw(13) << lr.sigma << std::setw(15) << lr.angle_empirical
                        << " deg" << std::setw(13) << lr.angle_planted << " deg";
                }
                out << "\n";
            }
            out << "\n  layers whose u_1 is within 5 deg of the empirical direction:";
            for (auto l : aligned) out << ' ' << l;
            out << "\n";
            for (const auto& e : eigs)
                out << "  layer " << e.layer << ": eigenvector of R best aligned to the empirical direction at "
                    << std::setprecision(2) << e.angle_empirical << " deg (" << e.angle_planted
                    << " deg to planted), eigenvalue " << std::setprecision(1) << e.eigenvalue << "\n";
            if (decay_eig_layer)
                out << "  decay layer " << decay_eig_layer << ": eigenvalue " << decay_eigenvalue << " at " << std::setprecision(2)
                    << decay_eig_angle << " deg (planted " << std::setprecision(1) << truth.decay_eigenvalue << ")\n";
        });
    });
}

}  // namespace sdlens::cli
