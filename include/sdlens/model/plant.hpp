#pragma once
// Random models with planted singular defects whose every property is known exactly: the ground
// truth against which the analyses are tested, since no real checkpoint large enough to have
// singular defects fits here. plant_defects() edits dense weights (random_weights() by default)
// so that the model behaves as the paper describes (Sec. 3.1-3.4); the caller writes them out.
//
// Construction (d = hidden size, x^ = the normalized residual stream, |x^| = sqrt(d)):
//
// Directions. t (trigger) and u (defect) are balanced random sign patterns: +-1/sqrt(d) on a
// seeded permutation of the dimensions, split in quarters with signs t = (+,+,-,-), u = (+,-,+,-).
// So |t| = |u| = 1, t.u = 0, and t.1 = u.1 = 0: LayerNorm's centring leaves them alone. Every
// entry has the same magnitude, so a planted row alpha*t rounds to f16/bf16/Q8_0 by one common
// factor: rounding changes its scale, never its direction.
//
// Isolation (P = I - t t^T - u u^T, and the initial-token directions). Nothing but the planted
// neurons reads or writes t and u:
//  - every row that reads the normalized stream n = g (.) x^ + b (W_V, W_gate, W_up of every
//    layer) is replaced by r with (r (.) g) = P (r (.) g): it is blind to the t and u content of x^;
//  - every map into the residual stream (columns of W_O and W_down, b_O, b_down) is P-projected;
//  - ordinary token embeddings (and learned positions) are P-projected.
// Hence ordinary tokens have exactly zero t and u components at every layer, values never carry
// t or u from one token to another, and a token whose x^ is nearly all t or u has values near
// W_V's response to the small rest (a low-value attention sink, as in real models). For the
// linearization it makes every layer block diagonal: span{t, u} (where L is the identity except
// for the planted parts) and its complement (the random part, untouched otherwise).
//
// Triggers. BOS and the delimiter token get embedding K t + (a tenth of their projected random
// row), K = 20 x the RMS embedding row norm: x^ = sqrt(d) (t cos th + ...), th ~ 1/200. GPT-2
// (learned positions) puts K t on position 0 instead of BOS, so any token at position 0 triggers
// (BOS too; giving BOS K t as well would make it a 2K trigger there, with another share cos th).
// Without learned positions (RoPE families), any token at position 0 triggers through
// self-attention when E leaves room for it (E >= 3, or 4 with parallel blocks; the default):
// plant_initial.hpp, which adds isolated directions besides t and u (all of them are the
// "isolated basis": P = I - B B^T below). It does what LLaMA2 does (paper Sec. 3.3): the initial
// token explodes with attention on, not without it; a random embedding at position 0 does not.
// In layers 1..E every head gets one query and one key coordinate reading t (score between two
// triggers ~ 32 logits, between a trigger and an ordinary token ~ N(0, few)): triggers attend
// to triggers, whose values are small, so the delimiter's stream is not diluted by ordinary
// values on its way to layer E. The coordinate is unrotated (partial rotary) or the lowest
// RoPE frequency (rotation < 0.05 rad over 100 positions), so this holds at every distance.
// The explosion grows with the trigger share cos^2 th = 1 - th^2 of x^, which differs between
// trigger tokens by a fraction of th^2; the decay cannot correct it (below), so th is kept small.
//
// Explosion (layer E, FFN; norm gain set to 1). m = 4 neurons at seeded rows:
//  - SwiGLU: gate row = up row = alpha t (alpha = 4), down column = beta u. A trigger gives
//    s = t.x^ = sqrt(d) cos th, and the FFN adds m beta silu(alpha s) alpha s u = N_exp u; an
//    ordinary token gives s = 0 and silu(0) 0 = 0 exactly.
//  - GELU with FFN biases: up row = alpha t (alpha = 8), up bias -4, down column = beta u, and
//    b_down takes back what the neurons give at s = 0 (m beta gelu(-4) u, ~1e-4 beta): the
//    FFN adds m beta (gelu(alpha s - 4) - gelu(-4)) u. The bias makes the neurons deaf to small
//    s (gelu'(-4) = -5e-4): stored in f16 or bf16, the projections leave ordinary tokens t and u
//    components ~1e-3, which a bias-free GELU neuron (gelu'(0) = 1/2) would amplify by c ~ 500.
// beta is set so that N_exp (default 125 d) is reached at the expected share. Ordinary hidden
// norms of random_weights() models grow like sqrt(d l) (10-50 here), so N_exp is hundreds of
// times the typical norm (d = 64: 8000 vs 8-20; d = 256: 32000 vs 16-60).
// Linearization of the same neurons (METHOD.md 2, Stein's lemma, z ~ N(0, I), g = 1):
//  - SwiGLU: F1 row = (E[a silu'(a)] + E[silu(a)]) alpha t^T, a ~ N(0, alpha^2), and the
//    expectations sum to k alpha with k = 0.79 at alpha = 4 (-> 2/sqrt(2 pi) = 0.80 as alpha grows):
//    F = c u t^T + (random part), c = k m beta alpha^2;
//  - GELU: F1 row = E[gelu'(alpha z - 4)] alpha t^T, E[...] ~ P(z > 1/2) = 0.31 at alpha = 8:
//    c = 0.31 m beta alpha.
// Forward and linear differ because x^ has t-coefficient sqrt(d) where z has 1. SwiGLU is
// quadratic in s: N_exp = m beta alpha^2 d (silu(a) ~ a for a = alpha sqrt(d) >> 1), so
// N_exp / c = d / k = 1.27 d, and no alpha does better than 1.25 d. The biased GELU is linear in
// s: N_exp ~ m beta alpha sqrt(d), N_exp / c ~ 3.2 sqrt(d). So N_exp = 125 d
// gives c ~ 100 for SwiGLU and c ~ 40 sqrt(d) for GELU. On span{t, u} the layer is
// L = [[1, 0], [c, 1]] (L t = t + c u, L u = u; A t = A u = 0, F u = 0): its leading left singular
// vector is off u by (1/2) atan(2/c) = 0.57 deg at c = 100, and sigma_1 = (c + sqrt(c^2 + 4)) / 2
// exceeds the random block's (~ 3-15 for random_weights()).
//
// Decay (layer D, FFN; norm gain 1). m neurons reading u and writing -u: the exploded token has
// x^ = sqrt(d) u up to (K^2 + rest^2) / N_exp^2 ~ 1e-5, so the neurons give the same output for
// every exploded token, set to cancel N_exp; ordinary tokens give 0 (GELU: 0 after b_down).
// Linearization: F = -c' u u^T + (random part), c' ~ c, so R u = -c' u: an eigenvector exactly
// along u with eigenvalue -c', and u_1 of L is u itself (|1 - c'| > the random block's sigma).
// What is left of a trigger token after the decay is its K t (and the spread of the explosion
// over trigger tokens), so its norm returns to ~K, a few times typical at most.
//
// Rounding. Every planted entry is +-(a value with 8 significant bits), exact in f32, f16 and
// bf16 (Q8_0: to 2^-11), and the decay's values are chosen from such values to cancel the stored
// explosion: rounding neither turns the planted directions nor spoils the cancellation.
//
// Other layers: L is the identity on span{t, u} and random on its complement, whose largest
// singular value exceeds 1, so u_1 is orthogonal to u (90 degrees, up to weight rounding).
// Between E and D the exploded token's x^ is ~ sqrt(d) u, which no other row reads: those layers
// add only small outputs, orthogonal to t and u, and leave the high norm alone.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/dense_weights.hpp"
#include "sdlens/model/plant_initial.hpp"
#include "sdlens/model/plant_isolation.hpp"
#include "sdlens/model/plant_ordinary.hpp"
#include "sdlens/model/random_model.hpp"

