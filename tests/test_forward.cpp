// The forward pass against an independent float64 reference (reference_forward.hpp) for every
// family, the KV cache against whole sequences, the hooks against what they promise, and
// stories260K against llama2.c's own outputs.
#include <doctest/doctest.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>
#include <xtensor/xnpy.hpp>

#include <sdlens/forward/forward.hpp>
#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>
// stories260K needs the tokenizer; until it exists those cases are left out.
#if __has_include(<sdlens/io/tokenizer.hpp>)
#include <sdlens/io/tokenizer.hpp>
#define SDLENS_TEST_HAS_TOKENIZER 1
#endif

#include "forward_compare.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

namespace {
using namespace sdlens;

// Small shapes that still have GQA (except where the family has MQA or MHA), partial rotary
// and every bias each family has.
model_config family_config(model_family f)
{
    model_config c;
    c.family = f;
    c.hidden_size = 64;
    c.num_layers = 3;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_size = 96;
    c.vocab_size = 40;
    c.max_positions = 32;
    c.rope = rope_style::half;
    c.rotary_dims = 16;
    switch (f) {
    case model_family::llama: break;
    case model_family::mistral: c.rope_theta = 1e6; break;
    case model_family::qwen2:
        c.bias.qkv = true;
        c.tied_embeddings = true;
        c.norm_eps = 1e-6;
        break;
    case model_family::phi3: c.num_kv_heads = 4; break;
    case model_family::gpt2:
        c.num_kv_heads = 4;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_tanh;
        c.rope = rope_style::none;
        c.rotary_dims = 0;
        c.learned_positions = true;
        c.tied_embeddings = true;
        c.bias = {true, true, true, true};
        break;
    case model_family::neox:
        c.num_kv_heads = 4;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_erf;
        c.parallel_residual = true;
        c.rotary_dims = 4;  // Pythia rotates a quarter of each head
        c.bias = {true, true, true, true};
        break;
    case model_family::falcon:
        c.num_kv_heads = 1;
        c.norm = norm_kind::layer;
        c.activation = activation_kind::gelu_erf;
        c.parallel_residual = true;
        c.shared_input_norm = true;
        c.bias.norm = true;
        c.tied_embeddings = true;
        break;
    default:  // Gemma: small_config's shapes, through its files (test_gemma.cpp and below)
        c = small_config(f);
        break;
    }
    return c;
}

// Weights ~ N(0, 1/in) keep activations O(1) through the layers, so relative errors mean something.
dense_weights random_dense(const model_config& c, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    auto mat = [&](std::int64_t r, std::int64_t k) {
        row_matrix<float> m(r, k);
        const float s = 1.0f / std::sqrt(static_cast<float>(k));
        for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n01(rng) * s;
        return m;
    };
    auto vec = [&](std::int64_t k, float mean, float sd) {
        Eigen::VectorXf v(k);
        for (auto& x : v) x = mean + sd * n01(rng);
        return v;
    };
    const auto d = c.hidden_size, M = c.ffn_size;
    const bool ln = c.norm == norm_kind::layer;
    dense_weights w;
    w.token_embedding = mat(c.vocab_size, d) * std::sqrt(static_cast<float>(d));
    if (c.learned_positions) w.position_embedding = mat(c.max_positions, d) * std::sqrt(static_cast<float>(d)) * 0.3f;
    w.final_norm = vec(d, 1.0f, 0.1f);
    if (ln) w.final_norm_bias = vec(d, 0.0f, 0.1f);
    if (!c.tied_embeddings) w.lm_head = mat(c.vocab_size, d);
    for (std::int64_t l = 0; l < c.num_layers; ++l) {
        dense_layer L;
        L.wq = mat(c.q_dim(), d);
        L.wk = mat(c.kv_dim(), d);
        L.wv = mat(c.kv_dim(), d);
        L.wo = mat(d, c.q_dim());
        if (c.bias.qkv) {
            L.bq = vec(c.q_dim(), 0, 0.1f);
            L.bk = vec(c.kv_dim(), 0, 0.1f);
            L.bv = vec(c.kv_dim(), 0, 0.1f);
        }
        if (c.bias.o) L.bo = vec(d, 0, 0.1f);
        L.attn_norm = vec(d, 1.0f, 0.1f);
        if (ln) L.attn_norm_bias = vec(d, 0, 0.1f);
        if (!c.shared_input_norm) {
            L.ffn_norm = vec(d, 1.0f, 0.1f);
            if (ln) L.ffn_norm_bias = vec(d, 0, 0.1f);
        }
        if (c.activation == activation_kind::swiglu) L.w_gate = mat(M, d);
        L.w_up = mat(M, d);
        L.w_down = mat(d, M);
        if (c.bias.ffn) {
            L.b_up = vec(M, 0, 0.1f);
            L.b_down = vec(d, 0, 0.1f);
        }
        w.layers.push_back(std::move(L));
    }
    return w;
}

// The dense weights as a model held in memory. Layouts vary the way files do: GPT-2 stores its
// matrices transposed, Phi-3 fuses q/k/v and gate/up into one tensor read by row slices.
model in_memory_model(const model_config& c, const dense_weights& w)
{
    auto ck = std::make_shared<checkpoint>();
    ck->path = "in-memory";
    tensor_store& s = ck->tensors;
    const bool transposed = c.family == model_family::gpt2;
    auto add_mat = [&](const std::string& name, const row_matrix<float>& m) {
        if (transposed) {
            row_matrix<float> t = m.transpose();
            s.add_f32(name, {t.rows(), t.cols()}, t.data());
        } else {
            s.add_f32(name, {m.rows(), m.cols()}, m.data());
        }
    };
    auto add_vec = [&](const std::string& name, const Eigen::VectorXf& v) {
        if (v.size()) s.add_f32(name, {v.size()}, v.data());
    };
    s.add_f32("embed", {w.token_embedding.rows(), w.token_embedding.cols()}, w.token_embedding.data());
    if (w.position_embedding.size())
        s.add_f32("pos", {w.position_embedding.rows(), w.position_embedding.cols()}, w.position_embedding.data());
    add_vec("final_norm", w.final_norm);
    add_vec("final_norm_bias", w.final_norm_bias);
    if (w.lm_head.size()) s.add_f32("lm_head", {w.lm_head.rows(), w.lm_head.cols()}, w.lm_head.data());
    const bool fused = c.family == model_family::phi3;
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        const auto& L = w.layers[l];
        const std::string p = "l" + std::to_string(l) + ".";
        if (fused) {
            row_matrix<float> qkv(L.wq.rows() + 2 * L.wk.rows(), L.wq.cols());
            qkv << L.wq, L.wk, L.wv;
            add_mat(p + "qkv", qkv);
            row_matrix<float> gu(2 * L.w_up.rows(), L.w_up.cols());
            gu << L.w_gate, L.w_up;
            add_mat(p + "gate_up", gu);
        } else {
            add_mat(p + "wq", L.wq);
            add_mat(p + "wk", L.wk);
            add_mat(p + "wv", L.wv);
            if (L.w_gate.size()) add_mat(p + "gate", L.w_gate);
            add_mat(p + "up", L.w_up);
        }
        add_mat(p + "wo", L.wo);
        add_mat(p + "down", L.w_down);
        add_vec(p + "bq", L.bq);
        add_vec(p + "bk", L.bk);
        add_vec(p + "bv", L.bv);
        add_vec(p + "bo", L.bo);
        add_vec(p + "attn_norm", L.attn_norm);
        add_vec(p + "attn_norm_bias", L.attn_norm_bias);
        add_vec(p + "ffn_norm", L.ffn_norm);
        add_vec(p + "ffn_norm_bias", L.ffn_norm_bias);
        add_vec(p + "b_up", L.b_up);
        add_vec(p + "b_down", L.b_down);
    }
    model m;
    m.config = c;
    m.source = ck;
    auto vecv = [&](const std::string& name) { const auto* t = s.find(name); return t ? whole_vector(*t) : vector_view{}; };
    m.token_embedding = whole(s.at("embed"));
    if (const auto* t = s.find("pos")) m.position_embedding = whole(*t);
    m.final_norm = vecv("final_norm");
    m.final_norm_bias = vecv("final_norm_bias");
    m.lm_head = c.tied_embeddings ? m.token_embedding : whole(s.at("lm_head"));
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        const std::string p = "l" + std::to_string(l) + ".";
        layer_weights L;
        if (fused) {
            const auto& qkv = s.at(p + "qkv");
            L.wq = row_slice(qkv, 0, c.q_dim());
            L.wk = row_slice(qkv, c.q_dim(), c.kv_dim());
            L.wv = row_slice(qkv, c.q_dim() + c.kv_dim(), c.kv_dim());
            const auto& gu = s.at(p + "gate_up");
            L.w_gate = row_slice(gu, 0, c.ffn_size);
            L.w_up = row_slice(gu, c.ffn_size, c.ffn_size);
        } else {
            L.wq = whole(s.at(p + "wq"), transposed);
            L.wk = whole(s.at(p + "wk"), transposed);
            L.wv = whole(s.at(p + "wv"), transposed);
            if (const auto* t = s.find(p + "gate")) L.w_gate = whole(*t, transposed);
            L.w_up = whole(s.at(p + "up"), transposed);
        }
        L.wo = whole(s.at(p + "wo"), transposed);
        L.w_down = whole(s.at(p + "down"), transposed);
        L.bq = vecv(p + "bq");
        L.bk = vecv(p + "bk");
        L.bv = vecv(p + "bv");
        L.bo = vecv(p + "bo");
        L.attn_norm = vecv(p + "attn_norm");
        L.attn_norm_bias = vecv(p + "attn_norm_bias");
        L.ffn_norm = vecv(p + "ffn_norm");
        L.ffn_norm_bias = vecv(p + "ffn_norm_bias");
        L.b_up = vecv(p + "b_up");
        L.b_down = vecv(p + "b_down");
        m.layers.push_back(std::move(L));
    }
    return m;
}

