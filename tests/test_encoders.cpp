// BERT, RoBERTa and DistilBERT, the paper's contrast (bidirectional post-norm encoders, no
// high-norm tokens): released config.json files read as transformers reads them, random
// encoders written and read back, the forward pass against the float64 reference (which does
// the post-norms, the embedding LayerNorm, token type 0, RoBERTa's position offset and the
// missing causal mask by itself), and the CLI: norms runs, directions says in one line why not.
#include <algorithm>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

using namespace sdlens;
using nlohmann::json;
using test::hidden_at;
using test::relative_error;

namespace {

const model_family encoders[] = {model_family::bert, model_family::roberta, model_family::distilbert};

std::vector<int> tokens_of(const model_config& c, int T)
{
    std::vector<int> t(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) t[static_cast<std::size_t>(i)] = static_cast<int>((3u + 17u * static_cast<unsigned>(i * i + i)) % c.vocab_size);
    return t;
}

}  // namespace

TEST_CASE("encoders: bert-base, roberta-base and distilbert-base config.json files")
{
    const json bert = {{"architectures", {"BertForMaskedLM"}}, {"hidden_act", "gelu"}, {"hidden_size", 768}, {"intermediate_size", 3072},
                       {"layer_norm_eps", 1e-12}, {"max_position_embeddings", 512}, {"model_type", "bert"}, {"num_attention_heads", 12},
                       {"num_hidden_layers", 12}, {"pad_token_id", 0}, {"position_embedding_type", "absolute"}, {"type_vocab_size", 2},
                       {"vocab_size", 30522}};
    const model_config b = hf_model_config(bert, "bert-base-uncased/config.json");
    CHECK(b.family == model_family::bert);
    CHECK(b.post_norm);
    CHECK(b.bidirectional);
    CHECK(b.token_types == 2);
    CHECK(b.position_offset == 0);
    CHECK(b.head_dim == 64);
    CHECK(b.learned_positions);
    const json roberta = {{"architectures", {"RobertaForMaskedLM"}}, {"bos_token_id", 0}, {"eos_token_id", 2}, {"hidden_act", "gelu"},
                          {"hidden_size", 768}, {"intermediate_size", 3072}, {"layer_norm_eps", 1e-5}, {"max_position_embeddings", 514},
                          {"model_type", "roberta"}, {"num_attention_heads", 12}, {"num_hidden_layers", 12}, {"pad_token_id", 1},
                          {"type_vocab_size", 1}, {"vocab_size", 50265}};
    const model_config r = hf_model_config(roberta, "roberta-base/config.json");
    CHECK(r.position_offset == 2);  // positions start at padding_idx + 1
    CHECK(r.token_types == 1);
    CHECK(r.norm_eps == 1e-5);
    const json distil = {{"activation", "gelu"}, {"architectures", {"DistilBertForMaskedLM"}}, {"dim", 768}, {"hidden_dim", 3072},
                         {"max_position_embeddings", 512}, {"model_type", "distilbert"}, {"n_heads", 12}, {"n_layers", 6},
                         {"pad_token_id", 0}, {"sinusoidal_pos_embds", false}, {"vocab_size", 30522}};
    const model_config d = hf_model_config(distil, "distilbert-base-uncased/config.json");
    CHECK(d.num_layers == 6);
    CHECK(d.ffn_size == 3072);
    CHECK(d.token_types == 0);
    CHECK(d.norm_eps == 1e-12);
    json relative = bert;
    relative["position_embedding_type"] = "relative_key";
    test::expect_input_error([&] { hf_model_config(relative, "config.json"); }, {"config.json", "relative_key"});
}

TEST_CASE("encoders: random checkpoints run as the float64 reference says, attending both ways")
{
    // float32 against float64, two layers of d = 64 (see test_forward.cpp); 24 tokens fit
    // RoBERTa's 64 - 2 positions.
    constexpr double tolerance = 1e-5;
    for (model_family f : encoders) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const model_config c = small_config(f);
        test::temp_dir dir;
        write_hf_checkpoint((dir / "m").string(), c, random_weights(c, 31), dtype::f32);
        const model m = load_model((dir / "m").string());
        CHECK(!m.lm_head);
        const auto tokens = tokens_of(c, 24);
        for (bool attention : {true, false}) {
            CAPTURE(attention);
            test::check_against_reference(m, tokens, attention, tolerance);
        }
        // Bidirectional: the last token changes the first position's state (a causal model's
        // position 0 sees only itself).
        forward_options o;
        o.hidden_states = true;
        o.logits = forward_options::logits_mode::none;
        std::vector<int> changed = tokens;
        changed.back() = (changed.back() + 1) % static_cast<int>(c.vocab_size);
        const auto a = forward(m, tokens, o), b = forward(m, changed, o);
        CHECK(relative_error(hidden_at(b, 1).topRows(1), hidden_at(a, 1).topRows(1)) > 1e-4);
        // What an encoder cannot do is refused in one line.
        test::expect_input_error([&] { forward(m, tokens); }, {"language-model head"});
        session s(m, o);
        s.run({1, 2});
        test::expect_input_error([&] { s.run({3}); }, {"whole"});
        test::expect_input_error([&] { linearized_layer<double>(m.config, m.layers[0]); }, {"post-norm"});
    }
}

#ifdef SDLENS_CLI
TEST_CASE("encoders: sdlens norms runs on a BERT-shaped random encoder; directions exits 2 with one line why")
{
    test::temp_dir dir;
    const std::string model = (dir / "bert").string();
    REQUIRE(test::run_cli("random --family bert --dtype f32 --out \"" + model + "\"").exit_code == 0);
    const auto n = test::run_cli("norms \"" + model + "\" --tokens 1,2,3,4,5 --json");
    CAPTURE(n.err);
    CHECK(n.exit_code == 0);
    const auto f = test::run_cli("forward \"" + model + "\" --tokens 1,2,3 --json");
    CAPTURE(f.err);
    CHECK(f.exit_code == 0);
    const auto d = test::run_cli("directions \"" + model + "\"");
    CHECK(d.exit_code == 2);
    CHECK(std::count(d.err.begin(), d.err.end(), '\n') == 1);
    CHECK(d.err.find("post-norm") != std::string::npos);
}
#endif