namespace sdlens {

struct plant_options {
    std::int64_t explosion_layer = 0;  // 1-based, as the paper; 0 = default_explosion_layer()
    std::int64_t decay_layer = 0;      // 1-based; 0 = the last layer
    std::uint64_t seed = 0;            // directions and neuron choice (random_weights has its own)
    double explosion_norm = 0;         // N_exp; 0 = 125 d
    double trigger_norm = 0;           // K; 0 = 20 x the RMS token embedding row norm
    std::int64_t neurons = 4;          // m, planted neurons per planted layer
    std::int64_t delimiter_token = -1; // -1 = default_delimiter_token()
};

struct plant_ground_truth {
    model_family family = model_family::llama;
    std::uint64_t seed = 0;
    std::int64_t explosion_layer = 0, decay_layer = 0;  // 1-based
    Eigen::VectorXd direction;                          // u
    Eigen::VectorXd trigger;                            // t
    std::vector<std::int64_t> trigger_tokens;           // BOS (not with learned positions), delimiter
    std::int64_t delimiter_token = -1;                  // "." in the written checkpoint's vocabulary
    bool position0_triggers = false;                    // any token at position 0 (plant_initial.hpp)
    // Without learned positions: the layers of the initial-token path (0 = none) and the
    // t-component it gives the median token at position 0 (N0).
    std::int64_t initial_detector_layer = 0, initial_trigger_layer = 0;
    double initial_trigger_norm = 0;
    std::vector<std::int64_t> explosion_neurons, decay_neurons;  // FFN rows (0-based)
    std::vector<std::int64_t> ordinary_neurons;  // plant_ordinary.hpp's rows at E and D (none with learned positions)
    double trigger_norm = 0;    // K: t-component of a trigger token's embedding
    double explosion_norm = 0;  // N_exp: u-component added at layer E for x^ = sqrt(d) t
    double explosion_spike = 0; // c: F ~ c u t^T at layer E (linearized)
    double decay_eigenvalue = 0;  // -c': R u = -c' u at layer D
    // What the block analysis above predicts for layer E: sigma_1 of L and the angle of u_1 to u.
    double explosion_sigma = 0, explosion_angle_degrees = 0;
};

inline nlohmann::json to_json(const plant_ground_truth& g)
{
    auto vec = [](const Eigen::VectorXd& v) { return std::vector<double>(v.data(), v.data() + v.size()); };
    return nlohmann::json{
        {"family", family_name(g.family)},
        {"seed", g.seed},
        {"explosion_layer", g.explosion_layer},
        {"decay_layer", g.decay_layer},
        {"direction", vec(g.direction)},
        {"trigger", vec(g.trigger)},
        {"trigger_tokens", g.trigger_tokens},
        {"delimiter_token", g.delimiter_token},
        {"position0_triggers", g.position0_triggers},
        {"initial_detector_layer", g.initial_detector_layer},
        {"initial_trigger_layer", g.initial_trigger_layer},
        {"initial_trigger_norm", g.initial_trigger_norm},
        {"explosion_neurons", g.explosion_neurons},
        {"decay_neurons", g.decay_neurons},
        {"ordinary_neurons", g.ordinary_neurons},
        {"trigger_norm", g.trigger_norm},
        {"explosion_norm", g.explosion_norm},
        {"explosion_spike", g.explosion_spike},
        {"decay_eigenvalue", g.decay_eigenvalue},
        {"explosion_sigma", g.explosion_sigma},
        {"explosion_angle_degrees", g.explosion_angle_degrees},
    };
}

struct planted_model {
    model_config config;
    dense_weights weights;
    plant_ground_truth truth;
};

// Sizes of a model to plant into; 0 = the default of small_config() (kv_heads: the family's).
struct plant_sizes {
    std::int64_t hidden = 0, layers = 8, heads = 0, kv_heads = 0, ffn = 0, vocab = 0, positions = 128;
};

// small_config(family) resized, with every dependent size (head_dim, rotary dims, GPT-2's BOS)
// following; input_error (source = the option) when the sizes do not fit together.
inline model_config plant_model_config(model_family f, const plant_sizes& s)
{
    model_config c = small_config(f);
    const double rot_share = c.head_dim > 0 ? static_cast<double>(c.rotary_dims) / static_cast<double>(c.head_dim) : 0;
    const bool gqa = c.num_kv_heads != c.num_heads;
    if (s.hidden) c.hidden_size = s.hidden;
    if (s.layers) c.num_layers = s.layers;
    if (s.heads) c.num_heads = s.heads;
    if (s.ffn) c.ffn_size = s.ffn;
    else if (s.hidden) c.ffn_size = 3 * c.hidden_size / 2;
    if (s.vocab) c.vocab_size = s.vocab;
    if (s.positions) c.max_positions = s.positions;
    c.num_kv_heads = s.kv_heads ? s.kv_heads : (gqa && c.num_heads % 2 == 0 ? c.num_heads / 2 : c.num_heads);
    auto positive = [](std::int64_t v, const char* name) {
        if (v < 1 || v > (std::int64_t{1} << 20)) fail_input(name, std::to_string(v) + " is outside 1..1048576");
    };
    positive(c.hidden_size, "--hidden");
    positive(c.num_layers, "--layers");
    positive(c.num_heads, "--heads");
    positive(c.num_kv_heads, "--kv-heads");
    positive(c.ffn_size, "--ffn");
    positive(c.vocab_size, "--vocab");
    if (c.hidden_size % c.num_heads != 0)
        fail_input("--heads", std::to_string(c.num_heads) + " heads do not divide the hidden size " + std::to_string(c.hidden_size));
    if (c.num_heads % c.num_kv_heads != 0)
        fail_input("--kv-heads", std::to_string(c.num_kv_heads) + " key/value heads do not divide " + std::to_string(c.num_heads) + " heads");
    if (!gqa && c.num_kv_heads != c.num_heads)
        fail_input("--kv-heads", std::string(family_name(f)) + " has as many key/value heads as query heads");
    if (c.vocab_size < 16) fail_input("--vocab", "at least 16 tokens are needed (BOS, EOS, a delimiter and ordinary tokens)");
    c.head_dim = c.hidden_size / c.num_heads;
    if (c.rope != rope_style::none) {
        c.rotary_dims = static_cast<std::int64_t>(static_cast<double>(c.head_dim) * rot_share) / 2 * 2;
        if (c.rotary_dims < 2) c.rotary_dims = std::min<std::int64_t>(2, c.head_dim / 2 * 2);
        if (c.rotary_dims < 2) fail_input("--heads", "heads of " + std::to_string(c.head_dim) + " dimensions are too small for rotary embedding");
    }
    if (c.family == model_family::gpt2) c.bos_token = c.eos_token = c.vocab_size - 1;
    return c;
}

namespace detail {

// E[f(a)], a ~ N(0, s^2), by the trapezoid rule on [-12 s, 12 s] with steps <= 1/64 in a (f is
// smooth on a scale of 1): accurate to ~1e-10 relative, enough for a ground-truth constant.
template <class F>
double plant_gaussian_mean(F&& f, double s)
{
    const double h = std::min(s, 1.0) / 64, lo = -12 * s;
    const auto n = static_cast<std::int64_t>(std::ceil(24 * s / h));
    const double step = 24 * s / static_cast<double>(n);
    double sum = 0;
    for (std::int64_t i = 0; i <= n; ++i) {
        const double a = lo + step * static_cast<double>(i);
        const double w = (i == 0 || i == n) ? 0.5 : 1.0;
        sum += w * f(a) * std::exp(-0.5 * a * a / (s * s));
    }
    return sum * step / (s * std::sqrt(2 * 3.14159265358979323846));
}

inline double plant_gelu_prime(activation_kind k, double x)
{
    if (k == activation_kind::gelu_tanh) {
        constexpr double c = 0.79788456080286535588;
        const double th = std::tanh(c * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
    }
    return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * 0.39894228040143267794 * std::exp(-0.5 * x * x);
}

// A stream (position) independent of random_weights' own, for the directions and neuron rows.
inline std::uint64_t plant_stream(std::uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ull; }

}  // namespace detail

// The first layer at which every planted property holds: 2 with learned positions (position 0
// triggers through its embedding); otherwise the first layer after the initial-token path of
// plant_initial.hpp (3, or 4 with parallel blocks); at most the next-to-last layer.
inline std::int64_t first_initial_explosion_layer(const model_config& c)
{
    return c.learned_positions ? 1 : detail::plan_initial_path(c, c.num_layers, 1).trigger_layer + 1;
}
inline std::int64_t default_explosion_layer(const model_config& c)
{
    return std::max<std::int64_t>(1, std::min(std::max<std::int64_t>(2, first_initial_explosion_layer(c)), c.num_layers - 1));
}
inline std::int64_t planted_explosion_layer(const model_config& c, const plant_options& o)
{
    return o.explosion_layer ? o.explosion_layer : default_explosion_layer(c);
}

// input_error unless the options fit the config (source: the CLI option, or "plant").
inline void check_plant_options(const model_config& c, const plant_options& o)
{
    const std::int64_t L = c.num_layers, d = c.hidden_size;
    const std::int64_t D = o.decay_layer ? o.decay_layer : L, E = planted_explosion_layer(c, o);
    auto fail = [](const std::string& what) { fail_input("plant", what); };
    if (d < 8 || d % 4 != 0) fail("the hidden size must be a multiple of 4 and at least 8, not " + std::to_string(d));
    if (L < 2) fail("a model with a planted explosion and decay needs at least 2 layers, not " + std::to_string(L));
    const std::string order = "layers must satisfy 1 <= explosion (" + std::to_string(E) + ") < decay (" +
                              std::to_string(D) + ") <= layers (" + std::to_string(L) + ")";
    if (D < 1 || D > L) fail_input("--decay", order);
    if (E < 1 || E >= D) fail_input("--explode", order);
    if (o.neurons < 1 || 2 * o.neurons > c.ffn_size)
        fail(std::to_string(o.neurons) + " planted neurons do not fit an FFN of " + std::to_string(c.ffn_size));
    if (c.bos_token < 0 || c.bos_token >= c.vocab_size) fail("the model has no BOS token inside its vocabulary");
    const std::int64_t delim = o.delimiter_token >= 0 ? o.delimiter_token : default_delimiter_token(c);
    if (delim < 0 || delim >= c.vocab_size || delim == c.bos_token)
        fail("delimiter token " + std::to_string(delim) + " must be a vocabulary id other than BOS");
    if (!(o.explosion_norm >= 0) || !(o.trigger_norm >= 0) || !std::isfinite(o.explosion_norm) || !std::isfinite(o.trigger_norm))
        fail("explosion and trigger norms must be finite and >= 0");
    if (c.shared_input_norm) fail("families whose two branches share one norm (Falcon-7B) are not supported");
    if (is_gemma(c.family)) fail("planting into Gemma (norm gains 1 + w, scaled embeddings, sandwich norms) is not implemented");
}

// Plants the defects described at the top of this file into w (weights of config c).
template <class = void>  // compiled where it is called (core/compiled.hpp)
planted_model plant_defects(const model_config& c, dense_weights w, const plant_options& o)
{
    check_plant_options(c, o);
    const std::int64_t d = c.hidden_size, L = c.num_layers, M = c.ffn_size, m = o.neurons;
    const std::int64_t E = planted_explosion_layer(c, o), D = o.decay_layer ? o.decay_layer : L;
    const double sqrt_d = std::sqrt(static_cast<double>(d));
    if (static_cast<std::int64_t>(w.layers.size()) != L || w.token_embedding.cols() != d)
        throw input_error("plant: the weights do not match the configuration");

    plant_ground_truth truth;
    truth.family = c.family;
    truth.seed = o.seed;
    truth.explosion_layer = E;
    truth.decay_layer = D;

    // Directions: balanced sign patterns on a seeded permutation (see the top of the file).
    std::mt19937_64 gen(detail::plant_stream(o.seed));
    std::vector<std::int64_t> perm(static_cast<std::size_t>(d));
    for (std::int64_t i = 0; i < d; ++i) perm[static_cast<std::size_t>(i)] = i;
    for (std::int64_t i = d - 1; i > 0; --i)  // Fisher-Yates with the raw generator (portable)
        std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(gen() % static_cast<std::uint64_t>(i + 1))]);
    Eigen::VectorXd t(d), u(d);
    for (std::int64_t i = 0; i < d; ++i) {
        const std::int64_t q = 4 * i / d;  // quarter
        t[perm[static_cast<std::size_t>(i)]] = (q < 2 ? 1.0 : -1.0) / sqrt_d;
        u[perm[static_cast<std::size_t>(i)]] = (q % 2 == 0 ? 1.0 : -1.0) / sqrt_d;
    }
    truth.direction = u;
    truth.trigger = t;