struct test_model {
    model m;
    dense_weights dense;  // materialize(m): what the reference reads
};

test_model make_test_model(const model_config& c, unsigned seed)
{
    test_model t;
    t.m = in_memory_model(c, random_dense(c, seed));
    t.dense = materialize(t.m);
    return t;
}

std::vector<int> some_tokens(const model_config& c, int T, unsigned seed)
{
    std::mt19937 rng(seed);
    std::vector<int> t(T);
    for (auto& x : t) x = static_cast<int>(rng() % c.vocab_size);
    return t;
}

using test::hidden_at;
using test::relative_error;

const model_family all_families[] = {model_family::llama, model_family::mistral, model_family::qwen2, model_family::phi3,
                                     model_family::gpt2,  model_family::neox,    model_family::falcon};

// float32 products accumulate d = 64..96 terms of O(1) values: rounding errors of about
// sqrt(d) * 6e-8 ~ 1e-6 relative per product; three layers of them (norms renormalize, softmax is
// well conditioned at these scales) stay below 1e-5. The reference is float64 (errors ~1e-15).
constexpr double hidden_tolerance = 1e-5;

void check_against_reference(const model_config& c, bool attention)
{
    auto tm = make_test_model(c, 7);
    const auto tokens = some_tokens(c, 11, 3);
    forward_options o;
    o.hidden_states = true;
    o.logits = forward_options::logits_mode::all;
    o.zero_attention = !attention;
    const forward_result r = forward(tm.m, tokens, o);
    test::reference_options ro;
    ro.attention = attention;
    const auto ref = test::reference_forward(c, tm.dense, tokens, ro);
    REQUIRE(r.hidden.shape()[0] == static_cast<std::size_t>(c.num_layers + 1));
    for (std::size_t l = 0; l <= static_cast<std::size_t>(c.num_layers); ++l) {
        CAPTURE(l);
        CHECK(relative_error(hidden_at(r, l), ref.hidden[l]) <= hidden_tolerance);
    }
    CHECK(relative_error(r.logits.cast<double>(), ref.logits) <= hidden_tolerance);
}
}  // namespace

