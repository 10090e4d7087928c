// sdlens paths MODEL: exploding paths (paper Sec. 3.3, Fig. 6, 7): every token alone without
// attention, every token at position 0, and random embeddings, through the explosion layer.
// sdlens subspace MODEL: the explosion subspace (Sec. 3.4, Fig. 8): +-v_i of F through the real FFN.
// sdlens coefficients MODEL: coefficients on v_1 of the FFN input at positions 0 and 1 (Fig. 9).
#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/coefficients.hpp>
#include <sdlens/analysis/exploding_paths.hpp>
#include <sdlens/analysis/explosion_subspace.hpp>

#include "analysis_cli.hpp"

namespace sdlens::cli {

namespace {

nlohmann::json top_json(const loaded_model& lm, const Eigen::VectorXd& norms, std::int64_t k)
{
    nlohmann::json a = nlohmann::json::array();
    for (const auto& t : top_tokens(norms, k)) a.push_back({{"token", t.token}, {"piece", piece_of(lm, t.token)}, {"norm", t.norm}});
    return a;
}

}  // namespace

void register_paths(CLI::App& app)
{
    {
        struct args {
            std::string model, tokenizer, npy;
            int layer = 0;
            std::int64_t top = 10, batch = 256;
            std::uint64_t seed = 2024;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("paths", "Exploding paths: the vocabulary through the explosion layer, without attention and at position 0");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--layer", a->layer, "Explosion layer E, 1-based (default: found without data)");
        cmd->add_option("--top", a->top, "Tokens to list")->capture_default_str()->check(CLI::NonNegativeNumber);
        cmd->add_option("--batch", a->batch, "Sequences per pass")->capture_default_str()->check(CLI::Range(1, 1 << 20));
        cmd->add_option("--seed", a->seed, "Seed of the random embeddings")->capture_default_str();
        cmd->add_option("--npy", a->npy, "Save [embedding norm, no attention, initial, random sorted] x vocab (float64, NaN = masked/absent)");
        cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            const loaded_model lm = load_with_tokenizer(a->model, a->tokenizer);
            need_tokenizer(lm, ": paths names its tokens by their pieces");
            exploding_paths_options o;
            o.layer = explosion_layer_or_detect(lm.m, a->layer, "paths");
            o.batch = a->batch;
            o.seed = a->seed;
            exploding_paths_result r;
            {
                progress_meter meter("paths");
                r = exploding_paths(lm.m, o, [&](const char* step, std::int64_t i, std::int64_t n) { meter(step, i, n); });
            }
            if (!a->npy.empty()) write_npy_rows(a->npy, {r.embedding_norms, r.no_attention, r.initial, r.random_sorted});
            std::vector<int> masked;
            for (std::size_t t = 0; t < r.masked.size(); ++t)
                if (r.masked[t]) masked.push_back(static_cast<int>(t));
            const nlohmann::json j{
                {"model", a->model},
                {"layer", r.layer},
                {"mean_embedding_norm", r.mean_embedding_norm},
                {"no_attention", {{"norms", vector_json(r.no_attention)}, {"masked", masked}, {"top", top_json(lm, r.no_attention, a->top)}}},
                {"initial", {{"norms", vector_json(r.initial)}, {"top", top_json(lm, r.initial, a->top)}}},
                {"random", {{"sorted_norms", vector_json(r.random_sorted)}}}};
            emit(a->json, j, [&](std::ostream& out) {
                out << "norms after layer " << r.layer << " of every token alone (" << masked.size() << " untrained tokens masked)\n";
                auto list = [&](const char* title, const Eigen::VectorXd& n) {
                    out << title << '\n';
                    for (const auto& t : top_tokens(n, a->top))
                        out << "  " << std::setw(8) << t.token << "  '" << printable_piece(piece_of(lm, t.token)) << "'  " << std::fixed
                            << std::setprecision(2) << t.norm << '\n' << std::defaultfloat;
                };
                list("without attention, largest:", r.no_attention);
                list("at position 0 with attention, largest:", r.initial);
                if (r.random_sorted.size())
                    out << "random embeddings at position 0: largest " << r.random_sorted[0] << ", median "
                        << r.random_sorted[r.random_sorted.size() / 2] << ", smallest " << r.random_sorted[r.random_sorted.size() - 1] << '\n';
            });
        });
    }
    {
        struct args {
            std::string model, k = "64", npy;
            int layer = 0;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("subspace", "Explosion subspace: each right singular vector +-v_i of F through the layer's real FFN");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--layer", a->layer, "Explosion layer E, 1-based (default: found without data)");
        auto* k_option = cmd->add_option("--k", a->k, "Right singular vectors to feed, or 'all' (dense); default 64, at most d")->capture_default_str();
        cmd->add_option("--npy", a->npy, "Save [sigma, plus norms, minus norms] x k (float64)");
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a, k_option] {
            const model m = load_model(a->model);
            if (a->layer != 0) check_layer_option(m, a->layer);
            explosion_subspace_options o;
            if (a->k == "all") o.all = true;
            else {
                try {
                    std::size_t used = 0;
                    o.k = std::stoll(a->k, &used);
                    if (used != a->k.size()) throw std::invalid_argument(a->k);
                } catch (const std::exception&) {
                    fail_input("--k", "'" + a->k + "' is neither a number nor 'all'");
                }
                if (k_option->count() == 0) o.k = std::min<std::int64_t>(o.k, m.config.hidden_size);
                if (o.k < 1 || o.k > m.config.hidden_size)
                    fail_input("--k", std::to_string(o.k) + " is outside 1.." + std::to_string(m.config.hidden_size));
            }
            const int E = explosion_layer_or_detect(m, a->layer, "subspace");
            progress("subspace: singular vectors of F at layer " + std::to_string(E));
            const explosion_subspace_result r = explosion_subspace(m, E, o);
            progress_done();
            if (!a->npy.empty()) write_npy_rows(a->npy, {r.sigma, r.plus_norms, r.minus_norms});
            const nlohmann::json j{{"model", a->model},         {"layer", r.layer},
                                   {"method", r.method},        {"sigma", vector_json(r.sigma)},
                                   {"plus_norms", vector_json(r.plus_norms)}, {"minus_norms", vector_json(r.minus_norms)},
                                   {"ratio", r.ratio}};
            emit(a->json, j, [&](std::ostream& out) {
                out << "FFN output norms of +-v_i at layer " << r.layer << " (" << r.method << ")\n    i      sigma_i     +v_i       -v_i\n" << std::fixed;
                for (Eigen::Index i = 0; i < r.sigma.size() && i < 16; ++i)
                    out << std::setw(5) << i + 1 << std::setprecision(4) << std::setw(12) << r.sigma[i] << std::setprecision(2) << std::setw(11)
                        << r.plus_norms[i] << std::setw(11) << r.minus_norms[i] << '\n';
                if (r.sigma.size() > 16) out << "  ... " << r.sigma.size() - 16 << " more in --json\n";
                out << "v_1's output norm over the largest other: " << std::setprecision(1) << r.ratio << "x\n";
            });
        });
    }
    {
        struct args {
            std::string model, direction, npy;
            int layer = 0, first = -1;
            std::int64_t batch = 256;
            bool json = false;
        };
        auto a = std::make_shared<args>();
        auto* cmd = app.add_subcommand("coefficients", "Coefficient on v_1 of each token's FFN input at the explosion layer, at position 0 and 1");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--layer", a->layer, "Explosion layer E, 1-based (default: found without data)");
        cmd->add_option("--direction", a->direction, "Direction, a JSON file (default: v_1 of F at E)");
        cmd->add_option("--first-token", a->first, "The token before each at position 1 (default: the ordinary token of median embedding norm)");
        cmd->add_option("--batch", a->batch, "Sequences per pass")->capture_default_str()->check(CLI::Range(1, 1 << 20));
        cmd->add_option("--npy", a->npy, "Save [token, initial, second] x tokens (float64)");
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] {
            const model m = load_model(a->model);
            const int E = explosion_layer_or_detect(m, a->layer, "coefficients");
            Eigen::VectorXd v;
            if (!a->direction.empty()) v = direction_for(m, a->direction);
            else {
                layer_analysis_options lo;
                lo.k = 1;
                v = ffn_right_singular_vectors(m, E, lo).v.col(0);
            }
            coefficients_options o;
            o.layer = E;
            o.first_token = a->first;
            o.batch = a->batch;
            if (a->first >= m.token_embedding.rows) fail_input("--first-token", std::to_string(a->first) + " is outside the vocabulary");
            coefficients_result r;
            {
                progress_meter meter("coefficients");
                r = ffn_input_coefficients(m, v, o, [&](const char* step, std::int64_t i, std::int64_t n) { meter(step, i, n); });
            }
            Eigen::VectorXd ids(static_cast<Eigen::Index>(r.tokens.size()));
            for (std::size_t i = 0; i < r.tokens.size(); ++i) ids[static_cast<Eigen::Index>(i)] = r.tokens[i];
            if (!a->npy.empty()) write_npy_rows(a->npy, {ids, r.initial, r.second});
            const nlohmann::json j{{"model", a->model},   {"layer", r.layer},
                                   {"first_token", r.first_token}, {"tokens", r.tokens},
                                   {"initial", vector_json(r.initial)}, {"second", vector_json(r.second)}};
            emit(a->json, j, [&](std::ostream& out) {
                const Eigen::VectorXd ai = r.initial.cwiseAbs(), as = r.second.cwiseAbs();
                out << "|coefficient on v_1| of the FFN input at layer " << r.layer << ", " << r.tokens.size() << " tokens\n" << std::fixed
                    << std::setprecision(3) << "  position 0 (alone):                 mean " << ai.mean() << ", max " << ai.maxCoeff() << '\n'
                    << "  position 1 (after token " << r.first_token << "):" << std::string(r.first_token < 10 ? 10 : r.first_token < 100 ? 9 : 8, ' ')
                    << "mean " << as.mean() << ", max " << as.maxCoeff() << '\n';
            });
        });
    }
}

}  // namespace sdlens::cli