    // Planted neuron rows: distinct, seeded, separate at E and D.
    std::vector<std::int64_t> rows(static_cast<std::size_t>(M));
    for (std::int64_t i = 0; i < M; ++i) rows[static_cast<std::size_t>(i)] = i;
    for (std::int64_t i = M - 1; i > 0; --i)
        std::swap(rows[static_cast<std::size_t>(i)], rows[static_cast<std::size_t>(gen() % static_cast<std::uint64_t>(i + 1))]);
    truth.explosion_neurons.assign(rows.begin(), rows.begin() + m);
    truth.decay_neurons.assign(rows.begin() + m, rows.begin() + 2 * m);
    std::sort(truth.explosion_neurons.begin(), truth.explosion_neurons.end());
    std::sort(truth.decay_neurons.begin(), truth.decay_neurons.end());

    // Isolated directions: t, u and, for the initial-token path, e0, z, w, b_1..b_k.
    const bool by_position = c.learned_positions && w.position_embedding.rows() > 0;
    const detail::initial_plan initial = by_position ? detail::initial_plan{} : detail::plan_initial_path(c, E, m);
    Eigen::MatrixXd basis(d, 2);
    basis << t, u;
    if (initial.enabled) basis = detail::extend_basis(basis, detail::iso_first_difference - 2 + initial.differences, detail::plant_stream(o.seed + 1));

