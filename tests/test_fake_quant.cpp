// Fake quantization (analysis/fake_quantization.hpp), perplexity and KL divergence
// (analysis/perplexity.hpp) and the precision plan: the quantizers against closed forms, the
// quantized forward pass against an independent one through the full linear hook, smoothing
// without quantization against the plain model, perplexity and KL of models with known
// next-token distributions against direct computation, and the skip list on planted checkpoints.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include <sdlens/analysis/fake_quantization.hpp>
#include <sdlens/analysis/perplexity.hpp>
#include <sdlens/analysis/precision_plan.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>
#include <sdlens/model/random_model.hpp>

#include "support.hpp"

namespace {

using namespace sdlens;

struct written_model {
    test::temp_dir dir;
    model_config config;
    dense_weights weights;
    model m;
};

std::unique_ptr<written_model> write_and_load(const model_config& c, const dense_weights& w, dtype t = dtype::f32)
{
    auto r = std::make_unique<written_model>();
    r->config = c;
    r->weights = w;
    write_hf_checkpoint(r->dir.path().string(), c, w, t);
    r->m = load_model(r->dir.path().string());
    return r;
}

std::unique_ptr<written_model> random_checkpoint(model_family f, std::uint64_t seed, dtype t = dtype::f32)
{
    const model_config c = small_config(f);
    return write_and_load(c, random_weights(c, seed), t);
}

std::vector<int> some_tokens(const model& m, int n, int first = 3)
{
    std::vector<int> t;
    for (int i = 0; i < n; ++i) t.push_back((first + 7 * i) % static_cast<int>(m.config.vocab_size));
    return t;
}

// A planted model of d 48, 7 layers, 4 heads, vocabulary 96.
planted_model small_planted(model_family f, std::uint64_t seed)
{
    plant_sizes s;
    s.hidden = 48;
    s.layers = 7;
    s.heads = 4;
    s.vocab = 96;
    plant_options o;
    o.seed = seed;
    return plant_random_model(plant_model_config(f, s), o);
}

const std::vector<linear_kind> layer_kinds{linear_kind::q,    linear_kind::k,  linear_kind::v,   linear_kind::o,
                                           linear_kind::gate, linear_kind::up, linear_kind::down};

}  // namespace

TEST_CASE("int8 quantizer: step absmax / 127, rounding half to even, clamping, zeros")
{
    // absmax 127 makes the step exactly 1, so codes are the rounded values themselves.
    row_matrix<float> x(1, 8);
    x << 127.0f, -63.5f, 0.5f, 1.5f, 2.5f, -2.5f, 0.0f, 3.25f;
    const Eigen::VectorXf step = fake_quantize_int8(x, int8_granularity::per_tensor);
    REQUIRE(step.size() == 1);
    CHECK(step[0] == 1.0f);
    row_matrix<float> expected(1, 8);
    expected << 127.0f, -64.0f, 0.0f, 2.0f, 2.0f, -2.0f, 0.0f, 3.0f;  // torch.round: half to even
    CHECK(x == expected);

    // The vectorizable rounding equals nearbyint's (half to even) wherever codes can fall.
    for (float v = -130.0f; v <= 130.0f; v += 0.125f) REQUIRE(round_half_even(v) == std::nearbyint(v));
    for (float v : {0.49999997f, -0.49999997f, 126.50001f, 1e-30f, -0.0f}) CHECK(round_half_even(v) == std::nearbyint(v));
    CHECK(int8_code(200.0f, 1.0f) == 127.0f);
    CHECK(int8_code(-200.0f, 1.0f) == -127.0f);
    CHECK(int8_step(2.54f) == doctest::Approx(0.02).epsilon(1e-6));

    row_matrix<float> zeros = row_matrix<float>::Zero(3, 4);
    const Eigen::VectorXf zstep = fake_quantize_int8(zeros, int8_granularity::per_tensor);
    CHECK(zstep[0] == doctest::Approx(1e-5 / 127));  // SmoothQuant's floor on the absmax
    CHECK(zeros.isZero(0));

    // Per row: each row's own step; a row's largest magnitude is exact.
    row_matrix<float> r(2, 3);
    r << 1.0f, -0.5f, 0.25f, 254.0f, 3.0f, -1.0f;
    const Eigen::VectorXf rs = fake_quantize_int8(r, int8_granularity::per_row);
    REQUIRE(rs.size() == 2);
    CHECK(rs[0] == doctest::Approx(1.0 / 127));
    CHECK(rs[1] == doctest::Approx(2.0));
    CHECK(r(0, 0) == doctest::Approx(1.0f));
    CHECK(r(0, 1) == doctest::Approx(-64.0 / 127));  // -63.5 -> -64
    CHECK(r(1, 0) == 254.0f);
    CHECK(r(1, 1) == 4.0f);   // 1.5 -> 2
    CHECK(r(1, 2) == -0.0f);  // -0.5 -> -0
}

