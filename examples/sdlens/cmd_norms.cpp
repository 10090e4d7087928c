// sdlens norms MODEL: the norm profile of a text (paper Fig. 1), every layer index by token.
// sdlens ablate MODEL: the same, and a greedy continuation, with v_1 of the explosion layer's FFN
// removed from that FFN's input, next to the unablated ones (Fig. 10).
#include <cstdint>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include <sdlens/analysis/ablation.hpp>
#include <sdlens/analysis/explosion_subspace.hpp>
#include <sdlens/analysis/norm_profile.hpp>

#include "analysis_cli.hpp"

namespace sdlens::cli {

namespace {

struct text_args {
    std::string model, tokenizer, text = probe_sentence, tokens, npy;
    bos_choice bos;
    bool json = false;
    void add_to(CLI::App* cmd)
    {
        cmd->add_option("model", model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        auto* t = cmd->add_option("--text", text, "Text (default: the paper's probe sentence)");
        auto* ids = cmd->add_option("--tokens", tokens, "Comma-separated token ids instead of a text");
        t->excludes(ids);
        bos.add_to(cmd);
        cmd->add_option("--tokenizer", tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
        cmd->add_flag("--json", json, "Print JSON");
    }
};

void print_profile(std::ostream& out, const Eigen::MatrixXd& norms, const std::vector<std::string>& pieces)
{
    out << "layer";
    for (const auto& p : pieces) out << ' ' << std::setw(9) << ("'" + printable_piece(p).substr(0, 7) + "'");
    out << '\n' << std::fixed << std::setprecision(2);
    for (Eigen::Index l = 0; l < norms.rows(); ++l) {
        out << std::setw(5) << l;
        for (Eigen::Index t = 0; t < norms.cols(); ++t) out << ' ' << std::setw(9) << norms(l, t);
        out << '\n';
    }
    out << std::defaultfloat;
}

}  // namespace

void register_norms(CLI::App& app)
{
    {
        auto a = std::make_shared<text_args>();
        auto* cmd = app.add_subcommand("norms", "Norm profile: the norm of every hidden state of a text, per layer index 0..L");
        a->add_to(cmd);
        cmd->add_option("--npy", a->npy, "Save the norms [(L+1), T] (float64) to this .npy file");
        cmd->callback([a] {
            const loaded_model lm = load_with_tokenizer(a->model, a->tokenizer);
            const std::vector<int> tokens = input_tokens(lm, a->text, a->tokens, a->bos);
            const norm_profile p = token_norms(lm.m, tokens);
            const auto pieces = pieces_of(lm, tokens);
            if (!a->npy.empty()) {
                std::vector<Eigen::VectorXd> rows;
                for (Eigen::Index l = 0; l < p.norms.rows(); ++l) rows.push_back(p.norms.row(l).transpose());
                write_npy_rows(a->npy, rows);
            }
            const nlohmann::json j{{"model", a->model}, {"tokens", tokens}, {"pieces", pieces}, {"norms", matrix_rows_json(p.norms)}};
            emit(a->json, j, [&](std::ostream& out) {
                out << "hidden-state norms, layer index 0 (embeddings) .. " << p.norms.rows() - 1 << " by token\n";
                print_profile(out, p.norms, pieces);
            });
        });
    }
    {
        struct ablate_args : text_args {
            int layer = 0, n = 16;
            std::string direction;
        };
        auto a = std::make_shared<ablate_args>();
        auto* cmd = app.add_subcommand("ablate", "Norms and a greedy continuation with v_1 removed from the explosion layer's FFN input");
        a->add_to(cmd);
        cmd->add_option("--layer", a->layer, "Explosion layer E, 1-based (default: found without data)");
        cmd->add_option("--direction", a->direction, "Direction to remove, a JSON file (default: v_1 of F at E)");
        cmd->add_option("-n", a->n, "Tokens to generate, greedily")->capture_default_str()->check(CLI::Range(0, 100000));
        cmd->callback([a] {
            const loaded_model lm = load_with_tokenizer(a->model, a->tokenizer);
            const std::vector<int> tokens = input_tokens(lm, a->text, a->tokens, a->bos);
            const int E = explosion_layer_or_detect(lm.m, a->layer, "ablate");
            Eigen::VectorXd v;
            if (!a->direction.empty()) v = direction_for(lm.m, a->direction);
            else {
                layer_analysis_options o;
                o.k = 1;
                v = ffn_right_singular_vectors(lm.m, E, o).v.col(0);
            }
            const int stop = lm.tok ? lm.tok->eos() : -1;
            const ablation_result r = ablate_direction(lm.m, tokens, E, v, a->n, stop);
            auto text_of = [&](const std::vector<int>& t) { return lm.tok ? lm.tok->decode(t) : std::string(); };
            const nlohmann::json j{{"model", a->model},
                                   {"layer", E},
                                   {"tokens", tokens},
                                   {"pieces", pieces_of(lm, tokens)},
                                   {"norms", matrix_rows_json(r.plain.norms)},
                                   {"ablated_norms", matrix_rows_json(r.ablated.norms)},
                                   {"continuation", r.plain_continuation},
                                   {"ablated_continuation", r.ablated_continuation},
                                   {"continuation_text", text_of(r.plain_continuation)},
                                   {"ablated_continuation_text", text_of(r.ablated_continuation)},
                                   {"max_norm", r.plain.norms.maxCoeff()},
                                   {"ablated_max_norm", r.ablated.norms.maxCoeff()}};
            emit(a->json, j, [&](std::ostream& out) {
                const auto pieces = pieces_of(lm, tokens);
                out << "unablated norms:\n";
                print_profile(out, r.plain.norms, pieces);
                out << "\nwith v_1 removed from the FFN input of layer " << E << ":\n";
                print_profile(out, r.ablated.norms, pieces);
                out << "\nlargest norm " << r.plain.norms.maxCoeff() << " -> " << r.ablated.norms.maxCoeff() << "\n";
                if (a->n > 0 && lm.tok)
                    out << "continuation:         '" << printable_piece(text_of(r.plain_continuation)) << "'\n"
                        << "ablated continuation: '" << printable_piece(text_of(r.ablated_continuation)) << "'\n";
            });
        });
    }
}

}  // namespace sdlens::cli