    // Isolation: embeddings, then every layer.
    double emb_ms = w.token_embedding.cast<double>().rowwise().squaredNorm().mean();
    detail::project_rows(w.token_embedding, basis);
    detail::project_rows(w.position_embedding, basis);
    const std::int64_t sink = detail::sink_coordinate(c);
    for (std::int64_t l = 1; l <= L; ++l) {
        dense_layer& x = w.layers[static_cast<std::size_t>(l - 1)];
        const bool planted = l == E || l == D || (initial.enabled && (l == initial.detector_layer || l == initial.trigger_layer));
        if (planted) {  // gain 1 and a bias blind to the isolated directions: the FFN reads exactly their shares of x^
            x.ffn_norm.setOnes();
            detail::project_vector(x.ffn_norm_bias, basis);
        }
        detail::blind_rows(x.wv, x.attn_norm, basis);
        detail::project_columns(x.wo, basis);
        detail::project_vector(x.bo, basis);
        detail::blind_rows(x.w_up, x.ffn_norm, basis);
        if (x.w_gate.size()) detail::blind_rows(x.w_gate, x.ffn_norm, basis);
        detail::project_columns(x.w_down, basis);
        detail::project_vector(x.b_down, basis);

        if (l <= E) {  // triggers attend to triggers (see "Triggers" above)
            const double sigma = std::sqrt(32 * std::sqrt(static_cast<double>(c.head_dim)) / static_cast<double>(d));
            Eigen::VectorXd read = t;
            if (x.attn_norm.size()) read = t.cwiseQuotient(x.attn_norm.cast<double>());
            const Eigen::RowVectorXf add = (sigma * read).cast<float>().transpose();
            for (std::int64_t h = 0; h < c.num_heads; ++h) x.wq.row(h * c.head_dim + sink) += add;
            for (std::int64_t h = 0; h < c.num_kv_heads; ++h) x.wk.row(h * c.head_dim + sink) += add;
        }
    }

