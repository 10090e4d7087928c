// Planted singular defects, end to end: a planted model is written as a real checkpoint, read
// back with load_model, run forward and linearized, and every finding is compared with what was
// planted (model/plant.hpp derives each expected number in closed form; nothing here is compared
// with the output of the code that produced it).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/forward/forward.hpp"
#include "sdlens/io/tokenizer.hpp"
#include "sdlens/model/gguf_families.hpp"
#include "sdlens/model/hf_writer.hpp"
#include "sdlens/model/load.hpp"
#include "sdlens/model/plant.hpp"
#include "sdlens/model/tokenizer_writer.hpp"
#include "support.hpp"

namespace {

using namespace sdlens;

// d = 64, 6 layers, explosion at 2, decay at 5: small enough for the whole file to take seconds.
planted_model small_planted(model_family f, std::uint64_t seed = 11)
{
    plant_sizes s;
    s.hidden = 64;
    s.layers = 6;
    s.heads = 4;
    plant_options o;
    o.explosion_layer = 2;
    o.decay_layer = 5;
    o.seed = seed;
    return plant_random_model(plant_model_config(f, s), o);
}

double state_norm(const forward_result& r, std::size_t layer, std::size_t pos)
{
    double s = 0;
    for (std::size_t k = 0; k < r.hidden.shape(2); ++k) s += double(r.hidden(layer, pos, k)) * double(r.hidden(layer, pos, k));
    return std::sqrt(s);
}

// BOS (position 0), ordinary tokens, the delimiter at position 5, more ordinary tokens (one of
// them a repeat of an earlier one).
std::vector<int> probe(const plant_ground_truth& g, const model_config& c)
{
    const int delim = static_cast<int>(g.trigger_tokens.back());
    return {static_cast<int>(c.bos_token), 20, 21, 22, 23, delim, 30, 31, 20, 32, 33};
}

void check_forward(const model& m, const plant_ground_truth& g)
{
    const auto tokens = probe(g, m.config);
    forward_options fo;
    fo.hidden_states = true;
    fo.logits = forward_options::logits_mode::none;
    const forward_result r = forward(m, tokens, fo);
    const std::size_t E = static_cast<std::size_t>(g.explosion_layer), D = static_cast<std::size_t>(g.decay_layer);
    const std::size_t L = static_cast<std::size_t>(m.config.num_layers);
    const std::vector<std::size_t> triggers{0, 5};  // BOS / position 0, and the delimiter
    for (std::size_t p : triggers) {
        CAPTURE(p);
        // Before E the trigger carries K t (plus a tenth of a random row): norm ~ K.
        CHECK(state_norm(r, E - 1, p) == doctest::Approx(g.trigger_norm).epsilon(0.05));
        // Layer E adds N_exp u. plant.hpp sets N_exp at the expected trigger share cos^2 th; the
        // actual share differs by a fraction of th^2 <= 1/400 (K = 20 x the rest), hence 0.5%.
        CHECK(state_norm(r, E, p) == doctest::Approx(g.explosion_norm).epsilon(0.005));
        CHECK(state_norm(r, E, p) > 100 * state_norm(r, E - 1, p));
        // Layers E+1..D-1 add outputs orthogonal to t and u of norm ~10 to a state of norm ~8000:
        // the norm moves by (10/8000)^2 / 2 < 1e-5 relative.
        for (std::size_t l = E + 1; l < D; ++l) CHECK(state_norm(r, l, p) == doctest::Approx(state_norm(r, E, p)).epsilon(1e-4));
        // Layer D cancels N_exp u up to the spread of the explosion over trigger tokens (< 0.1%
        // of 8000) and the 8-bit rounding of the planted values: back to ~K, under 1% of before.
        CHECK(state_norm(r, D, p) < 0.01 * state_norm(r, D - 1, p));
        CHECK(state_norm(r, D, p) < 2.5 * g.trigger_norm);
    }
    // Ordinary tokens never have a t or u component (exactly zero in f32 weights; rounding of the
    // projected weights leaves ~1e-3 of the layer outputs): their norms stay those of a random
    // model, tens at most, at every layer.
    for (std::size_t p = 1; p < tokens.size(); ++p) {
        if (p == 5) continue;
        CAPTURE(p);
        for (std::size_t l = 0; l <= L; ++l) CHECK(state_norm(r, l, p) < 0.01 * g.explosion_norm);
    }
}

void check_directions(const model& m, const plant_ground_truth& g)
{
    const std::int64_t L = m.config.num_layers;
    layer_analysis_options ao;
    ao.k = 2;
    for (std::int64_t l = 1; l <= L; ++l) {
        CAPTURE(l);
        const auto s = layer_singular_triplets(m, l, ao);
        const double angle = acute_angle_degrees(s.u.col(0), g.direction);
        if (l == g.explosion_layer) {
            // On span{t, u} the layer is [[1, 0], [c, 1]]: u_1 is off u by (1/2) atan(2/c) and
            // sigma_1 = (c + sqrt(c^2 + 4)) / 2, c from plant.hpp's own quadrature. The planted
            // entries are exact in every dtype written here; what rounding leaves of the
            // projections couples the blocks at ~2^-9 of the random part, moving both by < 1e-3.
            CHECK(angle < 1.0);
            CHECK(angle == doctest::Approx(g.explosion_angle_degrees).epsilon(1e-2));
            CHECK(s.sigma[0] == doctest::Approx(g.explosion_sigma).epsilon(1e-3));
        } else if (l == g.decay_layer) {
            // L u = (1 - c') u exactly (decay_eigenvalue = -c'), and |1 - c'| >> the random block's sigma (< 20).
            CHECK(angle < 1.0);
            CHECK(s.sigma[0] == doctest::Approx(std::abs(1 + g.decay_eigenvalue)).epsilon(1e-3));
        } else {
            // L = I on span{t, u} and random elsewhere with sigma_1 > 1: u_1 is orthogonal to u,
            // up to the rounding coupling (angle change ~ 2^-9 / (sigma_1 - 1) rad < 1 deg).
            CHECK(angle > 80.0);
        }
    }
    // R u = -c' u at the decay layer: an eigenvector along u with a negative eigenvalue.
    const auto e = layer_eigen_analysis(m, g.decay_layer, g.direction, ao);
    CHECK(e.best.angle_degrees < 2.0);
    CHECK(e.best.eigenvalue.real() < 0);
    CHECK(e.best.eigenvalue.real() == doctest::Approx(g.decay_eigenvalue).epsilon(1e-3));
}

// The tokenizer of a planted checkpoint runs on text: the sentence starts with BOS exactly when
// the family's planted trigger is BOS (RoPE families; GPT-2 triggers on position 0), ends in the
// delimiter (".", a trigger token), decodes back to itself, and every ASCII letter and digit is
// a byte token (the word boundary first, as SentencePiece's dummy prefix), never <unk>.
void check_planted_tokenizer(const tokenizer& tok, const model_config& c, std::int64_t delimiter, bool adds_bos)
{
    const std::string text = "The quick brown fox jumps over the lazy dog.";
    CHECK(tok.vocab_size() == c.vocab_size);
    CHECK(tok.bos() == c.bos_token);
    CHECK(tok.eos() == c.eos_token);
    CHECK(tok.adds_bos() == adds_bos);
    CHECK(tok.piece(static_cast<int>(delimiter)) == ".");
    const std::vector<int> ids = tok.encode(text, tok.adds_bos());
    REQUIRE(ids.size() >= 2);
    if (adds_bos) CHECK(ids.front() == c.bos_token);
    CHECK(std::count(ids.begin() + (adds_bos ? 1 : 0), ids.end(), static_cast<int>(c.bos_token)) == 0);
    CHECK(ids.back() == delimiter);
    CHECK(std::count(ids.begin(), ids.end(), static_cast<int>(delimiter)) == 1);
    const std::vector<int> body(ids.begin() + (adds_bos ? 1 : 0), ids.end());
    CHECK(tok.decode(body) == text);
    CHECK(tok.decode(ids) == (adds_bos ? tok.piece(static_cast<int>(c.bos_token)) : std::string()) + text);
    const int boundary = tok.id_of(" ");
    REQUIRE(boundary >= 0);
    for (char ch = ' '; ch < 0x7F; ++ch) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) continue;
        CAPTURE(ch);
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(ch));
        const std::vector<int> one = tok.encode(std::string(1, ch), false);
        REQUIRE(one.size() == 2);
        CHECK(one[0] == boundary);
        CHECK(tok.piece(one[1]) == name);
        CHECK(tok.decode(one) == std::string(1, ch));
    }
}

