// sdlens directions MODEL: the layer-wise singular defect directions (paper Sec. 3.1): for each
// layer, the top singular values of the linearized layer L (or of its FFN F with --ffn, the
// explosion subspace of Sec. 3.4) and, with --vectors, u_1 and v_1. Matrix-free Lanczos over the
// weights read in place, one layer at a time.
#include <cstdint>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/model/load.hpp>

#include "cli.hpp"

namespace sdlens::cli {

namespace {

nlohmann::json vector_json(const Eigen::VectorXd& v) { return std::vector<double>(v.data(), v.data() + v.size()); }

}  // namespace

void register_directions(CLI::App& app)
{
    struct options {
        std::string model, tokenizer, layers, precision = "double";
        std::int64_t k = 5;
        std::int64_t monte_carlo = 0;
        std::uint64_t seed = 0;
        bool vectors = false, json = false, ffn = false, center = false;
    };
    auto opt = std::make_shared<options>();
    auto* cmd = app.add_subcommand("directions", "Layer-wise singular defect directions: top singular values/vectors of each linearized layer");
    cmd->add_option("model", opt->model, "Model: Hugging Face directory or .safetensors file, GGUF file, llama2.c .bin")->required();
    cmd->add_option("--k", opt->k, "Number of singular values per layer")->capture_default_str()->check(CLI::Range(1, 1000));
    cmd->add_option("--layers", opt->layers, "Layers, 1-based, e.g. 1-5,8 (default: all)");
    cmd->add_flag("--vectors", opt->vectors, "Also output u_1 and v_1");
    cmd->add_flag("--ffn", opt->ffn, "Singular vectors of the FFN map F instead of L (the explosion subspace)");
    cmd->add_option("--monte-carlo", opt->monte_carlo, "Estimate F1 the paper's way, by lstsq on this many Gaussian samples (default: exact)");
    cmd->add_option("--seed", opt->seed, "Seed of the Monte-Carlo samples")->capture_default_str();
    cmd->add_option("--precision", opt->precision,
                    "Arithmetic of the operators: double, or float (about twice as fast; directions to ~1e-5 rad)")
        ->capture_default_str()
        ->check(CLI::IsMember({"double", "float"}));
    cmd->add_flag("--center", opt->center, "LayerNorm models: include the centring projection I - 11^T/d");
    cmd->add_option("--tokenizer", opt->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
    cmd->add_flag("--json", opt->json, "Print JSON");
    cmd->callback([opt] {
        load_options lo;
        lo.tokenizer_path = opt->tokenizer;
        const model m = load_model(opt->model, lo);
        const auto layers = parse_layer_ranges(opt->layers, static_cast<std::int64_t>(m.layers.size()));
        layer_analysis_options ao;
        ao.k = std::min<std::int64_t>(opt->k, m.config.hidden_size);
        ao.linearize.center_layernorm = opt->center;
        ao.precision = opt->precision == "float" ? operator_precision::single : operator_precision::double_;
        if (opt->monte_carlo > 0) {
            ao.linearize.estimator = ffn_estimator::monte_carlo;
            ao.linearize.monte_carlo_samples = opt->monte_carlo;
            ao.linearize.monte_carlo_seed = opt->seed;
        }
        nlohmann::json j;
        j["model"] = opt->model;
        j["map"] = opt->ffn ? "F" : "L";
        j["estimator"] = opt->monte_carlo > 0 ? "monte_carlo" : "exact";
        j["precision"] = opt->precision;
        j["layers"] = nlohmann::json::array();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            progress("directions: layer " + std::to_string(layers[i]) + " (" + std::to_string(i + 1) + "/" + std::to_string(layers.size()) + ")");
            const auto r = layer_singular_triplets(m, layers[i], ao, opt->ffn ? layer_map::ffn : layer_map::layer);
            // Done with this layer: keep one layer of the mapped model resident, not all of them.
            release_layer_pages(m.layers[static_cast<std::size_t>(layers[i] - 1)]);
            nlohmann::json l{{"layer", r.layer},
                             {"sigma", vector_json(r.sigma)},
                             {"restarts", r.restarts},
                             {"applications", r.applications},
                             {"residual", r.residuals.maxCoeff()}};
            if (opt->vectors) {
                l["u"] = vector_json(r.u.col(0));
                l["v"] = vector_json(r.v.col(0));
            }
            j["layers"].push_back(std::move(l));
        }
        progress_done();
        emit(opt->json, j, [&](std::ostream& out) {
            out << "singular values of " << (opt->ffn ? "F" : "L") << " per layer (" << j["estimator"].get<std::string>() << " F1)\n";
            out << std::setw(6) << "layer" << std::setw(12) << "sigma_1" << std::setw(12) << "sigma_2" << std::setw(10) << "s1/s2"
                << std::setw(8) << "passes" << std::setw(12) << "residual" << "\n";
            for (const auto& l : j["layers"]) {
                const auto s = l["sigma"].get<std::vector<double>>();
                out << std::setw(6) << l["layer"].get<std::int64_t>() << std::fixed << std::setprecision(4) << std::setw(12) << s[0];
                if (s.size() > 1) out << std::setw(12) << s[1] << std::setw(10) << std::setprecision(3) << s[0] / s[1];
                else out << std::setw(22) << "";
                out << std::setw(8) << l["applications"].get<std::int64_t>() << std::scientific << std::setprecision(2) << std::setw(12)
                    << l["residual"].get<double>() << std::defaultfloat << "\n";
                if (opt->vectors) {
                    out << "        u_1:";
                    for (double x : l["u"]) out << ' ' << std::setprecision(5) << x;
                    out << "\n        v_1:";
                    for (double x : l["v"]) out << ' ' << std::setprecision(5) << x;
                    out << "\n";
                }
            }
        });
    });
}

}  // namespace sdlens::cli