TEST_CASE("forward: hidden states and logits match the float64 reference for every family")
{
    for (auto f : all_families) {
        CAPTURE(family_name(f));
        for (bool attention : {true, false}) {
            CAPTURE(attention);
            check_against_reference(family_config(f), attention);
        }
    }
    SUBCASE("llama2.c-style adjacent rotary pairs")
    {
        auto c = family_config(model_family::llama);
        c.rope = rope_style::adjacent;
        check_against_reference(c, true);
    }
}

TEST_CASE("forward: Hugging Face checkpoints of every family, written and loaded, match the reference")
{
    // The models go through the real file layouts (fused q/k/v, Conv1D, per-head interleaving) and
    // the dtype decoders; the reference reads materialize(loaded model), i.e. the same rounded
    // weights, so the tolerance is the float32 one above whatever the file's dtype.
    struct variant {
        model_family family;
        falcon_variant falcon;
    };
    const variant variants[] = {{model_family::llama, {}},   {model_family::mistral, {}}, {model_family::qwen2, {}},
                                {model_family::phi3, {}},    {model_family::gpt2, {}},    {model_family::neox, {}},
                                {model_family::falcon, {}},  {model_family::falcon, falcon_variant::multi_query},
                                {model_family::gemma, {}},   {model_family::gemma2, {}},  {model_family::gemma3, {}},
                                {model_family::mpt, {}}};
    for (const auto& v : variants) {
        for (dtype t : {dtype::f32, dtype::bf16}) {
            CAPTURE(family_name(v.family));
            CAPTURE(static_cast<int>(v.falcon));
            CAPTURE(dtype_name(t));
            const model_config c = small_config(v.family, v.falcon);
            test::temp_dir dir;
            write_hf_checkpoint(dir.path().string(), c, random_weights(c, 42), t);
            const model m = load_model(dir.path().string());
            const dense_weights dense = materialize(m);
            const auto tokens = some_tokens(c, 10, 6);
            for (bool attention : {true, false}) {
                CAPTURE(attention);
                test::check_against_reference(m, tokens, attention, hidden_tolerance);
            }
            // One token at a time: the GEMV kernels read the stored rows (f32 or bf16) in place.
            session s(m);
            row_matrix<float> stepwise(tokens.size(), c.vocab_size);
            for (std::size_t t = 0; t < tokens.size(); ++t) stepwise.row(t) = s.next(tokens[t]).transpose();
            const auto ref = test::reference_forward(m.config, dense, tokens);
            CHECK(relative_error(stepwise.cast<double>(), ref.logits) <= hidden_tolerance);
        }
    }
}