void check_family(model_family f, dtype t)
{
    const planted_model p = small_planted(f);
    sdlens::test::temp_dir dir;
    write_hf_checkpoint(dir.path().string(), p.config, p.weights, t);
    const model m = load_model(dir.path().string());
    check_forward(m, p.truth);
    check_directions(m, p.truth);
}

}  // namespace

TEST_CASE("plant: the ground truth directions are orthonormal, centred and seeded")
{
    const planted_model a = small_planted(model_family::llama, 3), b = small_planted(model_family::llama, 3),
                        c = small_planted(model_family::llama, 4);
    const auto& u = a.truth.direction;
    const auto& t = a.truth.trigger;
    CHECK(u.norm() == doctest::Approx(1).epsilon(1e-12));
    CHECK(t.norm() == doctest::Approx(1).epsilon(1e-12));
    CHECK(std::abs(u.dot(t)) < 1e-12);
    CHECK(std::abs(u.sum()) < 1e-12);  // LayerNorm's centring leaves u and t alone
    CHECK(std::abs(t.sum()) < 1e-12);
    CHECK(u == b.truth.direction);
    // Another seed: another direction (two random sign patterns in 64 dims: ~ 90 +- 7 deg).
    CHECK(acute_angle_degrees(u, c.truth.direction) > 45);
    CHECK(a.truth.explosion_layer == 2);
    CHECK(a.truth.decay_layer == 5);
    CHECK(a.truth.trigger_tokens == std::vector<std::int64_t>{a.config.bos_token, default_delimiter_token(a.config)});
}