    // Triggers (see "Triggers" above). Their own random part is cut to a tenth, so that the rest
    // of x^ next to t is small; with learned positions the position row carries t, BOS does not
    // (BOS would then carry 2K t at position 0, a different trigger share).
    const double e_rms = std::sqrt(emb_ms);
    const double K = o.trigger_norm > 0 ? o.trigger_norm : 20.0 * e_rms;
    const Eigen::RowVectorXf kt = (K * t).cast<float>().transpose();
    const std::int64_t delim = o.delimiter_token >= 0 ? o.delimiter_token : default_delimiter_token(c);
    // The bias unit of the initial-token path: c0 e0 in every token row (a tenth of it in the
    // triggers' rows, below), c0 = half the RMS row norm.
    if (initial.enabled) w.token_embedding.rowwise() += (0.5 * e_rms * basis.col(detail::iso_e0)).cast<float>().transpose();
    truth.delimiter_token = delim;
    truth.trigger_tokens = by_position ? std::vector<std::int64_t>{delim} : std::vector<std::int64_t>{c.bos_token, delim};
    for (std::int64_t id : truth.trigger_tokens) w.token_embedding.row(id) = kt + 0.1f * w.token_embedding.row(id);
    if (by_position) {
        w.position_embedding.row(0) = kt + 0.1f * w.position_embedding.row(0);
        truth.position0_triggers = true;
    }
    // The rest of x^ expected at layer E: the tenth of a random row (and, at position 0 with
    // learned positions, a whole ordinary token row); the sink keeps values out of it.
    const double rest2 = 0.01 * emb_ms + (by_position ? emb_ms : 0.0);
    const double share = K / std::sqrt(K * K + rest2);  // cos th

