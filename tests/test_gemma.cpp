// Gemma, Gemma 2 and Gemma 3: released config.json files read as transformers reads them, the
// GGUF form llama.cpp's converter writes (norm gains stored as 1 + w, no key for the query
// scale), and the forward pass of both against the float64 reference (reference_forward.hpp),
// which implements the (1 + w) norms, sqrt(d) embeddings, GeGLU, sandwich norms, q/k norms,
// soft-capping, alternating windows and Gemma 3's local RoPE base by itself.
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/linearize/layer_operator.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/hf_config.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>
#include <sdlens/model/random_model.hpp>

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

using namespace sdlens;
using nlohmann::json;
using test::hidden_at;
using test::relative_error;

namespace {

// float32 against float64 over 2-6 layers of d = 64 products (see test_forward.cpp).
constexpr double tolerance = 1e-5;

std::vector<int> tokens_of(const model_config& c, int T, unsigned seed)
{
    std::vector<int> t(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) t[static_cast<std::size_t>(i)] = static_cast<int>((seed * 2654435761u + 40503u * static_cast<unsigned>(i)) % c.vocab_size);
    return t;
}

void check_model(const model& m, const std::vector<int>& tokens, bool attention = true)
{
    test::check_against_reference(m, tokens, attention, tolerance);
}

const model_family gemmas[] = {model_family::gemma, model_family::gemma2, model_family::gemma3};

}  // namespace

TEST_CASE("gemma: released config.json files read as transformers reads them")
{
    SUBCASE("Gemma-7B: hidden_act 'gelu' with hidden_activation null means the tanh GELU")
    {
        const json j = {{"architectures", {"GemmaForCausalLM"}}, {"model_type", "gemma"}, {"hidden_size", 3072}, {"intermediate_size", 24576},
                        {"num_hidden_layers", 28}, {"num_attention_heads", 16}, {"num_key_value_heads", 16}, {"head_dim", 256},
                        {"hidden_act", "gelu"}, {"hidden_activation", nullptr}, {"max_position_embeddings", 8192}, {"rms_norm_eps", 1e-6},
                        {"rope_scaling", nullptr}, {"rope_theta", 10000.0}, {"vocab_size", 256000}, {"bos_token_id", 2}, {"eos_token_id", 1}};
        const model_config c = hf_model_config(j, "gemma-7b/config.json");
        CHECK(c.family == model_family::gemma);
        CHECK(c.activation == activation_kind::geglu_tanh);
        CHECK(c.norm_weight_offset == 1);
        CHECK(c.embedding_scale == doctest::Approx(std::sqrt(3072.0)));
        CHECK(c.head_dim == 256);
        CHECK(c.q_dim() == 4096);  // wider than d: heads of 256
        CHECK(c.tied_embeddings);
        CHECK(!c.sandwich_norms);
        CHECK(c.sliding_window == 0);
        CHECK(c.score_scale() == doctest::Approx(1 / 16.0));
    }
    SUBCASE("Gemma-2-2B: caps 50 and 30, windows of 4096 in the odd layers")
    {
        const json j = {{"architectures", {"Gemma2ForCausalLM"}}, {"model_type", "gemma2"}, {"attn_logit_softcapping", 50.0},
                        {"final_logit_softcapping", 30.0}, {"head_dim", 256}, {"hidden_act", "gelu_pytorch_tanh"},
                        {"hidden_activation", "gelu_pytorch_tanh"}, {"hidden_size", 2304}, {"intermediate_size", 9216},
                        {"max_position_embeddings", 8192}, {"num_attention_heads", 8}, {"num_hidden_layers", 26}, {"num_key_value_heads", 4},
                        {"query_pre_attn_scalar", 256}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"sliding_window", 4096},
                        {"vocab_size", 256000}};
        const model_config c = hf_model_config(j, "gemma-2-2b/config.json");
        CHECK(c.family == model_family::gemma2);
        CHECK(c.sandwich_norms);
        CHECK(!c.qk_norm);
        CHECK(c.attention_softcap == 50);
        CHECK(c.logit_softcap == 30);
        CHECK(c.sliding_window == 4096);
        CHECK(c.attention_window(1) == 4096);
        CHECK(c.attention_window(2) == 0);
        CHECK(c.attention_window(25) == 4096);
        CHECK(c.attention_window(26) == 0);
        json nulls = j;
        nulls["attn_logit_softcapping"] = nullptr;
        nulls["final_logit_softcapping"] = nullptr;
        nulls["query_pre_attn_scalar"] = 144;
        const model_config n = hf_model_config(nulls, "config.json");
        CHECK(n.attention_softcap == 0);
        CHECK(n.logit_softcap == 0);
        CHECK(n.score_scale() == doctest::Approx(1 / 12.0));
        json absent = j;
        absent.erase("attn_logit_softcapping");
        CHECK(hf_model_config(absent, "config.json").attention_softcap == 50);  // transformers' default
    }
    SUBCASE("Gemma-3-1B (text): five sliding layers of every six, local RoPE base, q/k norms")
    {
        const json j = {{"architectures", {"Gemma3ForCausalLM"}}, {"model_type", "gemma3_text"}, {"attn_logit_softcapping", nullptr},
                        {"final_logit_softcapping", nullptr}, {"head_dim", 256}, {"hidden_activation", "gelu_pytorch_tanh"},
                        {"hidden_size", 1152}, {"intermediate_size", 6912}, {"max_position_embeddings", 32768}, {"num_attention_heads", 4},
                        {"num_hidden_layers", 26}, {"num_key_value_heads", 1}, {"query_pre_attn_scalar", 256}, {"rms_norm_eps", 1e-6},
                        {"rope_local_base_freq", 10000}, {"rope_scaling", nullptr}, {"rope_theta", 1000000}, {"sliding_window", 512},
                        {"sliding_window_pattern", 6}, {"vocab_size", 262144}, {"bos_token_id", 2}, {"eos_token_id", {1, 106}}};
        const model_config c = hf_model_config(j, "gemma-3-1b-it/config.json");
        CHECK(c.family == model_family::gemma3);
        CHECK(c.qk_norm);
        CHECK(c.sandwich_norms);
        CHECK(c.attention_softcap == 0);
        CHECK(c.logit_softcap == 0);
        CHECK(c.rope_theta == 1e6);
        CHECK(c.rope_theta_local == 10000);
        for (int l = 1; l <= 26; ++l) {
            CAPTURE(l);
            CHECK(c.attention_window(l) == (l % 6 == 0 ? 0 : 512));
        }
        // transformers v5 keeps the two RoPE sets in rope_parameters, by layer type.
        json v5 = j;
        v5.erase("rope_local_base_freq");
        v5.erase("rope_scaling");
        v5["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}}},
                                 {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 20000.0}}}};
        const model_config c5 = hf_model_config(v5, "config.json");
        CHECK(c5.rope_scaling.kind == rope_scaling_kind::linear);
        CHECK(c5.rope_scaling.factor == 8);
        CHECK(c5.rope_theta_local == 20000);
        // The sliding layers are not scaled; the global ones are.
        const auto local = rope_frequencies_for(c5, 10, 1), global = rope_frequencies_for(c5, 10, 6);
        CHECK(local.inverse[1] == doctest::Approx(std::pow(20000.0, -2.0 / 256)));
        CHECK(global.inverse[1] == doctest::Approx(std::pow(1e6, -2.0 / 256) / 8));
    }
    SUBCASE("refusals name the key")
    {
        json j = {{"model_type", "gemma2"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                  {"intermediate_size", 96}, {"vocab_size", 32}, {"hidden_activation", "gelu"}};
        test::expect_input_error([&] { hf_model_config(j, "config.json"); }, {"config.json", "hidden_activation 'gelu'"});
        j["model_type"] = "gemma3";
        test::expect_input_error([&] { hf_model_config(j, "config.json"); }, {"config.json", "gemma3_text"});
        // The fuzzer's finding: a layer count that would size the window list before any tensor.
        j["model_type"] = "gemma3_text";
        j["hidden_activation"] = "gelu_pytorch_tanh";
        j["num_hidden_layers"] = 261111111;
        test::expect_input_error([&] { hf_model_config(j, "config.json"); }, {"config.json", "layer count 261111111"});
    }
}

