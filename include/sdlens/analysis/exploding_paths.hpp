#pragma once
// Exploding paths (paper Sec. 3.3, Fig. 6, 7): which tokens explode, and why the initial one does.
//  (a) With every attention block removed, each vocabulary token alone through the model: its
//      norm after the explosion layer E. Tokens whose path alone explodes are the non-initial
//      high-norm tokens ('.', '\n', <s> in LLaMA2). Untrained tokens (embedding norm below a
//      tenth of the mean) are masked: their tiny random embeddings say nothing.
//  (b) Every trained token at position 0 with attention on (a token alone attends only to
//      itself), and as many random embeddings (seeded, each scaled to the mean embedding norm):
//      at position 0 nearly every input explodes.
// The vocabulary runs as batches of independent one-token sequences (forward_options::
// sequence_length = 1) through the prompt path, stopping after layer E.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/norm_profile.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

struct exploding_paths_options {
    int layer = 0;               // E, 1-based
    std::int64_t batch = 256;    // sequences per pass
    std::uint64_t seed = 2024;   // of the random embeddings
    double untrained_fraction = 0.1;
    bool initial = true;         // (b) as well as (a)
};

struct token_norm {
    int token = 0;
    double norm = 0;
};

struct exploding_paths_result {
    int layer = 0;
    Eigen::VectorXd embedding_norms;      // per token
    double mean_embedding_norm = 0;
    std::vector<bool> masked;             // untrained
    Eigen::VectorXd no_attention;         // (a) per token, output norm of layer E (NaN where masked)
    Eigen::VectorXd initial;              // (b) per token at position 0 (NaN where masked)
    Eigen::VectorXd random_sorted;        // (b) random embeddings, largest first
};

// Row norms of the token embedding table, in float64.
inline Eigen::VectorXd embedding_norms(const model& m)
{
    const std::int64_t V = m.token_embedding.rows, d = m.token_embedding.cols;
    Eigen::VectorXd n(V);
    Eigen::VectorXf row(d);
    for (std::int64_t t = 0; t < V; ++t) {
        read_rows(m.token_embedding, t, 1, row.data());
        n[t] = row.cast<double>().norm();
    }
    return n;
}

// The tokens of largest finite value, largest first (ties by id).
inline std::vector<token_norm> top_tokens(const Eigen::VectorXd& norms, std::int64_t k)
{
    std::vector<int> ids;
    for (Eigen::Index t = 0; t < norms.size(); ++t)
        if (std::isfinite(norms[t])) ids.push_back(static_cast<int>(t));
    const auto n = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(std::max<std::int64_t>(0, k)));
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(),
                      [&](int a, int b) { return norms[a] > norms[b] || (norms[a] == norms[b] && a < b); });
    std::vector<token_norm> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back({ids[i], norms[ids[i]]});
    return out;
}

namespace detail {
// Output norms of layer E for rows of embeddings, each its own one-token sequence.
template <class = void>
Eigen::VectorXd one_token_norms(const model& m, int layer, bool attention, const row_matrix<float>& x)
{
    forward_options o;
    o.sequence_length = 1;
    o.last_layer = layer;
    o.zero_attention = !attention;
    o.hidden_states = true;
    o.logits = forward_options::logits_mode::none;
    session s(m, o);
    const forward_result r = s.run_embeddings(x);
    return hidden_state_norms(r.hidden).row(layer).transpose();
}
}  // namespace detail

template <class = void>  // compiled where it is called (core/compiled.hpp)
exploding_paths_result exploding_paths(const model& m, const exploding_paths_options& o = {},
                                       const std::function<void(const char*, std::int64_t, std::int64_t)>& progress = {})
{
    if (o.layer < 1 || o.layer > static_cast<int>(m.layers.size()))
        throw input_error("exploding paths: layer " + std::to_string(o.layer) + " is outside 1.." + std::to_string(m.layers.size()));
    const std::int64_t V = m.token_embedding.rows, d = m.config.hidden_size, B = std::max<std::int64_t>(1, o.batch);
    exploding_paths_result r;
    r.layer = o.layer;
    r.embedding_norms = embedding_norms(m);
    r.mean_embedding_norm = V ? r.embedding_norms.mean() : 0;
    r.masked.resize(static_cast<std::size_t>(V));
    std::int64_t trained = 0;
    for (std::int64_t t = 0; t < V; ++t)
        trained += !(r.masked[static_cast<std::size_t>(t)] = r.embedding_norms[t] < o.untrained_fraction * r.mean_embedding_norm);
    const double nan = std::numeric_limits<double>::quiet_NaN();

    auto sweep = [&](bool attention, const char* step) {
        Eigen::VectorXd out = Eigen::VectorXd::Constant(V, nan);
        std::vector<int> ids;
        for (std::int64_t t = 0; t < V; ++t)
            if (!r.masked[static_cast<std::size_t>(t)]) ids.push_back(static_cast<int>(t));
        for (std::size_t i = 0; i < ids.size(); i += static_cast<std::size_t>(B)) {
            const auto n = std::min<std::size_t>(static_cast<std::size_t>(B), ids.size() - i);
            row_matrix<float> x(static_cast<Eigen::Index>(n), d);
            for (std::size_t j = 0; j < n; ++j) read_rows(m.token_embedding, ids[i + j], 1, x.row(static_cast<Eigen::Index>(j)).data());
            const Eigen::VectorXd norms = detail::one_token_norms(m, o.layer, attention, x);
            for (std::size_t j = 0; j < n; ++j) out[ids[i + j]] = norms[static_cast<Eigen::Index>(j)];
            if (progress) progress(step, static_cast<std::int64_t>(i + n), static_cast<std::int64_t>(ids.size()));
        }
        return out;
    };
    r.no_attention = sweep(false, "no attention");
    if (!o.initial) return r;
    r.initial = sweep(true, "initial token");

    // Random directions (Gaussian rows) scaled to the mean norm, each alone at position 0.
    std::mt19937_64 rng(o.seed);
    std::normal_distribution<double> normal;
    r.random_sorted.resize(trained);
    for (std::int64_t i = 0; i < trained; i += B) {
        const std::int64_t n = std::min(B, trained - i);
        row_matrix<float> x(n, d);
        for (std::int64_t j = 0; j < n; ++j) {
            Eigen::VectorXd g(d);
            for (std::int64_t k = 0; k < d; ++k) g[k] = normal(rng);
            x.row(j) = (g * (r.mean_embedding_norm / g.norm())).cast<float>().transpose();
        }
        r.random_sorted.segment(i, n) = detail::one_token_norms(m, o.layer, true, x);
        if (progress) progress("random embeddings", i + n, trained);
    }
    std::sort(r.random_sorted.data(), r.random_sorted.data() + r.random_sorted.size(), std::greater<double>());
    return r;
}

}  // namespace sdlens