TEST_CASE("forward: dot kernels against float64 sums, every length and alignment")
{
    std::mt19937 rng(3);
    std::normal_distribution<float> n01;
    std::vector<float> x(300), w(300);
    std::vector<std::uint16_t> wb(300);
    for (auto& v : x) v = n01(rng);
    for (std::size_t i = 0; i < w.size(); ++i) {
        wb[i] = float_to_bf16(n01(rng));
        w[i] = bf16_to_float(wb[i]);
    }
    for (std::int64_t n : {0, 1, 7, 8, 9, 31, 32, 33, 64, 255, 299}) {
        for (std::int64_t off : {0, 1}) {
            CAPTURE(n);
            CAPTURE(off);
            double want = 0, mag = 0;
            for (std::int64_t i = 0; i < n; ++i) {
                want += double(w[off + i]) * x[off + i];
                mag += std::abs(double(w[off + i]) * x[off + i]);
            }
            // float32 sums of n products: error <= n * 2^-24 * sum |w x| (a loose but rigorous bound).
            const double bound = (n + 1) * 6e-8 * mag + 1e-30;
            CHECK(std::abs(kernels::dot_f32(w.data() + off, x.data() + off, n) - want) <= bound);
            CHECK(std::abs(kernels::dot_bf16(wb.data() + off, x.data() + off, n) - want) <= bound);
            CHECK(std::abs(kernels::dot_f32_plain(w.data() + off, x.data() + off, n) - want) <= bound);
            CHECK(std::abs(kernels::dot_bf16_plain(wb.data() + off, x.data() + off, n) - want) <= bound);
            std::vector<float> decoded(n);
            kernels::bf16_to_f32(wb.data() + off, decoded.data(), n);
            for (std::int64_t i = 0; i < n; ++i) CHECK(decoded[i] == w[off + i]);
        }
    }
}