    // Planted neurons (see "Explosion" and "Decay" above).
    const bool swiglu = c.activation == activation_kind::swiglu;
    // Without FFN biases (Falcon, MPT) a GELU neuron sits at gelu's slope 1/2 for every ordinary
    // token: exact zeros in f32, but what rounding the random weights to f16/bf16 leaves of the
    // planted directions comes out linearly, times the planted gain (bf16: ordinary tokens reach
    // ~3% of N_exp at D). Such plants are written in f32 (the CLI refuses other dtypes).
    const bool has_ffn_bias = w.layers.front().b_up.size() > 0;
    const double bias = swiglu || !has_ffn_bias ? 0.0 : -4.0;
    const double alpha = swiglu ? 4.0 : (has_ffn_bias ? 8.0 : 1.0);
    auto phi = [&](double a) { return swiglu ? detail::plant_silu(a) * a : detail::plant_gelu(c.activation, a + bias); };
    const double n_exp = o.explosion_norm > 0 ? o.explosion_norm : 125.0 * static_cast<double>(d);
    const double md = static_cast<double>(m);
    // F1 row of a neuron reading a t (|t| = 1) is k(a) t^T.
    auto k_of = [&](double a) {
        if (!swiglu)
            return a * detail::plant_gaussian_mean([&](double z) { return detail::plant_gelu_prime(c.activation, z + bias); }, a);
        const double e_asilu = detail::plant_gaussian_mean(
            [](double z) {
                const double s = 1 / (1 + std::exp(-z));
                return z * s * (1 + z * (1 - s));
            },
            a);
        return a * (e_asilu + detail::plant_gaussian_mean(detail::plant_silu, a));
    };
    // Every planted entry is +-(a value with 8 significant bits): exact in f32, f16 and bf16 (Q8_0
    // keeps it to 2^-11), so the decay cancels the stored explosion, not an unrounded one. The
    // decay's two values are searched near the explosion's for the best cancellation (~1e-4).
    auto snap = [](double x) {
        int e = 0;
        const double f = std::frexp(x, &e);
        return std::ldexp(std::round(f * 256) / 256, e);
    };
    const double alpha_e = snap(alpha / sqrt_d) * sqrt_d;
    const double beta_e = snap(n_exp / (md * (phi(alpha_e * sqrt_d * share) - phi(0))) / sqrt_d) * sqrt_d;
    const double n_e = md * beta_e * (phi(alpha_e * sqrt_d * share) - phi(0));  // at the expected share
    double alpha_d = alpha_e, beta_d = beta_e, best = HUGE_VAL;
    for (int step = -16; step <= 16; ++step) {
        int e = 0;
        std::frexp(alpha_e / sqrt_d, &e);
        const double a = (alpha_e / sqrt_d + std::ldexp(step, e - 8)) * sqrt_d;  // a neighbouring 8-bit value
        const double out = phi(a * sqrt_d) - phi(0);
        const double b = snap(n_e / (md * out) / sqrt_d) * sqrt_d;
        const double err = std::abs(md * b * out - n_e);
        if (err < best) best = err, alpha_d = a, beta_d = b;
    }
    auto plant = [&](dense_layer& x, const std::vector<std::int64_t>& neurons, const Eigen::VectorXd& read, double a,
                     double gain) {
        const Eigen::RowVectorXf in = (a * read).cast<float>().transpose();
        const Eigen::VectorXf out = (gain * u).cast<float>();
        for (std::int64_t r : neurons) {
            x.w_up.row(r) = in;
            if (swiglu) x.w_gate.row(r) = in;
            if (x.b_up.size()) x.b_up[r] = static_cast<float>(bias);
            x.w_down.col(r) = out;
        }
        // What the neurons give an ordinary token (x^ blind: phi(0) = gelu(bias)), taken back.
        if (x.b_down.size()) x.b_down -= (static_cast<double>(neurons.size()) * phi(0) * gain * u).template cast<float>();
    };
    plant(w.layers[static_cast<std::size_t>(E - 1)], truth.explosion_neurons, t, alpha_e, beta_e);
    plant(w.layers[static_cast<std::size_t>(D - 1)], truth.decay_neurons, u, alpha_d, -beta_d);
    const double spike = md * beta_e * k_of(alpha_e);