TEST_CASE("int4 groups: asymmetric min-max steps per group of 128, a short last group its own")
{
    std::vector<float> row(130, 0.0f);
    // Group 0 spans [-1, 2.75]: step 3.75 / 15 = 0.25 exactly, zero point round(4) = 4.
    row[0] = -1.0f, row[1] = 2.75f, row[2] = 0.125f, row[3] = 0.375f, row[4] = 1.1f;
    // Group 1 (2 values): [0.5, 2]: step 0.1, zero point round(-5) clamped to 0, so 0.5 is code 5.
    row[128] = 0.5f, row[129] = 2.0f;
    fake_quantize_int4_groups(row.data(), 130, 128);
    CHECK(row[0] == -1.0f);
    CHECK(row[1] == 2.75f);
    CHECK(row[2] == 0.0f);   // 0.5 -> 0 (half to even), + 4 -> 4 -> 0
    CHECK(row[3] == 0.5f);   // 1.5 -> 2
    CHECK(row[4] == 1.0f);   // 4.4 -> 4
    CHECK(row[5] == 0.0f);   // zeros in the group stay exact (the zero point is an integer)
    CHECK(row[128] == doctest::Approx(0.5).epsilon(1e-6));
    CHECK(row[129] == doctest::Approx(1.5).epsilon(1e-6));  // code 20 clamps to 15: 15 * 0.1
}

TEST_CASE("quantized linears: every product but the skipped down projections reads int8 codes of its tensor's step")
{
    for (model_family f : {model_family::llama, model_family::phi3, model_family::gpt2}) {
        CAPTURE(family_name(f));
        const auto w = random_checkpoint(f, 11);
        const model& m = w->m;
        quantization_options o;
        o.scheme = quant_scheme::of(quant_method::rtn);
        o.skip_down_layers = {2};
        const quantized_linears q(m, o);
        for (int l = 1; l <= static_cast<int>(m.layers.size()); ++l) {
            for (linear_kind k : layer_kinds) {
                const matrix_view& stored = layer_matrix(m.layers[static_cast<std::size_t>(l - 1)], k);
                if (!stored) continue;
                const linear_site s{l, k};
                CAPTURE(l);
                CAPTURE(linear_kind_name(k));
                if (k == linear_kind::down && l == 2) {
                    CHECK_FALSE(q.changes(s));
                    CHECK(q.weight(s) == nullptr);
                    continue;
                }
                REQUIRE(q.changes(s));
                REQUIRE(q.weight(s) != nullptr);
                REQUIRE(q.output_scale(s) != nullptr);
                // The per-tensor step: the absmax over every view of this layer that shares the
                // stored tensor (fused q/k/v, fused gate/up), over 127.
                float absmax = 0;
                for (linear_kind k2 : layer_kinds) {
                    const matrix_view& v2 = layer_matrix(m.layers[static_cast<std::size_t>(l - 1)], k2);
                    if (v2 && v2.tensor == stored.tensor) absmax = std::max(absmax, to_dense(v2).cwiseAbs().maxCoeff());
                }
                const float step = absmax / 127.0f;
                const Eigen::VectorXf& scale = *q.output_scale(s);
                CHECK((scale.array() == step).all());
                const row_matrix<float> codes = to_dense(*q.weight(s)), orig = to_dense(stored);
                REQUIRE(codes.rows() == orig.rows());
                CHECK((codes.array() == codes.array().round()).all());
                CHECK(codes.cwiseAbs().maxCoeff() <= 127.0f);
                // Each code is the nearest grid point: within half a step (plus float rounding).
                CHECK(((codes * step - orig).cwiseAbs().array() <= 0.5f * step * (1 + 1e-5f)).all());
            }
            CHECK_FALSE(q.changes({l, linear_kind::lm_head}));
        }
        if (f == model_family::phi3) {  // fused qkv: one step for the three
            CHECK((*q.output_scale({1, linear_kind::q}))[0] == (*q.output_scale({1, linear_kind::v}))[0]);
            CHECK((*q.output_scale({1, linear_kind::gate}))[0] == (*q.output_scale({1, linear_kind::up}))[0]);
        }
    }
}