TEST_CASE("forward: causal attention against float64, across query blocks and kv groups")
{
    // Shapes that reach every path: a few queries (Eigen multiplies by V), a prompt of several
    // 64-row query blocks, queries after a filled cache (pos0 > 0), head sizes that are not
    // multiples of the kernels' 16-lane steps, and 1, 2 and 6 query heads per kv head.
    struct shape {
        std::int64_t T, S, heads, kv_heads, head_dim;
    };
    const shape shapes[] = {{1, 1, 4, 2, 16}, {3, 10, 4, 2, 16}, {5, 5, 2, 2, 20},   {70, 70, 4, 2, 64},
                            {130, 150, 6, 1, 24}, {64, 64, 4, 4, 8}, {65, 200, 2, 1, 64}};
    std::mt19937 rng(11);
    std::normal_distribution<float> n01;
    for (const shape& z : shapes) {
        CAPTURE(z.T);
        CAPTURE(z.S);
        CAPTURE(z.heads);
        CAPTURE(z.head_dim);
        const std::int64_t kv_dim = z.kv_heads * z.head_dim, pos0 = z.S - z.T;
        row_matrix<float> Q(z.T, z.heads * z.head_dim), K(z.S + 3, kv_dim), V(z.S + 3, kv_dim);  // caches have spare rows
        for (auto* m : {&Q, &K, &V})
            for (Eigen::Index i = 0; i < m->size(); ++i) m->data()[i] = n01(rng);
        for (std::int64_t window : {0, 1, 5, 67}) {  // 0: no sliding window
            CAPTURE(window);
            row_matrix<float> out;
            causal_attention(Q, K, V, z.S, z.heads, z.kv_heads, z.head_dim, out, {window});
            REQUIRE(out.rows() == z.T);
            REQUIRE(out.cols() == z.heads * z.head_dim);
            double worst = 0;
            for (std::int64_t h = 0; h < z.heads; ++h) {
                const std::int64_t g = h / (z.heads / z.kv_heads);
                for (std::int64_t t = 0; t < z.T; ++t) {
                    const std::int64_t visible = pos0 + t + 1, first = window > 0 ? std::max<std::int64_t>(0, visible - window) : 0;
                    std::vector<double> p(static_cast<std::size_t>(visible));
                    double top = -1e300, sum = 0;
                    for (std::int64_t s = first; s < visible; ++s) {
                        double dot = 0;
                        for (std::int64_t j = 0; j < z.head_dim; ++j)
                            dot += double(Q(t, h * z.head_dim + j)) * K(s, g * z.head_dim + j);
                        p[s] = dot / std::sqrt(double(z.head_dim));
                        top = std::max(top, p[s]);
                    }
                    for (std::int64_t s = first; s < visible; ++s) sum += (p[s] = std::exp(p[s] - top));
                    for (std::int64_t j = 0; j < z.head_dim; ++j) {
                        double want = 0;
                        for (std::int64_t s = first; s < visible; ++s) want += p[s] / sum * V(s, g * z.head_dim + j);
                        worst = std::max(worst, std::abs(out(t, h * z.head_dim + j) - want));
                    }
                }
            }
            // The output is a convex combination of value rows (|v| < ~5 here). float32 scores of
            // head_dim <= 64 products of N(0,1) values are off by ~1e-6 absolute, which moves each
            // weight by about that much relative; the sums of S weighted values add S * 2^-24
            // relative. Both stay below 1e-5 at these sizes; a wrong mask or head gives errors of
            // order 0.1 to 1.
            CHECK(worst <= 1e-5);
        }
    }
}

TEST_CASE("forward: the two rotary styles are different computations")
{
    // Guards the reference itself: if both styles rotated the same pairs, the tests above could
    // not tell them apart.
    auto c = family_config(model_family::llama);
    auto tm = make_test_model(c, 5);
    const auto tokens = some_tokens(c, 6, 1);
    auto ch = c;
    ch.rope = rope_style::adjacent;
    const auto a = test::reference_forward(c, tm.dense, tokens);
    const auto b = test::reference_forward(ch, tm.dense, tokens);
    CHECK(relative_error(a.hidden.back(), b.hidden.back()) > 1e-3);
}