TEST_CASE("gemma: Hugging Face and GGUF checkpoints of every Gemma run as the float64 reference says")
{
    for (model_family f : gemmas) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const model_config c = small_config(f);
        const dense_weights w = random_weights(c, 11);
        test::temp_dir dir;
        write_hf_checkpoint((dir / "hf").string(), c, w, dtype::f32);
        write_gguf_checkpoint((dir / "m.gguf").string(), c, w, dtype::f32);
        const model hf = load_model((dir / "hf").string());
        const model gg = load_model((dir / "m.gguf").string());
        // 20 tokens: over twice the window of 8 in the sliding layers.
        const auto tokens = tokens_of(c, 20, 5);
        for (bool attention : {true, false}) {
            CAPTURE(attention);
            check_model(hf, tokens, attention);
            check_model(gg, tokens, attention);
        }
        // The GGUF stores 1 + w and says offset 0: the same gains, the same model.
        CHECK(gg.config.norm_weight_offset == 0);
        CHECK(gg.config.sliding_window_layers == c.sliding_window_layers);
        CHECK(gg.config.score_scale() == doctest::Approx(c.score_scale()));
        forward_options o;
        o.logits = forward_options::logits_mode::all;
        const auto a = forward(hf, tokens, o), b = forward(gg, tokens, o);
        CHECK(relative_error(a.logits.cast<double>(), b.logits.cast<double>()) <= tolerance);
        // Generation through the KV cache: the same logits as the whole sequence.
        session s(hf);
        row_matrix<float> stepwise(static_cast<Eigen::Index>(tokens.size()), c.vocab_size);
        for (std::size_t t = 0; t < tokens.size(); ++t) stepwise.row(static_cast<Eigen::Index>(t)) = s.next(tokens[t]).transpose();
        CHECK(relative_error(stepwise.cast<double>(), a.logits.cast<double>()) <= tolerance);
    }
    SUBCASE("a query_pre_attn_scalar other than head_dim (config.json only: GGUF has no key for it)")
    {
        model_config c = small_config(model_family::gemma2);
        c.attention_scale = 1 / std::sqrt(24.0);
        test::temp_dir dir;
        write_hf_checkpoint((dir / "hf").string(), c, random_weights(c, 12), dtype::f32);
        const model hf = load_model((dir / "hf").string());
        CHECK(hf.config.attention_scale == c.attention_scale);
        check_model(hf, tokens_of(c, 20, 6));
    }
}