TEST_CASE("a skip list given to apply() computes what a quantization built with it does, from shared weights")
{
    for (model_family f : {model_family::llama, model_family::phi3, model_family::gpt2}) {
        CAPTURE(family_name(f));
        const auto w = random_checkpoint(f, 12);
        const model& m = w->m;
        for (quant_method method : {quant_method::rtn, quant_method::rtn_per_channel, quant_method::w4g128}) {
            CAPTURE(quant_method_name(method));
            quantization_options shared_o, built_o;
            shared_o.scheme = built_o.scheme = quant_scheme::of(method);
            built_o.skip_down_layers = {2};
            const quantized_linears shared(m, shared_o), built(m, built_o);
            // The estimate made before building is what the build holds.
            CHECK(quantized_weight_bytes(m, shared_o) == shared.weight_bytes());
            CHECK(quantized_weight_bytes(m, built_o) == built.weight_bytes());
            CHECK(built.weight_bytes() < shared.weight_bytes());

            const std::vector<int> toks = some_tokens(m, 11);
            auto logits = [&](forward_options o) {
                o.logits = forward_options::logits_mode::all;
                return forward(m, toks, o).logits;
            };
            const row_matrix<float> via_apply = logits(shared.apply({}, {2})), via_build = logits(built.apply());
            // The same products on the same bytes in the same order: bit-identical.
            CHECK((via_apply.array() == via_build.array()).all());
            CHECK((logits(shared.apply()).array() != via_build.array()).any());  // the skip changes something
            CHECK_THROWS_AS(shared.apply({}, {0}), input_error);
        }
    }
}

TEST_CASE("quantized weights in the forward pass equal the same weights through the full linear hook")
{
    // Weights only (activations kept): nothing depends on where a rounding boundary falls, so the
    // two paths differ only by float summation order: bf16 codes times an output scale against
    // f32 values code * step in Eigen's product. Per tensor and per channel.
    for (model_family f : {model_family::llama, model_family::gpt2, model_family::neox}) {
        for (auto g : {quant_scheme::weights::int8_per_tensor, quant_scheme::weights::int8_per_channel,
                       quant_scheme::weights::int4_groups}) {
            CAPTURE(family_name(f));
            CAPTURE(static_cast<int>(g));
            const auto w = random_checkpoint(f, 5);
            const model& m = w->m;
            quantization_options o;
            o.scheme.w = g;
            o.scheme.group = 16;
            o.skip_down_layers = {1};
            const quantized_linears q(m, o);
            const std::vector<int> toks = some_tokens(m, 9);
            forward_options fast = q.apply();
            fast.logits = forward_options::logits_mode::all;
            const forward_result a = forward(m, toks, fast);

            // The reference quantizes the decoded weight itself, per fused tensor by hand.
            forward_options slow;
            slow.logits = forward_options::logits_mode::all;
            slow.on_linear = [&](const linear_site& s, row_matrix<float>&, row_matrix<float>& weight) {
                if (s.kind == linear_kind::lm_head || (s.kind == linear_kind::down && s.layer == 1)) return;
                const layer_weights& lw = m.layers[static_cast<std::size_t>(s.layer - 1)];
                if (g == quant_scheme::weights::int8_per_tensor) {
                    float absmax = 0;
                    for (linear_kind k2 : layer_kinds) {
                        const matrix_view& v2 = layer_matrix(lw, k2);
                        if (v2 && v2.tensor == layer_matrix(lw, s.kind).tensor) absmax = std::max(absmax, to_dense(v2).cwiseAbs().maxCoeff());
                    }
                    const double step = absmax / 127.0;
                    weight = (weight.cast<double>() / step).array().round().cast<float>() * static_cast<float>(step);
                } else if (g == quant_scheme::weights::int8_per_channel) {
                    for (Eigen::Index r = 0; r < weight.rows(); ++r) {
                        const double step = weight.row(r).cwiseAbs().maxCoeff() / 127.0;
                        weight.row(r) = ((weight.row(r).cast<double>() / step).array().round() * step).cast<float>();
                    }
                } else {
                    for (Eigen::Index r = 0; r < weight.rows(); ++r)
                        for (Eigen::Index c0 = 0; c0 < weight.cols(); c0 += 16) {
                            auto grp = weight.row(r).segment(c0, std::min<Eigen::Index>(16, weight.cols() - c0));
                            const double lo = grp.minCoeff(), hi = grp.maxCoeff(), step = (hi - lo) / 15;
                            const double zero = std::round(-lo / step);
                            for (Eigen::Index i = 0; i < grp.size(); ++i)
                                grp[i] = static_cast<float>((std::clamp(std::round(grp[i] / step) + zero, 0.0, 15.0) - zero) * step);
                        }
                }
            };
            const forward_result b = forward(m, toks, slow);
            // Round-half-even (ours) and half-away (std::round, here) differ only on exact halves,
            // which random weights do not hit; the products are f32 sums of <= 100 terms over 2
            // layers: 1e-5 relative bounds their rounding.
            CHECK((a.logits - b.logits).norm() <= 1e-5 * b.logits.norm());
            // and the quantization did change the model
            const forward_result plain = forward(m, toks, [] {
                forward_options p;
                p.logits = forward_options::logits_mode::all;
                return p;
            }());
            CHECK((plain.logits - b.logits).norm() > 1e-4 * b.logits.norm());
        }
    }
}