TEST_CASE("forward: KV-cache generation gives the logits of whole-sequence processing")
{
    for (auto f : all_families) {
        CAPTURE(family_name(f));
        const auto c = family_config(f);
        auto tm = make_test_model(c, 11);
        const auto tokens = some_tokens(c, 9, 4);
        forward_options all;
        all.logits = forward_options::logits_mode::all;
        const forward_result whole_seq = forward(tm.m, tokens, all);
        // A prompt of 3 at once, then one token at a time.
        session s(tm.m, all);
        row_matrix<float> stepwise(tokens.size(), c.vocab_size);
        const forward_result prompt = s.run({tokens.begin(), tokens.begin() + 3});
        stepwise.topRows(3) = prompt.logits;
        for (std::size_t t = 3; t < tokens.size(); ++t) stepwise.row(t) = s.next(tokens[t]).transpose();
        CHECK(s.position() == static_cast<std::int64_t>(tokens.size()));
        // Same float32 arithmetic in another order (GEMV vs GEMM): a few ulps of O(10) logits.
        CHECK((stepwise - whole_seq.logits).cwiseAbs().maxCoeff() <= 1e-4);
        // And both against float64.
        const auto ref = test::reference_forward(c, tm.dense, tokens);
        CHECK(relative_error(stepwise.cast<double>(), ref.logits) <= hidden_tolerance);
    }
}

TEST_CASE("forward: ablating a direction leaves the FFN input orthogonal to it")
{
    for (auto f : {model_family::llama, model_family::neox, model_family::falcon}) {
        CAPTURE(family_name(f));
        const auto c = family_config(f);
        auto tm = make_test_model(c, 13);
        const auto tokens = some_tokens(c, 7, 5);
        std::mt19937 rng(2);
        std::normal_distribution<float> n01;
        Eigen::VectorXf v(c.hidden_size);
        for (auto& x : v) x = n01(rng);
        const Eigen::VectorXf unit = v.normalized();

        forward_options plain;
        plain.capture_ffn_layer = 2;
        const forward_result before = forward(tm.m, tokens, plain);
        forward_options o = plain;
        o.ablations.push_back({2, v * 3.0f});  // any scale: the pass normalizes the direction
        const forward_result after = forward(tm.m, tokens, o);

        // The captured input is the normalized one, as the float64 reference computes it.
        test::reference_options ro;
        ro.ffn_layer = 2;
        const auto ref = test::reference_forward(c, tm.dense, tokens, ro);
        CHECK(relative_error(before.ffn_input.cast<double>(), ref.ffn_input) <= hidden_tolerance);
        // Before: a random direction has O(1) components; after: rounding only (|h| ~ 8).
        CHECK((before.ffn_input * unit).cwiseAbs().maxCoeff() > 1e-2);
        CHECK((after.ffn_input * unit).cwiseAbs().maxCoeff() <= 1e-5);
        // The rest of the input is untouched: h' = h - (h.v) v exactly.
        const row_matrix<float> expected = before.ffn_input - (before.ffn_input * unit) * unit.transpose();
        CHECK((after.ffn_input - expected).cwiseAbs().maxCoeff() <= 1e-5);
        CHECK(after.ffn_output.rows() == static_cast<Eigen::Index>(tokens.size()));
    }
}

TEST_CASE("forward: zeroing attention in chosen layers")
{
    const auto c = family_config(model_family::llama);
    auto tm = make_test_model(c, 17);
    const auto tokens = some_tokens(c, 6, 8);
    forward_options o;
    o.hidden_states = true;
    o.zero_attention_layers = {2};
    const forward_result r = forward(tm.m, tokens, o);
    forward_options all = o;
    all.zero_attention_layers.clear();
    const forward_result with = forward(tm.m, tokens, all);
    // Layer 1 is untouched, layer 2 differs.
    CHECK(relative_error(hidden_at(r, 1), hidden_at(with, 1)) == 0.0);
    CHECK(relative_error(hidden_at(r, 2), hidden_at(with, 2)) > 1e-2);
    // Layer 2 without attention: x + ffn(norm(x)) on layer 1's output, position by position,
    // which is what the reference computes with attention off when run on one layer.
    model_config one = c;
    one.num_layers = 1;
    dense_weights w2 = tm.dense;
    w2.layers = {tm.dense.layers[1]};
    w2.token_embedding.resize(0, 0);
    for (int t = 0; t < static_cast<int>(tokens.size()); ++t) {
        // Feed layer 1's output as an "embedding" row so the reference runs layer 2 alone.
        w2.token_embedding.conservativeResize(t + 1, c.hidden_size);
        w2.token_embedding.row(t) = hidden_at(r, 1).row(t).cast<float>();
    }
    w2.lm_head = tm.dense.lm_head;
    std::vector<int> rows(tokens.size());
    for (std::size_t t = 0; t < rows.size(); ++t) rows[t] = static_cast<int>(t);
    test::reference_options ro;
    ro.attention = false;
    const auto ref = test::reference_forward(one, w2, rows, ro);
    CHECK(relative_error(hidden_at(r, 2), ref.hidden[1]) <= hidden_tolerance);
}

