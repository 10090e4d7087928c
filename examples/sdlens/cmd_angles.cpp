// sdlens angles MODEL --direction FILE: per layer, the angle between u_1 of L and the direction
// (paper Fig. 4), and the smallest angle over all eigenvectors of R with its eigenvalue (Fig. 5).
// sdlens stability A B C ...: angles between the directions of checkpoints, in order (Fig. 12, 14).
#include <cstdint>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/direction_stability.hpp>
#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/analysis/layer_angles.hpp>
#include <sdlens/io/corpus.hpp>

#include "analysis_cli.hpp"

namespace sdlens::cli {

void register_angles(CLI::App& app)
{
    {
        struct args {
            std::string model, direction, layers, method = "auto";
            std::int64_t dense_limit = 2048;
            bool no_eig = false, json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("angles", "Per layer: angle of u_1 of L, and of the best-aligned eigenvector of R, to a direction");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--direction", a->direction, "Direction, a JSON file such as `sdlens empirical --out` writes")->required();
        cmd->add_option("--layers", a->layers, "Layers, 1-based, e.g. 1-5,8 (default: all)");
        cmd->add_flag("--no-eig", a->no_eig, "Only u_1, without the search over the eigenvectors of R");
        cmd->add_option("--eig-method", a->method, "Eigenvector search: dense (exact, O(d^3)), iterative (matrix-free), or auto (dense up to --dense-limit)")
            ->capture_default_str()
            ->check(CLI::IsMember({"auto", "dense", "iterative"}));
        cmd->add_option("--dense-limit", a->dense_limit, "auto: largest hidden size searched densely")->capture_default_str();
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            const model m = load_model(a->model);
            const Eigen::VectorXd dir = direction_for(m, a->direction);
            layer_angle_options o;
            o.layers = parse_layer_ranges(a->layers, static_cast<std::int64_t>(m.layers.size()));
            o.eigen = !a->no_eig;
            o.dense_limit = a->dense_limit;
            o.search = a->method == "dense" ? eigen_search::dense : a->method == "iterative" ? eigen_search::iterative : eigen_search::automatic;
            std::vector<layer_angle_row> rows;
            {
                progress_meter meter("angles");
                rows = layer_angles(m, dir, o, [&](std::int64_t i, std::int64_t n) { meter("layer", i, n); });
            }
            nlohmann::json j{{"model", a->model}, {"direction", a->direction}};
            j["layers"] = nlohmann::json::array();
            for (const auto& r : rows) {
                nlohmann::json row{{"layer", r.layer}, {"sigma_1", r.sigma_1}, {"u1_angle_deg", r.u1_angle_deg}};
                if (o.eigen) {
                    row["eig_angle_deg"] = r.eig_angle_deg;
                    row["eigenvalue"] = {r.eigenvalue.real(), r.eigenvalue.imag()};
                    row["eig_method"] = r.eig_method;
                    if (std::string(r.eig_method) == "iterative") {
                        row["rqi_converged"] = r.rqi_converged;
                        row["rqi_backward_error"] = r.rqi_residual;
                        row["applications"] = r.applications;
                    }
                }
                j["layers"].push_back(row);
            }
            emit(a->json, j, [&](std::ostream& out) {
                out << " layer     sigma_1   u_1 angle" << (o.eigen ? "   eig angle   eigenvalue" : "") << "\n" << std::fixed;
                for (const auto& r : rows) {
                    out << std::setw(6) << r.layer << std::setprecision(3) << std::setw(12) << r.sigma_1 << std::setprecision(2) << std::setw(10)
                        << r.u1_angle_deg << " deg";
                    if (o.eigen)
                        out << std::setw(8) << r.eig_angle_deg << " deg   " << std::setprecision(3) << r.eigenvalue.real()
                            << (r.eigenvalue.imag() >= 0 ? " + " : " - ") << std::abs(r.eigenvalue.imag()) << "i";
                    out << '\n';
                }
            });
        });
    }
    {
        struct args {
            std::vector<std::string> models;
            std::string corpus;
            std::int64_t lines = 1000;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("stability", "Angles between the singular defect directions of checkpoints, in order");
        cmd->add_option("models", a->models, "Two or more checkpoints of one architecture, in order")->required()->expected(2, 1000);
        cmd->add_option("--corpus", a->corpus, "Compare empirical directions of this corpus instead of the layer-wise ones");
        cmd->add_option("--lines", a->lines, "Corpus lines to use")->capture_default_str();
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            // One model in memory at a time: each gives its directions, then is closed.
            std::vector<Eigen::MatrixXd> dirs;
            for (std::size_t i = 0; i < a->models.size(); ++i) {
                const loaded_model lm = load_with_tokenizer(a->models[i]);
                progress_meter meter("stability");
                const std::string step = "checkpoint " + std::to_string(i + 1) + "/" + std::to_string(a->models.size());
                if (a->corpus.empty()) {
                    dirs.push_back(layer_wise_directions(lm.m, {}, [&](std::int64_t l, std::int64_t n) { meter(step + ", layer", l, n); }));
                } else {
                    const tokenizer& tok = need_tokenizer(lm, "");
                    corpus_options co;
                    co.max_lines = a->lines;
                    corpus_reader reader(a->corpus, co);
                    sequence_source next = [&]() -> std::optional<std::vector<int>> {
                        auto line = reader.next();
                        if (!line) return std::nullopt;
                        return tok.encode(*line, tok.adds_bos());
                    };
                    const empirical_result e = empirical_high_norm_direction(lm.m, next, {}, [&](const char* s, std::int64_t done) {
                        meter(step + ", " + s + ", line", done, a->lines);
                    });
                    if (!e.direction.size()) fail_input(a->models[i], "no high-norm state in the corpus: no empirical direction");
                    dirs.push_back(e.direction);
                }
                if (i > 0 && (dirs[i].rows() != dirs[0].rows() || dirs[i].cols() != dirs[0].cols()))
                    fail_input(a->models[i], "its directions are " + std::to_string(dirs[i].rows()) + " x " + std::to_string(dirs[i].cols()) +
                                                 ", the first checkpoint's " + std::to_string(dirs[0].rows()) + " x " + std::to_string(dirs[0].cols()));
            }
            nlohmann::json j{{"models", a->models}, {"method", a->corpus.empty() ? "layer-wise" : "empirical"}, {"pairs", nlohmann::json::array()}};
            struct pair_angles {
                std::size_t a, b;
                Eigen::VectorXd angles;
            };
            std::vector<pair_angles> pairs;
            for (std::size_t i = 0; i + 1 < dirs.size(); ++i) pairs.push_back({i, i + 1, corresponding_angles(dirs[i], dirs[i + 1])});
            for (std::size_t i = 0; i + 2 < dirs.size(); ++i) pairs.push_back({i, dirs.size() - 1, corresponding_angles(dirs[i], dirs.back())});
            for (const auto& p : pairs)
                j["pairs"].push_back({{"a", p.a}, {"b", p.b}, {"angles_deg", vector_json(p.angles)}, {"min_angle_deg", p.angles.minCoeff()}});
            emit(a->json, j, [&](std::ostream& out) {
                out << (a->corpus.empty() ? "layer-wise directions (u_1 of L per layer)" : "empirical directions") << "; acute angles in degrees\n";
                for (const auto& p : pairs) {
                    out << "  " << a->models[p.a] << " -> " << a->models[p.b] << ": min " << std::fixed << std::setprecision(2) << p.angles.minCoeff();
                    if (p.angles.size() > 1) {
                        out << "  per layer:";
                        for (Eigen::Index l = 0; l < p.angles.size(); ++l) out << ' ' << p.angles[l];
                    }
                    out << '\n' << std::defaultfloat;
                }
            });
        });
    }
}

}  // namespace sdlens::cli