TEST_CASE("activation quantization reaches every product's input but lm_head and the skipped ones")
{
    const auto w = random_checkpoint(model_family::qwen2, 3);
    const model& m = w->m;
    quantization_options o;
    o.scheme.a = quant_scheme::activations::int8_per_tensor;
    o.skip_down_layers = {2};
    const quantized_linears q(m, o);
    forward_options opt = q.apply();
    // Wrap the input hook: after it ran, every input must be on one int8 grid.
    const linear_input_hook inner = opt.on_linear_input;
    int quantized = 0, untouched = 0;
    opt.on_linear_input = [&](const linear_site& s, row_matrix<float>& x) {
        const row_matrix<float> before = x;
        inner(s, x);
        if (s.kind == linear_kind::lm_head) {
            CHECK(x == before);
            return;
        }
        if (s.kind == linear_kind::down && s.layer == 2) {
            CHECK(x == before);
            ++untouched;
            return;
        }
        const float step = int8_step(before.cwiseAbs().maxCoeff());
        // code * step, divided back: an integer up to float rounding (codes <= 127)
        CHECK(((x / step).array() - (x / step).array().round()).abs().maxCoeff() < 1e-4f);
        CHECK((x - before).cwiseAbs().maxCoeff() <= 0.5f * step * (1 + 1e-5f));
        ++quantized;
    };
    forward(m, some_tokens(m, 6), opt);
    CHECK(untouched == 1);
    CHECK(quantized == 7 * static_cast<int>(m.layers.size()) - 1);  // q k v o gate up down per layer
}

TEST_CASE("smoothing without quantization leaves the logits unchanged")
{
    for (model_family f : {model_family::llama, model_family::gpt2, model_family::phi3}) {
        CAPTURE(family_name(f));
        const auto w = random_checkpoint(f, 8);
        const model& m = w->m;
        const activation_maxima mx = calibrate_activation_maxima(m, {some_tokens(m, 12, 1), some_tokens(m, 12, 5)});
        CHECK(mx.tokens == 24);
        REQUIRE(mx.attention_input.size() == m.layers.size());
        CHECK(mx.attention_input[0].minCoeff() > 0);
        quantization_options o;
        o.scheme.smooth = true;
        o.scheme.alpha = 0.5;
        const quantized_linears q(m, o, &mx);
        CHECK(q.changes({1, linear_kind::q}));
        CHECK_FALSE(q.changes({1, linear_kind::o}));  // o and down are not smoothed
        CHECK_FALSE(q.changes({1, linear_kind::down}));
        forward_options smooth = q.apply(), plain;
        smooth.logits = plain.logits = forward_options::logits_mode::all;
        const std::vector<int> toks = some_tokens(m, 10, 2);
        const forward_result a = forward(m, toks, smooth), b = forward(m, toks, plain);
        // x / s times W s: two roundings per input element against none, through 2 layers.
        CHECK((a.logits - b.logits).norm() <= 1e-5 * b.logits.norm());
        CHECK(a.logits != b.logits);  // it did run through the changed weights
    }
}