TEST_CASE("forward: a linear hook sees every product and can change it")
{
    const auto c = family_config(model_family::llama);
    auto tm = make_test_model(c, 19);
    const auto tokens = some_tokens(c, 5, 9);
    std::vector<linear_site> seen;
    forward_options o;
    o.on_linear = [&](const linear_site& s, row_matrix<float>& x, row_matrix<float>& w) {
        seen.push_back(s);
        CHECK(x.cols() == w.cols());
        if (s.kind == linear_kind::down && s.layer == 2) w.setZero();  // removes layer 2's FFN
    };
    o.hidden_states = true;
    const forward_result r = forward(tm.m, tokens, o);
    // 7 products per SwiGLU layer, plus the lm_head.
    REQUIRE(seen.size() == static_cast<std::size_t>(7 * c.num_layers + 1));
    CHECK(seen.front().layer == 1);
    CHECK(seen.front().kind == linear_kind::q);
    CHECK(seen.back().kind == linear_kind::lm_head);
    // Reference: the same model with layer 2's W_down zeroed.
    dense_weights w = tm.dense;
    w.layers[1].w_down.setZero();
    const auto ref = test::reference_forward(c, w, tokens);
    for (std::size_t l = 0; l <= static_cast<std::size_t>(c.num_layers); ++l)
        CHECK(relative_error(hidden_at(r, l), ref.hidden[l]) <= hidden_tolerance);
}

TEST_CASE("forward: bad input")
{
    const auto c = family_config(model_family::gpt2);
    auto tm = make_test_model(c, 1);
    CHECK_THROWS_AS(forward(tm.m, {0, static_cast<int>(c.vocab_size)}), input_error);
    CHECK_THROWS_AS(forward(tm.m, {-1}), input_error);
    // GPT-2 has 32 learned positions here.
    CHECK_THROWS_AS(forward(tm.m, std::vector<int>(33, 1)), input_error);
    forward_options o;
    o.capture_ffn_layer = 4;
    CHECK_THROWS_AS(forward(tm.m, {1}, o), input_error);
    forward_options z;
    z.ablations.push_back({1, Eigen::VectorXf::Zero(c.hidden_size)});
    CHECK_THROWS_AS(forward(tm.m, {1}, z), input_error);
}

TEST_CASE("forward: the hidden states saved by sdlens forward --npy are the pass's")
{
#ifdef SDLENS_CLI
    // A llama written by the checkpoint writer; the CLI's norms and .npy against float64.
    const model_config c = small_config(model_family::llama);
    test::temp_dir dir;
    write_hf_checkpoint((dir / "m").string(), c, random_weights(c, 3), dtype::f32);
    const model m = load_model((dir / "m").string());
    const std::vector<int> tokens = {5, 17, 3, 99};
    const auto ref = test::reference_forward(m.config, materialize(m), tokens);

    const auto r = test::run_cli("forward \"" + (dir / "m").string() + "\" --tokens 5,17,3,99 --json --npy \"" +
                                 (dir / "h.npy").string() + "\"");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["tokens"] == nlohmann::json(tokens));
    const auto saved = xt::load_npy<float>((dir / "h.npy").string());
    REQUIRE(saved.dimension() == 3);
    REQUIRE(saved.shape()[0] == static_cast<std::size_t>(c.num_layers + 1));
    for (std::size_t l = 0; l <= static_cast<std::size_t>(c.num_layers); ++l)
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            double err = 0;
            for (std::size_t i = 0; i < static_cast<std::size_t>(c.hidden_size); ++i)
                err = std::max(err, std::abs(saved(l, t, i) - ref.hidden[l](t, i)));
            const double want = ref.hidden[l].row(t).norm();
            CHECK(err <= hidden_tolerance * want);
            CHECK(std::abs(j["norms"][l][t].get<double>() - want) <= hidden_tolerance * want);
        }
    const auto& logits = j["logits"];
    REQUIRE(logits.size() == static_cast<std::size_t>(c.vocab_size));
    for (std::size_t v = 0; v < logits.size(); ++v)
        CHECK(std::abs(logits[v].get<double>() - ref.logits(3, v)) <= 1e-5 * ref.logits.row(3).norm());

    // Bad input: one line on stderr, exit 2.
    CHECK(test::run_cli("forward \"" + (dir / "m").string() + "\" --tokens 1,128").exit_code == 2);
    CHECK(test::run_cli("forward \"" + (dir / "m").string() + "\" --tokens 1,,2").exit_code == 2);
    CHECK(test::run_cli("forward \"" + (dir / "m").string() + "\" --text hello").exit_code == 2);  // no tokenizer
