#pragma once
// Coefficients on v_1 (paper Fig. 9): for every trained token, the component along v_1 (the
// leading right singular vector of F at the explosion layer E) of the residual stream entering
// layer E's FFN block (after the attention residual, before the FFN norm), with the token alone
// at position 0 and at position 1 after one fixed ordinary token. Initial tokens have a large
// coefficient (they explode), second ones a small one.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/exploding_paths.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

struct coefficients_options {
    int layer = 0;            // E, 1-based
    int first_token = -1;     // the token before each at position 1; -1 = ordinary_token()
    std::int64_t batch = 256;
    double untrained_fraction = 0.1;
};

struct coefficients_result {
    int layer = 0;
    int first_token = 0;
    std::vector<int> tokens;      // the trained tokens
    Eigen::VectorXd initial, second;
};

// An ordinary token: of the trained tokens other than BOS and EOS, the one of median embedding norm.
inline int ordinary_token(const model& m, const Eigen::VectorXd& norms, double untrained_fraction = 0.1)
{
    const double mean = norms.size() ? norms.mean() : 0;
    std::vector<int> ids;
    for (Eigen::Index t = 0; t < norms.size(); ++t)
        if (norms[t] >= untrained_fraction * mean && t != m.config.bos_token && t != m.config.eos_token) ids.push_back(static_cast<int>(t));
    if (ids.empty()) throw input_error("coefficients: the model has no trained ordinary token");
    std::nth_element(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(ids.size() / 2), ids.end(),
                     [&](int a, int b) { return norms[a] < norms[b] || (norms[a] == norms[b] && a < b); });
    return ids[ids.size() / 2];
}

template <class = void>  // compiled where it is called (core/compiled.hpp)
coefficients_result ffn_input_coefficients(const model& m, const Eigen::VectorXd& v1, const coefficients_options& o = {},
                                           const std::function<void(const char*, std::int64_t, std::int64_t)>& progress = {})
{
    if (o.layer < 1 || o.layer > static_cast<int>(m.layers.size()))
        throw input_error("coefficients: layer " + std::to_string(o.layer) + " is outside 1.." + std::to_string(m.layers.size()));
    if (v1.size() != m.config.hidden_size)
        throw input_error("coefficients: the direction has " + std::to_string(v1.size()) + " elements but the hidden size is " +
                          std::to_string(m.config.hidden_size));
    const Eigen::VectorXd norms = embedding_norms(m);
    coefficients_result r;
    r.layer = o.layer;
    r.first_token = o.first_token >= 0 ? o.first_token : ordinary_token(m, norms, o.untrained_fraction);
    if (r.first_token >= m.token_embedding.rows)
        throw input_error("coefficients: first token " + std::to_string(r.first_token) + " is outside the vocabulary");
    const double mean = norms.size() ? norms.mean() : 0;
    for (Eigen::Index t = 0; t < norms.size(); ++t)
        if (norms[t] >= o.untrained_fraction * mean) r.tokens.push_back(static_cast<int>(t));
    const Eigen::VectorXf v = v1.normalized().cast<float>();
    const std::int64_t n = static_cast<std::int64_t>(r.tokens.size()), B = std::max<std::int64_t>(1, o.batch);
    r.initial.resize(n);
    r.second.resize(n);
    for (int length : {1, 2}) {
        forward_options fo;
        fo.sequence_length = length;
        fo.last_layer = o.layer;
        fo.capture_ffn_layer = o.layer;
        fo.logits = forward_options::logits_mode::none;
        for (std::int64_t i = 0; i < n; i += B) {
            const std::int64_t k = std::min(B, n - i);
            std::vector<int> batch;
            for (std::int64_t j = 0; j < k; ++j) {
                if (length == 2) batch.push_back(r.first_token);
                batch.push_back(r.tokens[static_cast<std::size_t>(i + j)]);
            }
            session s(m, fo);
            const forward_result f = s.run(batch);
            for (std::int64_t j = 0; j < k; ++j)
                (length == 1 ? r.initial : r.second)[i + j] = static_cast<double>(f.ffn_input_raw.row(j * length + length - 1).dot(v.transpose()));
            if (progress) progress(length == 1 ? "position 0" : "position 1", i + k, n);
        }
    }
    return r;
}

}  // namespace sdlens