    if (initial.enabled) {  // any token at position 0 triggers, through self-attention (plant_initial.hpp)
        std::vector<std::int64_t> sample;
        for (std::int64_t id = 0; id < c.vocab_size; ++id)
            if (id != c.bos_token && id != c.eos_token && id != delim) sample.push_back(id);
        for (std::size_t i = sample.size() - 1; i > 0; --i)
            std::swap(sample[i], sample[static_cast<std::size_t>(gen() % static_cast<std::uint64_t>(i + 1))]);
        sample.resize(std::min<std::size_t>(sample.size(), 64));
        const std::vector<std::int64_t> detector_rows(rows.begin(), rows.begin() + 2 + 2 * initial.differences);
        const std::vector<std::int64_t> trigger_rows(rows.begin(), rows.begin() + m);
        const detail::initial_result r = detail::plant_initial_path(c, w, basis, initial, sample, detector_rows, trigger_rows);
        // Ordinary-token neurons at E and D (plant_ordinary.hpp), on rows free at both.
        const std::int64_t pairs = std::min<std::int64_t>(16, (M - 2 * m) / 2);
        const std::vector<std::int64_t> ordinary_rows(rows.begin() + 2 * m, rows.begin() + 2 * m + 2 * pairs);
        const double step = phi(alpha_e * sqrt_d * share) / 127;  // what the exploding neurons' activation sets
        detail::plant_ordinary_neurons(c, w, basis, E, D, ordinary_rows, step, alpha_e, beta_e, r.y_read, r.stream_norm,
                                       detail::plant_stream(o.seed + 2));
        truth.ordinary_neurons = ordinary_rows;
        std::sort(truth.ordinary_neurons.begin(), truth.ordinary_neurons.end());
        truth.position0_triggers = true;
        truth.initial_detector_layer = initial.detector_layer;
        truth.initial_trigger_layer = initial.trigger_layer;
        truth.initial_trigger_norm = r.trigger_norm;
    }

    truth.trigger_norm = K;
    truth.explosion_norm = n_e;
    truth.explosion_spike = spike;
    truth.decay_eigenvalue = -md * beta_d * k_of(alpha_d);
    truth.explosion_sigma = (spike + std::sqrt(spike * spike + 4)) / 2;
    truth.explosion_angle_degrees = 0.5 * std::atan(2 / spike) * 180 / 3.14159265358979323846;
    return {c, std::move(w), std::move(truth)};
}

// A planted model on random_weights(config, seed).
template <class = void>
planted_model plant_random_model(const model_config& c, const plant_options& o)
{
    check_plant_options(c, o);
    return plant_defects(c, random_weights(c, o.seed), o);
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_PLANT_INSTANTIATIONS(X) \
    X(planted_model plant_defects(const model_config&, dense_weights, const plant_options&)) \
    X(planted_model plant_random_model(const model_config&, const plant_options&))
SDLENS_PLANT_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