#endif
}

#ifdef SDLENS_TEST_HAS_TOKENIZER
namespace {
// llama2.c's output: each piece decoded after its predecessor, one unprintable byte dropped.
std::string decode_like_llama2c(const tokenizer& tok, int first, const std::vector<int>& tokens)
{
    std::string s;
    int prev = first;
    for (int t : tokens) {
        const std::string p = tok.decode(prev, t);
        prev = t;
        if (p.size() == 1 && !std::isprint(static_cast<unsigned char>(p[0])) && !std::isspace(static_cast<unsigned char>(p[0])))
            continue;
        s += p;
    }
    return s;
}

std::string slurp(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
}  // namespace

TEST_CASE("forward: stories260K logits at every position match llama2.c's (.bin and .gguf)")
{
    auto dir = test::stories260k();
    if (!dir) return;
    const auto fox = nlohmann::json::parse(slurp(*dir / "logits_fox.json"));
    const std::vector<int> tokens = fox["tokens"].get<std::vector<int>>();
    const auto want = fox["logits"].get<std::vector<std::vector<float>>>();
    REQUIRE(want.size() == tokens.size());
    for (const char* file : {"stories260K.bin", "stories260K.gguf"}) {
        CAPTURE(file);
        const model m = load_model((*dir / file).string(), {(*dir / "tok512.bin").string()});
        forward_options o;
        o.logits = forward_options::logits_mode::all;
        const forward_result r = forward(m, tokens, o);
        REQUIRE(r.logits.rows() == static_cast<Eigen::Index>(tokens.size()));
        REQUIRE(r.logits.cols() == static_cast<Eigen::Index>(want[0].size()));
        double worst = 0;
        for (std::size_t t = 0; t < tokens.size(); ++t)
            for (std::size_t v = 0; v < want[t].size(); ++v)
                worst = std::max(worst, static_cast<double>(std::abs(r.logits(t, v) - want[t][v])));
        // Both sides are float32 sums of 64 (dim) and 172 (hidden) terms of O(1) values, in different
        // orders; the fixture prints 6 decimals. 1e-4 is ~20 ulps of the O(10) logits.
        CHECK(worst <= 1e-4);
        // The token ids themselves come from our tokenizer as from llama2.c's.
        if (auto tok = load_tokenizer(*m.source, (*dir / "tok512.bin").string()))
            CHECK(tok->encode(fox["text"].get<std::string>(), true) == tokens);
    }
}

TEST_CASE("generate: 200 greedy steps of stories260K reproduce llama2.c's run output")
{
    auto dir = test::stories260k();
    if (!dir) return;
    const std::string expected = slurp(*dir / "greedy_200.txt");  // `run ... -t 0 -n 200`, ends with "\n"
    for (const char* file : {"stories260K.bin", "stories260K.gguf"}) {
        CAPTURE(file);
        const model m = load_model((*dir / file).string(), {(*dir / "tok512.bin").string()});
        const auto tok = load_tokenizer(*m.source, (*dir / "tok512.bin").string());
        REQUIRE(tok.has_value());
        // llama2.c: 200 positions from BOS, each predicting the next token; BOS ends a story.
        const std::vector<int> out = greedy_generate(m, {static_cast<int>(tok->bos())}, 200, static_cast<int>(tok->bos()));
        CHECK(decode_like_llama2c(*tok, static_cast<int>(tok->bos()), out) + "\n" == expected);
    }
#ifdef SDLENS_CLI
    const auto r = test::run_cli("generate \"" + (*dir / "stories260K.bin").string() + "\" --tokenizer \"" +
                                 (*dir / "tok512.bin").string() + "\" -n 200");
    CHECK(r.exit_code == 0);
    CHECK(r.out == expected);
#endif
}
#endif