TEST_CASE("perplexity windows: hf keeps the stream, llama.cpp puts BOS first and scores the second half")
{
    std::vector<int> stream(23);
    for (int i = 0; i < 23; ++i) stream[static_cast<std::size_t>(i)] = 100 + i;
    const auto hf = perplexity_windows(stream, 10, ppl_style::hf, 1);
    REQUIRE(hf.size() == 2);  // the last 3 tokens are dropped
    CHECK(hf[1].front() == 110);
    const auto lc = perplexity_windows(stream, 10, ppl_style::llama_cpp, 1);
    REQUIRE(lc.size() == 2);
    CHECK(lc[0].front() == 1);
    CHECK(lc[1].front() == 1);
    CHECK(lc[1][1] == 111);
    CHECK(perplexity_windows(stream, 10, ppl_style::llama_cpp, -1)[1].front() == 110);
    CHECK(first_scored_position(10, ppl_style::hf) == 0);
    CHECK(first_scored_position(10, ppl_style::llama_cpp) == 5);
    CHECK_THROWS_AS(perplexity_windows(stream, 1, ppl_style::hf, 1), input_error);
}

TEST_CASE("perplexity and KL divergence of models with known next-token distributions")
{
    // GPT-2 with the final LayerNorm's gain at zero: every position's normed state is the norm's
    // bias b, so the next-token distribution is softmax(W b) whatever the input.
    model_config c = small_config(model_family::gpt2);
    dense_weights dw = random_weights(c, 21);
    dw.final_norm.setZero();
    const auto w = write_and_load(c, dw);
    const model& m = w->m;
    const Eigen::MatrixXd head = to_dense(m.lm_head).cast<double>();
    const Eigen::VectorXd b = dw.final_norm_bias.cast<double>();
    auto log_softmax_d = [](const Eigen::VectorXd& z) {
        const double mx = z.maxCoeff();
        return Eigen::VectorXd(z.array() - (mx + std::log((z.array() - mx).exp().sum())));
    };
    const Eigen::VectorXd lp = log_softmax_d(head * b);

    // A variant whose lm_head is another matrix: q = softmax(W' b).
    row_matrix<float> other = to_dense(m.lm_head);
    other.col(0) *= -3.0f;
    other.col(5).array() += 0.25f;
    tensor_info t{"other lm_head", dtype::f32, {other.rows(), other.cols()}, reinterpret_cast<const std::byte*>(other.data()),
                  static_cast<std::uint64_t>(other.size() * 4)};
    const matrix_view other_view = whole(t);
    forward_options variant;
    variant.replace_linear = [&](const linear_site& s) {
        return s.kind == linear_kind::lm_head ? linear_replacement{&other_view, nullptr} : linear_replacement{};
    };
    const Eigen::VectorXd lq = log_softmax_d(other.cast<double>() * b);
    const double kl = (lp.array().exp() * (lp - lq).array()).sum();
    Eigen::Index top_p = 0, top_q = 0;
    lp.maxCoeff(&top_p);
    lq.maxCoeff(&top_q);

    std::vector<int> stream;
    for (int i = 0; i < 40; ++i) stream.push_back((i * 13 + 2) % static_cast<int>(c.vocab_size));
    for (ppl_style style : {ppl_style::hf, ppl_style::llama_cpp}) {
        CAPTURE(ppl_style_name(style));
        const auto windows = perplexity_windows(stream, 16, style, static_cast<int>(c.bos_token));
        REQUIRE(windows.size() == 2);
        const auto r = evaluate_perplexity(m, windows, style, {forward_options{}, variant});
        REQUIRE(r.size() == 2);
        double nll_p = 0, nll_q = 0;
        std::int64_t n = 0;
        for (const auto& win : windows)
            for (std::size_t p = static_cast<std::size_t>(first_scored_position(16, style)); p + 1 < win.size(); ++p)
                nll_p -= lp[win[p + 1]], nll_q -= lq[win[p + 1]], ++n;
        CHECK(r[0].tokens == n);
        CHECK(r[0].tokens == (style == ppl_style::hf ? 30 : 14));
        CHECK(r[0].windows == 2);
        // logits in f32 from a d-term product: ~1e-6 relative on NLLs of ~ log(vocab)
        CHECK(r[0].nll == doctest::Approx(nll_p / static_cast<double>(n)).epsilon(1e-5));
        CHECK(r[0].ppl == doctest::Approx(std::exp(nll_p / static_cast<double>(n))).epsilon(1e-5));
        CHECK(r[1].nll == doctest::Approx(nll_q / static_cast<double>(n)).epsilon(1e-5));
        CHECK(r[0].kl.mean == 0);
        CHECK(r[1].kl.mean == doctest::Approx(kl).epsilon(1e-4));
        CHECK(r[1].kl.median == doctest::Approx(kl).epsilon(1e-4));  // every token has the same KL
        CHECK(r[1].kl.p99 == doctest::Approx(kl).epsilon(1e-4));
        CHECK(r[1].kl.top1_agreement == (top_p == top_q ? 1.0 : 0.0));
    }
}

