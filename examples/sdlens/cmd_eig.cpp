// sdlens eig MODEL: the decay analysis (paper Sec. 3.2): the largest-magnitude eigenvalues of each
// layer's R = L - I and the eigenvector best aligned to a direction (a file, or else the layer's
// own u_1), with its eigenvalue's real part: negative at a decay layer (R x ~ -x).
#include <cstdint>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/model/load.hpp>

#include "cli.hpp"

namespace sdlens::cli {

void register_eig(CLI::App& app)
{
    struct options {
        std::string model, tokenizer, layers, direction;
        std::int64_t k = 10;
        bool json = false, center = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("eig", "Eigenvalues of each linearized layer's R = L - I and the eigenvector best aligned to a direction");
    cmd->add_option("model", opt->model, "Model: Hugging Face directory or .safetensors file, GGUF file, llama2.c .bin")->required();
    cmd->add_option("--direction", opt->direction,
                    "JSON file with the direction: {\"direction\": [...]}, a bare array, or a ground_truth.json (default: each layer's u_1)");
    cmd->add_option("--k", opt->k, "Number of eigenvalues per layer (largest magnitude)")->capture_default_str()->check(CLI::Range(1, 1000));
    cmd->add_option("--layers", opt->layers, "Layers, 1-based, e.g. 1-5,8 (default: all)");
    cmd->add_flag("--center", opt->center, "LayerNorm models: include the centring projection I - 11^T/d");
    cmd->add_option("--tokenizer", opt->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
    cmd->add_flag("--json", opt->json, "Print JSON");
    cmd->callback([opt] {
        Eigen::VectorXd direction;
        if (!opt->direction.empty()) direction = read_direction_file(opt->direction);
        load_options lo;
        lo.tokenizer_path = opt->tokenizer;
        const model m = load_model(opt->model, lo);
        if (direction.size() > 0 && direction.size() != m.config.hidden_size)
            fail_input(opt->direction, "the direction has " + std::to_string(direction.size()) +
                                           " elements but the model's hidden size is " + std::to_string(m.config.hidden_size));
        const auto layers = parse_layer_ranges(opt->layers, static_cast<std::int64_t>(m.layers.size()));
        layer_analysis_options ao;
        ao.k = std::min<std::int64_t>(opt->k, m.config.hidden_size);
        ao.linearize.center_layernorm = opt->center;
        nlohmann::json j;
        j["model"] = opt->model;
        j["aligned_to"] = opt->direction.empty() ? std::string("u1") : opt->direction;
        j["layers"] = nlohmann::json::array();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            progress("eig: layer " + std::to_string(layers[i]) + " (" + std::to_string(i + 1) + "/" + std::to_string(layers.size()) + ")");
            Eigen::VectorXd target = direction;
            if (opt->direction.empty()) {
                layer_analysis_options one = ao;
                one.k = 1;
                target = layer_singular_triplets(m, layers[i], one).u.col(0);
            }
            const auto r = layer_eigen_analysis(m, layers[i], target, ao);
            // Done with this layer: keep one layer of the mapped model resident, not all of them.
            release_layer_pages(m.layers[static_cast<std::size_t>(layers[i] - 1)]);
            auto values = nlohmann::json::array();
            for (Eigen::Index e = 0; e < r.eigenvalues.size(); ++e) values.push_back({r.eigenvalues[e].real(), r.eigenvalues[e].imag()});
            j["layers"].push_back({{"layer", r.layer},
                                   {"eigenvalues", values},
                                   {"best_aligned", {{"index", r.best.index},
                                                     {"angle_deg", r.best.angle_degrees},
                                                     {"eigenvalue", r.best.eigenvalue.real()},
                                                     {"eigenvalue_imag", r.best.eigenvalue.imag()}}},
                                   {"applications", r.applications}});
        }
        progress_done();
        emit(opt->json, j, [&](std::ostream& out) {
            out << "eigenvalues of R = L - I, best-aligned eigenvector (real part) vs "
                << (opt->direction.empty() ? std::string("each layer's u_1") : opt->direction) << "\n";
            out << std::setw(6) << "layer" << std::setw(12) << "angle_deg" << std::setw(14) << "Re(lambda)" << "   top eigenvalues\n";
            for (const auto& l : j["layers"]) {
                out << std::setw(6) << l["layer"].get<std::int64_t>() << std::fixed << std::setprecision(3) << std::setw(12)
                    << l["best_aligned"]["angle_deg"].get<double>() << std::setw(14) << l["best_aligned"]["eigenvalue"].get<double>() << "  ";
                int shown = 0;
                for (const auto& e : l["eigenvalues"]) {
                    if (shown++ == 5) {
                        out << " ...";
                        break;
                    }
                    const double re = e[0], im = e[1];
                    out << ' ' << std::setprecision(3) << re;
                    if (im != 0) out << (im > 0 ? "+" : "-") << std::abs(im) << "i";
                }
                out << std::defaultfloat << "\n";
            }
        });
    });
}

}  // namespace sdlens::cli