TEST_CASE("plant: options outside 1 <= E < D <= L are input errors")
{
    plant_sizes s;
    s.layers = 6;
    const model_config c = plant_model_config(model_family::llama, s);
    plant_options o;
    o.explosion_layer = 4;
    o.decay_layer = 4;
    CHECK_THROWS_AS(check_plant_options(c, o), input_error);
    o.explosion_layer = 0;
    o.decay_layer = 3;
    CHECK_THROWS_AS(check_plant_options(c, o), input_error);
    o.explosion_layer = 2;
    o.decay_layer = 7;
    CHECK_THROWS_AS(check_plant_options(c, o), input_error);
    o.decay_layer = 6;
    CHECK_NOTHROW(check_plant_options(c, o));
    s.hidden = 66;  // 4 heads do not divide it
    CHECK_THROWS_AS(plant_model_config(model_family::llama, s), input_error);
    s.hidden = 64;
    s.kv_heads = 3;
    CHECK_THROWS_AS(plant_model_config(model_family::llama, s), input_error);
    s.kv_heads = 2;
    CHECK_THROWS_AS(plant_model_config(model_family::gpt2, s), input_error);  // GPT-2 has no GQA
}

TEST_CASE("plant: llama (f32) explodes at E, decays at D, and the linearization finds both")
{
    check_family(model_family::llama, dtype::f32);
}

TEST_CASE("plant: gpt2 (bf16, learned positions: any token at position 0 triggers)")
{
    check_family(model_family::gpt2, dtype::bf16);
    // An ordinary token at position 0 explodes too, and the same token at position 1 does not.
    const planted_model p = small_planted(model_family::gpt2);
    REQUIRE(p.truth.position0_triggers);
    sdlens::test::temp_dir dir;
    write_hf_checkpoint(dir.path().string(), p.config, p.weights, dtype::f32);
    const model m = load_model(dir.path().string());
    forward_options fo;
    fo.hidden_states = true;
    fo.logits = forward_options::logits_mode::none;
    const forward_result r = forward(m, {40, 40, 41}, fo);
    const std::size_t E = static_cast<std::size_t>(p.truth.explosion_layer);
    CHECK(state_norm(r, E, 0) == doctest::Approx(p.truth.explosion_norm).epsilon(0.005));
    CHECK(state_norm(r, E, 1) < 0.01 * p.truth.explosion_norm);
    CHECK(state_norm(r, E, 2) < 0.01 * p.truth.explosion_norm);
}