TEST_CASE("KL percentiles and median as llama.cpp takes them")
{
    const std::vector<double> v{1, 2, 3, 4, 5};
    CHECK(sorted_percentile(v, 0.5) == 3);
    CHECK(sorted_percentile(v, 0.99) == doctest::Approx(4.96));
    CHECK(sorted_percentile(v, 0.0) == 1);
    CHECK(sorted_percentile(v, 1.0) == 5);
}

TEST_CASE("planted checkpoints: the auto precision plan is the planted explosion and decay layers")
{
    for (model_family f : {model_family::llama, model_family::qwen2, model_family::phi3, model_family::gpt2, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const planted_model p = small_planted(f, 4);
        const auto w = write_and_load(p.config, p.weights, dtype::bf16);
        const model& m = w->m;
        const int E = static_cast<int>(p.truth.explosion_layer), D = static_cast<int>(p.truth.decay_layer);

        const precision_plan plan = precision_plan_auto(m);
        CHECK(plan.source == "auto");
        CHECK(plan.layer_numbers() == std::vector<int>{E, D});
        REQUIRE(plan.layers.size() == 2);
        CHECK(plan.layers[0].reason == "explosion layer");
        CHECK(plan.layers[1].reason == "decay layer");
        CHECK(plan.layers[0].gguf_tensor == "blk." + std::to_string(E - 1) + ".ffn_down");
        CHECK(plan.layers[0].checkpoint_tensor == m.layers[static_cast<std::size_t>(E - 1)].w_down.tensor->name);
        CHECK(plan.layers[1].checkpoint_tensor == m.layers[static_cast<std::size_t>(D - 1)].w_down.tensor->name);
        CHECK(plan.layers[0].sigma_1 > 5 * plan.median_sigma);
    }
}

TEST_CASE("planted SwiGLU checkpoints: per-tensor RTN rounds to zero what the explosion layer's FFN gives ordinary tokens")
{
    // The mechanism of Sec. 5.1: with a trigger among the rows, the per-tensor step of E's
    // down-projection input is set by its huge intermediate activation (~1000 against ~0.01), and
    // every ordinary token's input rounds to zero: E's FFN gives them nothing. With E's down
    // projection kept, only gate/up are quantized. The FFN block runs on the same input rows
    // (the unquantized pass's) in both, so that nothing upstream differs.
    // (Planted GELU models put the explosion's gain in the down weights, not in the activation:
    // there the input step is not dominated, so they are left out.)
    for (model_family f : {model_family::llama, model_family::qwen2, model_family::phi3}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const planted_model p = small_planted(f, 0);
        const auto w = write_and_load(p.config, p.weights, dtype::bf16);
        const model& m = w->m;
        const int E = static_cast<int>(p.truth.explosion_layer);
        std::vector<int> toks{static_cast<int>(p.truth.trigger_tokens.back())};
        for (int t = 20; toks.size() < 10; ++t)
            if (std::find(p.truth.trigger_tokens.begin(), p.truth.trigger_tokens.end(), t) == p.truth.trigger_tokens.end() &&
                t != m.config.bos_token && t != m.config.eos_token)
                toks.push_back(t);
        forward_options plain;
        plain.capture_ffn_layer = E;
        plain.logits = forward_options::logits_mode::none;
        const forward_result ref = forward(m, toks, plain);
        auto ffn_at_E = [&](const std::vector<int>& skip) {
            quantization_options o;
            o.scheme = quant_scheme::of(quant_method::rtn);
            o.skip_down_layers = skip;
            const quantized_linears q(m, o);
            session sess(m, q.apply());
            return sess.ffn_block(E, ref.ffn_input_raw);
        };
        const row_matrix<float> rtn = ffn_at_E({}), kept = ffn_at_E({E});
        CHECK(ref.ffn_output.row(0).norm() > 100 * ref.ffn_output.row(1).norm());  // the trigger explodes
        CHECK(rtn.row(0).norm() == doctest::Approx(ref.ffn_output.row(0).norm()).epsilon(0.02));
        double err = 0, size = 0;
        for (Eigen::Index t = 1; t < rtn.rows(); ++t) {
            CAPTURE(t);
            CHECK(rtn.row(t).norm() == 0.0f);  // no biases in these families: exactly nothing
            CHECK(ref.ffn_output.row(t).norm() > 0);
            err += (kept.row(t) - ref.ffn_output.row(t)).squaredNorm();
            size += ref.ffn_output.row(t).squaredNorm();
        }
        // Kept, the ordinary tokens get what the layer writes, up to int8 gate/up: their inputs
        // move by ~0.6% (measured), but what E writes for an ordinary token is the explosion
        // neurons' response to a t-share near 0, quadratic in it, which moves 15-30%.
        CHECK(std::sqrt(err / size) < 0.5);
    }
}

TEST_CASE("planted checkpoints of every family: per-tensor W8A8 breaks them, keeping E's and D's down projections mends it")
{
    // Table 1's effect on models whose every part is known: the exploding neurons' activations
    // (thousands) set the per-tensor int8 step of E's and D's down-projection input, and what
    // those layers do for ordinary tokens (plant_ordinary.hpp in the RoPE families, the random
    // FFN with learned positions) rounds to zero. Windows of ordinary tokens, each from position
    // 0 (which triggers); the skip variant shares the quantized weights of the other. What the
    // kept variant still loses is mostly at trigger positions (the decay cancels N_exp to 1e-4,
    // which int8 gate/up inputs cannot keep) and, with GELU, in the ordinary neurons' up rows, whose
    // pre-activations are small next to the weight step (GELU is linear, so its activations are
    // only ~8 sqrt(d)). Measured here (random tokens): the ratio of means and of medians 13-14
    // (GPT-2), 16-21 (NeoX), 140-3000 (SwiGLU families).
    for (model_family f : {model_family::llama, model_family::qwen2, model_family::phi3, model_family::gpt2, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        plant_options po;
        po.seed = 2;
        const planted_model p = plant_random_model(plant_model_config(f, plant_sizes{}), po);  // sdlens plant's defaults: d 64, 8 layers
        const auto w = write_and_load(p.config, p.weights, dtype::bf16);
        const model& m = w->m;
        const std::vector<int> kept{static_cast<int>(p.truth.explosion_layer), static_cast<int>(p.truth.decay_layer)};
        std::vector<std::vector<int>> windows;
        std::mt19937_64 rng(7);
        while (windows.size() < 8) {
            std::vector<int> win;
            while (win.size() < 32) {
                const int t = static_cast<int>(rng() % static_cast<std::uint64_t>(m.config.vocab_size));
                if (std::find(p.truth.trigger_tokens.begin(), p.truth.trigger_tokens.end(), t) == p.truth.trigger_tokens.end() &&
                    t != m.config.eos_token)
                    win.push_back(t);
            }
            windows.push_back(win);
        }
        const std::vector<std::vector<int>> calibration(windows.end() - 2, windows.end()), evaluated(windows.begin(), windows.end() - 2);
        const activation_maxima maxima = calibrate_activation_maxima(m, calibration);
        for (quant_method method : {quant_method::rtn, quant_method::smoothquant}) {
            CAPTURE(quant_method_name(method));
            quantization_options o;
            o.scheme = quant_scheme::of(method);
            const quantized_linears q(m, o, &maxima);
            const auto r = evaluate_perplexity(m, evaluated, ppl_style::hf, {forward_options{}, q.apply(), q.apply({}, kept)});
            CHECK(r[1].kl.mean > 10 * r[2].kl.mean);
            CHECK(r[1].kl.median > 10 * r[2].kl.median);
            CHECK(r[1].kl.top1_agreement < r[2].kl.top1_agreement);
        }
    }
}