TEST_CASE("gemma: each Gemma-specific step changes the output (the comparisons above are not vacuous)")
{
    // The reference with one feature turned off must differ from the model by far more than the
    // tolerance; otherwise the tests above could not notice that feature missing.
    for (model_family f : {model_family::gemma2, model_family::gemma3}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const model_config c = small_config(f);
        test::temp_dir dir;
        write_hf_checkpoint((dir / "hf").string(), c, random_weights(c, 11), dtype::f32);
        const model m = load_model((dir / "hf").string());
        const dense_weights w = materialize(m);
        const auto tokens = tokens_of(c, 20, 5);
        const auto full = test::reference_forward(m.config, w, tokens);
        auto differs = [&](const char* what, auto&& change) {
            CAPTURE(what);
            model_config changed = m.config;
            change(changed);
            CHECK(relative_error(test::reference_forward(changed, w, tokens).logits, full.logits) > 1e-3);
        };
        differs("norm offset", [](model_config& x) { x.norm_weight_offset = 0; });
        differs("embedding scale", [](model_config& x) { x.embedding_scale = 1; });
        differs("sandwich norms", [](model_config& x) { x.sandwich_norms = false; });
        differs("window", [](model_config& x) { x.sliding_window = 0; });
        differs("query scale", [](model_config& x) { x.attention_scale = 0.5; });
        if (f == model_family::gemma2) {
            differs("attention cap", [](model_config& x) { x.attention_softcap = 0; });
            differs("logit cap", [](model_config& x) { x.logit_softcap = 0; });
        } else {
            differs("q/k norms", [](model_config& x) { x.qk_norm = false; });
            differs("local RoPE base", [](model_config& x) { x.rope_theta_local = 0; });
        }
    }
}

TEST_CASE("gemma: configurations llama.cpp cannot express are refused by the GGUF writer")
{
    test::temp_dir dir;
    const auto path = (dir / "m.gguf").string();
    model_config c = small_config(model_family::gemma2);
    const dense_weights w = random_weights(c, 1);
    c.sliding_window_layers = {2};
    test::expect_input_error([&] { write_gguf_checkpoint(path, c, w, dtype::f32); }, {path, "sliding windows"});
    c = small_config(model_family::gemma2);
    c.attention_scale = 1 / std::sqrt(24.0);
    test::expect_input_error([&] { write_gguf_checkpoint(path, c, w, dtype::f32); }, {path, "attention scale"});
    c = small_config(model_family::gemma2);
    c.tied_embeddings = false;
    dense_weights untied = w;
    untied.lm_head = w.token_embedding;
    test::expect_input_error([&] { write_gguf_checkpoint(path, c, untied, dtype::f32); }, {path, "output matrix"});
}

TEST_CASE("gemma: the linearization uses the gains 1 + w, post norms included, and plant refuses Gemma")
{
    // Dense reference from the definitions: A = diag(1 + g_post) W_O W_V diag(1 + g_in) and F
    // likewise around W_down F1; here checked where the stored weights are far from the gains
    // (w ~ N(0, 0.1^2), gains near 1), so forgetting the offset fails by ~100%.
    const model_config c = small_config(model_family::gemma2);
    test::temp_dir dir;
    write_hf_checkpoint((dir / "hf").string(), c, random_weights(c, 3), dtype::f32);
    const model m = load_model((dir / "hf").string());
    const dense_layer w = materialize(m.layers[0]);
    const linearized_layer<double> lin(m.config, m.layers[0]);
    const auto gain = [](const Eigen::VectorXf& v) { return Eigen::VectorXd(v.cast<double>().array() + 1.0); };
    Eigen::MatrixXd wv_rep(c.q_dim(), c.hidden_size);
    const std::int64_t rep = c.num_heads / c.num_kv_heads;
    for (std::int64_t r = 0; r < wv_rep.rows(); ++r) wv_rep.row(r) = w.wv.row((r / c.head_dim / rep) * c.head_dim + r % c.head_dim).cast<double>();
    const Eigen::MatrixXd a = gain(w.post_attn_norm).asDiagonal() * w.wo.cast<double>() * wv_rep * gain(w.attn_norm).asDiagonal();
    CHECK(relative_error(lin.dense_attention(), a) < 1e-12);
    const Eigen::MatrixXd x = Eigen::MatrixXd::Random(c.hidden_size, 2);
    CHECK(relative_error(lin.attention(x), a * x) < 1e-12);
    CHECK(relative_error(lin.attention_transpose(x), a.transpose() * x) < 1e-12);
    test::expect_input_error([&] { plant_defects(c, random_weights(c, 3), plant_options{}); }, {"Gemma"});
}