// RoPE and ALiBi families at the default E (3, or 4 with parallel blocks): any token at
// position 0 triggers through self-attention (plant_initial.hpp), and nowhere else. ALiBi's bias
// favours the nearest keys, the self head's choice anyway; the others head still finds others.
void check_initial_tokens(model_family f, dtype type, std::uint64_t seed)
{
    plant_sizes s;
    s.hidden = 56;
    s.layers = 7;
    s.heads = 4;
    s.vocab = 96;
    plant_options o;
    o.seed = seed;
    const planted_model p = plant_random_model(plant_model_config(f, s), o);
    REQUIRE(p.truth.position0_triggers);
    const std::int64_t first = p.config.parallel_residual ? 4 : 3;
    REQUIRE(p.truth.explosion_layer == first);
    CHECK(p.truth.initial_trigger_layer == first - 1);
    sdlens::test::temp_dir dir;
    write_hf_checkpoint(dir.path().string(), p.config, p.weights, type);
    const model m = load_model(dir.path().string());
    const std::size_t E = static_cast<std::size_t>(p.truth.explosion_layer), D = static_cast<std::size_t>(p.truth.decay_layer);
    const std::size_t L = static_cast<std::size_t>(m.config.num_layers);
    const double n_exp = p.truth.explosion_norm;
    forward_options fo;
    fo.hidden_states = true;
    fo.logits = forward_options::logits_mode::none;
    forward_options no_attention = fo;
    no_attention.zero_attention = true;
    const int delim = static_cast<int>(p.truth.delimiter_token);
    for (int t : {20, 33, 47, 58, 71, 90}) {
        CAPTURE(t);
        // Alone (position 0): the trigger layer writes N0 t, ~10-20 x the rest of the stream
        // (20 x at the median token, plant_initial.hpp), so the share of t is within ~1% of a
        // trigger's and layer E adds N_exp to within 2% (quadratic in the share; the worst of
        // these tokens is 1.5% low); layer D cancels that, leaving N0 t: under 5% of N_exp.
        const forward_result alone = forward(m, {t}, fo);
        CHECK(state_norm(alone, E, 0) == doctest::Approx(n_exp).epsilon(0.02));
        CHECK(state_norm(alone, E - 1, 0) < 0.1 * n_exp);
        CHECK(state_norm(alone, D, 0) < 0.05 * n_exp);
        // Without attention it is an ordinary token.
        CHECK(state_norm(forward(m, {t}, no_attention), E, 0) < 0.01 * n_exp);
        // After another token, at any distance: ordinary at every layer, the delimiter still a trigger.
        const forward_result later = forward(m, {t + 1, 40, t, 52, delim, t}, fo);
        for (std::size_t q : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(5)})
            for (std::size_t l = 0; l <= L; ++l) CHECK(state_norm(later, l, q) < 0.01 * n_exp);
        CHECK(state_norm(later, E, 4) == doctest::Approx(n_exp).epsilon(0.02));
        // A token repeated from position 0: every position has the state of position 0 (RoPE and
        // identical inputs), so every position triggers, as in any RoPE model.
        const forward_result repeated = forward(m, {t, t, t}, fo);
        for (std::size_t q = 0; q < 3; ++q) CHECK(state_norm(repeated, E, q) == doctest::Approx(state_norm(alone, E, 0)).epsilon(1e-3));
    }
}

TEST_CASE("plant: falcon (bf16; new decoder: grouped key/value heads, two norms per parallel block) and mpt (f32, ALiBi)")
{
    check_family(model_family::falcon, dtype::f32);
    check_family(model_family::mpt, dtype::f32);
}

TEST_CASE("plant: RoPE and ALiBi families' initial tokens trigger through self-attention, and only at position 0")
{
    check_initial_tokens(model_family::llama, dtype::f32, 21);
    check_initial_tokens(model_family::qwen2, dtype::bf16, 22);
    check_initial_tokens(model_family::phi3, dtype::f16, 23);
    check_initial_tokens(model_family::neox, dtype::f16, 24);
    check_initial_tokens(model_family::falcon, dtype::f32, 25);
    check_initial_tokens(model_family::mpt, dtype::f32, 26);
}

