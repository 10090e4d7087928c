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

#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/forward/forward.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>

#include "cli.hpp"

namespace sdlens::cli {

nlohmann::json write_planted_model(const planted_model& p, const std::string& out_dir, dtype type, bool gguf);  // cmd_plant.cpp

namespace {

struct demo_findings {
    std::vector<std::vector<double>> norms;  // [layer index 0..L][position]
    double threshold = 0;
    Eigen::VectorXd empirical;  // normalized mean of the states above the threshold
    std::int64_t high_states = 0;
    double mean_pairwise_angle = 0;
    std::int64_t explosion = 0, decay = 0;  // 1-based; 0 = not found
    std::vector<std::int64_t> high_tokens;  // positions whose norm ever exceeds the threshold
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// Norms, threshold, empirical direction, and the explosion/decay layers from the hidden states.
demo_findings analyse_states(const xt::xtensor<float, 3>& h)
{
    demo_findings f;
    const std::size_t layers = h.shape(0), T = h.shape(1), d = h.shape(2);
    std::vector<double> all;
    f.norms.assign(layers, std::vector<double>(T));
    for (std::size_t l = 0; l < layers; ++l)
        for (std::size_t t = 0; t < T; ++t) {
            double s = 0;
            for (std::size_t k = 0; k < d; ++k) s += double(h(l, t, k)) * double(h(l, t, k));
            f.norms[l][t] = std::sqrt(s);
            all.push_back(f.norms[l][t]);
        }
    // High-norm states are tens of times the typical one; 20 x the median separates them.
    f.threshold = 20 * median(all);
    std::vector<Eigen::VectorXd> high;
    f.empirical = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(d));
    for (std::size_t l = 0; l < layers; ++l)
        for (std::size_t t = 0; t < T; ++t)
            if (f.norms[l][t] > f.threshold) {
                Eigen::VectorXd x(d);
                for (std::size_t k = 0; k < d; ++k) x[static_cast<Eigen::Index>(k)] = h(l, t, k);
                // Directions have no sign: orient each state like the first before averaging.
                if (!high.empty() && x.dot(high.front()) < 0) x = -x;
                f.empirical += x;
                high.push_back(x);
            }
    f.high_states = static_cast<std::int64_t>(high.size());
    if (high.empty()) return f;
    f.empirical.normalize();
    double sum = 0;
    std::int64_t pairs = 0;
    for (std::size_t i = 0; i < high.size(); ++i)
        for (std::size_t j = i + 1; j < high.size(); ++j, ++pairs) sum += acute_angle_degrees(high[i], high[j]);
    f.mean_pairwise_angle = pairs ? sum / static_cast<double>(pairs) : 0;
    for (std::size_t t = 0; t < T; ++t) {
        bool any = false;
        for (std::size_t l = 0; l < layers; ++l) any = any || f.norms[l][t] > f.threshold;
        if (any) f.high_tokens.push_back(static_cast<std::int64_t>(t));
    }
    // Explosion: the first layer whose output puts a token above the threshold; decay: the first
    // later layer after which every high-norm token is below it again.
    for (std::size_t l = 1; l < layers && !f.explosion; ++l)
        for (auto t : f.high_tokens)
            if (f.norms[l][t] > f.threshold && f.norms[l - 1][t] <= f.threshold) f.explosion = static_cast<std::int64_t>(l);
    for (std::size_t l = static_cast<std::size_t>(f.explosion) + 1; f.explosion && l < layers && !f.decay; ++l) {
        bool all_low = true;
        for (auto t : f.high_tokens) all_low = all_low && f.norms[l][t] <= f.threshold;
        bool was_high = false;
        for (auto t : f.high_tokens) was_high = was_high || f.norms[l - 1][t] > f.threshold;
        if (all_low && was_high) f.decay = static_cast<std::int64_t>(l);
    }
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
        po.explosion_layer = 2;
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
        const demo_findings f = analyse_states(r.hidden);

        const std::int64_t L = m.config.num_layers;
        layer_analysis_options ao;
        ao.k = 3;
        struct layer_row {
            double sigma = 0, angle_empirical = 90, angle_planted = 90;
        };
        std::vector<layer_row> rows(static_cast<std::size_t>(L));
        std::vector<std::int64_t> aligned;
        for (std::int64_t l = 1; l <= L; ++l) {
            progress("layer-wise directions: layer " + std::to_string(l) + "/" + std::to_string(L));
            const auto s = layer_singular_triplets(m, l, ao);
            layer_row& row = rows[static_cast<std::size_t>(l - 1)];
            row.sigma = s.sigma[0];
            row.angle_empirical = f.high_states ? acute_angle_degrees(s.u.col(0), f.empirical) : 90;
            row.angle_planted = acute_angle_degrees(s.u.col(0), truth.direction);
            if (row.angle_empirical < 5) aligned.push_back(l);
        }
        struct eig_row {
            std::int64_t layer;
            double angle_empirical, angle_planted, eigenvalue;
        };
        std::vector<eig_row> eigs;
        for (std::int64_t l : aligned) {
            progress("eigenvectors of R: layer " + std::to_string(l));
            const auto e = layer_eigen_analysis(m, l, f.empirical, ao);
            const Eigen::VectorXd v = e.eigenvectors.col(e.best.index).real();
            eigs.push_back({l, e.best.angle_degrees, acute_angle_degrees(v, truth.direction), e.best.eigenvalue.real()});
        }
        progress_done();

        // Trigger tokens = the probe positions that became high-norm; ordinary = the others.
        auto mean_norm = [&](std::size_t l, bool high) {
            double s = 0;
            int n = 0;
            for (std::size_t t = 0; t < probe.size(); ++t) {
                const bool is_high = std::find(f.high_tokens.begin(), f.high_tokens.end(), std::int64_t(t)) != f.high_tokens.end();
                if (is_high == high) s += f.norms[l][t], ++n;
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
                      {"threshold", f.threshold},
                      {"high_norm_states", f.high_states},
                      {"mean_pairwise_angle_degrees", f.mean_pairwise_angle},
                      {"empirical_vs_planted_degrees", f.high_states ? acute_angle_degrees(f.empirical, truth.direction) : 90.0}};
        auto layers = nlohmann::json::array();
        for (std::int64_t l = 0; l <= L; ++l) {
            nlohmann::json row{{"layer", l}, {"norms", f.norms[static_cast<std::size_t>(l)]},
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
            out << " (threshold " << f.threshold << ", " << f.high_states << " states, mean pairwise angle "
                << std::setprecision(2) << f.mean_pairwise_angle << " deg)\n"
                << "  empirical high-norm direction vs planted: " << std::setprecision(3)
                << (f.high_states ? acute_angle_degrees(f.empirical, truth.direction) : 90.0) << " deg\n\n"
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