TEST_CASE("plant: at the default E the linearization still finds E and D (llama, neox)")
{
    for (model_family f : {model_family::llama, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        plant_sizes s;
        s.hidden = 64;
        s.layers = 6;
        s.heads = 4;
        plant_options o;
        o.decay_layer = 5;
        o.seed = 25;
        const planted_model p = plant_random_model(plant_model_config(f, s), o);
        REQUIRE(p.truth.position0_triggers);
        sdlens::test::temp_dir dir;
        write_hf_checkpoint(dir.path().string(), p.config, p.weights, dtype::f32);
        const model m = load_model(dir.path().string());
        check_forward(m, p.truth);
        check_directions(m, p.truth);
    }
}

TEST_CASE("plant: neox (f16, parallel residual, partial rotary)")
{
    check_family(model_family::neox, dtype::f16);
}

TEST_CASE("plant: llama written as GGUF (f16) reads back with the same defects")
{
    const planted_model p = small_planted(model_family::llama);
    sdlens::test::temp_dir dir;
    const std::string path = (dir.path() / "model.gguf").string();
    write_gguf_checkpoint(path, p.config, p.weights, dtype::f16);
    const model m = load_model(path);
    check_forward(m, p.truth);
    check_directions(m, p.truth);
}

TEST_CASE("plant: the tokenizer written beside a planted checkpoint has the delimiter as \".\"")
{
    // A delimiter other than the default, so "." is seen to follow the option, in both formats.
    plant_sizes s;
    s.hidden = 32;
    s.layers = 3;
    plant_options o;
    o.delimiter_token = 40;
    for (model_family f : {model_family::llama, model_family::gpt2}) {
        CAPTURE(family_name(f));
        const planted_model p = plant_random_model(plant_model_config(f, s), o);
        CHECK(p.truth.delimiter_token == 40);
        CHECK(p.truth.trigger_tokens.back() == 40);
        CHECK(to_json(p.truth)["delimiter_token"] == 40);
        const placeholder_vocabulary v = make_placeholder_vocabulary(p.config, p.truth.delimiter_token);
        CHECK(v.delimiter == 40);
        CHECK(v.tokens[40] == ".");
        CHECK(std::find(v.tokens.begin(), v.tokens.end(), "<0x2E>") == v.tokens.end());  // "." covers it
        CHECK(std::find(v.tokens.begin(), v.tokens.end(), "<0x20>") == v.tokens.end());  // so does U+2581
        CHECK(v.add_bos == (f != model_family::gpt2));

        sdlens::test::temp_dir dir;
        write_hf_checkpoint(dir.path().string(), p.config, p.weights, dtype::f32);
        write_hf_tokenizer(dir.path().string(), v);
        const model hf = load_model(dir.path().string());
        const std::optional<tokenizer> from_hf = load_tokenizer(*hf.source);
        REQUIRE(from_hf);
        CHECK(from_hf->type() == tokenizer::kind::sentencepiece);
        check_planted_tokenizer(*from_hf, p.config, 40, f != model_family::gpt2);

        const std::string path = (dir.path() / "model.gguf").string();
        write_gguf_checkpoint(path, p.config, p.weights, dtype::f32, p.truth.delimiter_token);
        const model gg = load_model(path);
        const std::optional<tokenizer> from_gguf = load_tokenizer(*gg.source);
        REQUIRE(from_gguf);
        check_planted_tokenizer(*from_gguf, p.config, 40, f != model_family::gpt2);
        for (int id = 0; id < from_hf->vocab_size(); ++id) CHECK(from_hf->piece(id) == from_gguf->piece(id));
    }
}

#ifdef SDLENS_CLI
TEST_CASE("plant: the CLI's checkpoints tokenize text, the sentence ending in the delimiter of the ground truth")
{
    struct run {
        const char* family;
        bool gguf;
    };
    for (const run& r : {run{"llama", false}, run{"llama", true}, run{"gpt2", false}}) {
        CAPTURE(r.family);
        CAPTURE(r.gguf);
        sdlens::test::temp_dir dir;
        const std::string out = (dir.path() / "m").string();
        const auto res = sdlens::test::run_cli(std::string("plant --family ") + r.family + " --hidden 32 --layers 3 --seed 5 " +
                                               (r.gguf ? "--gguf " : "") + "--out \"" + out + "\"");
        REQUIRE(res.exit_code == 0);
        std::ifstream in(out + "/ground_truth.json");
        const auto j = nlohmann::json::parse(in);
        const std::int64_t delimiter = j["delimiter_token"].get<std::int64_t>();
        CHECK(j["trigger_tokens"].back() == delimiter);
        if (!r.gguf) {
            CHECK(std::filesystem::exists(std::filesystem::path(out) / "tokenizer.json"));
            CHECK(std::filesystem::exists(std::filesystem::path(out) / "tokenizer_config.json"));
        }
        const model m = load_model(j["model"].get<std::string>());
        CHECK(delimiter == default_delimiter_token(m.config));
        const std::optional<tokenizer> tok = load_tokenizer(*m.source);
        REQUIRE(tok);
        const bool rope = std::string(r.family) != "gpt2";
        check_planted_tokenizer(*tok, m.config, delimiter, rope);
        // Where BOS triggers, the BOS the tokenizer adds is the trigger of the ground truth.
        if (rope) CHECK(j["trigger_tokens"].front() == m.config.bos_token);
    }
}

TEST_CASE("plant: the CLI plants falcon and mpt as GGUF; their reduced-precision plants are refused")
{
    sdlens::test::temp_dir dir;
    for (const char* family : {"falcon", "mpt"}) {
        CAPTURE(family);
        const std::string out = (dir.path() / family).string();
        const auto r = sdlens::test::run_cli(std::string("plant --family ") + family + " --gguf --out \"" + out + "\" --json");
        REQUIRE(r.exit_code == 0);
        const auto j = nlohmann::json::parse(r.out);
        const model m = load_model(out + "/model.gguf");
        CHECK(family_name(m.config.family) == std::string(family));
        // The file's hidden states show the planted explosion at E for the ground truth's trigger.
        forward_options fo;
        fo.hidden_states = true;
        fo.logits = forward_options::logits_mode::none;
        const int delim = j["delimiter_token"].get<int>();
        const forward_result f = forward(m, {20, 21, delim, 22}, fo);
        const auto E = j["explosion_layer"].get<std::size_t>();
        CHECK(state_norm(f, E, 2) == doctest::Approx(j["explosion_norm"].get<double>()).epsilon(0.02));
        CHECK(state_norm(f, E, 1) < 0.01 * j["explosion_norm"].get<double>());
        const auto bad = sdlens::test::run_cli(std::string("plant --family ") + family + " --dtype bf16 --out \"" + out + "2\"");
        CHECK(bad.exit_code == 2);
        CHECK(bad.err.find("f32") != std::string::npos);
    }
}

TEST_CASE("plant: the CLI writes a checkpoint and its ground truth; bad layers exit 2")
{
    sdlens::test::temp_dir dir;
    const std::string out = (dir.path() / "m").string();
    const auto r = sdlens::test::run_cli("plant --family neox --hidden 64 --layers 6 --explode 2 --decay 5 --seed 11 --out \"" + out + "\"");
    REQUIRE(r.exit_code == 0);
    std::ifstream in(out + "/ground_truth.json");
    const auto j = nlohmann::json::parse(in);
    CHECK(j["explosion_layer"] == 2);
    CHECK(j["decay_layer"] == 5);
    // The file says what plant_random_model plants for the same options.
    const planted_model p = small_planted(model_family::neox, 11);
    const auto dir_json = j["direction"].get<std::vector<double>>();
    REQUIRE(dir_json.size() == 64);
    for (std::size_t i = 0; i < dir_json.size(); ++i) CHECK(dir_json[i] == p.truth.direction[static_cast<Eigen::Index>(i)]);
    const model m = load_model(out);
    CHECK(m.config.num_layers == 6);

    const auto bad = sdlens::test::run_cli("plant --layers 6 --explode 5 --decay 3 --out \"" + out + "2\"");
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("explosion") != std::string::npos);
}

TEST_CASE("plant: the demo finds the planted layers from the hidden states and the linearization")
{
    sdlens::test::temp_dir dir;
    const auto r = sdlens::test::run_cli("demo --json --out \"" + (dir.path() / "demo").string() + "\"");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["found"]["explosion_layer"] == j["ground_truth"]["explosion_layer"]);
    CHECK(j["found"]["decay_layer"] == j["ground_truth"]["decay_layer"]);
    CHECK(j["found"]["aligned_layers"] == nlohmann::json::array({j["ground_truth"]["explosion_layer"], j["ground_truth"]["decay_layer"]}));
    CHECK(j["found"]["empirical_vs_planted_degrees"].get<double>() < 1.0);
    REQUIRE(j["eigen"].size() == 2);
    CHECK(j["eigen"][1]["eigenvalue_real"].get<double>() < 0);
}
#endif
