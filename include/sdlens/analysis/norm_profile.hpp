#pragma once
// Norm profile (paper Fig. 1, 13, 16, 17): the norm of every hidden state of a text, per layer
// index 0..L (0 = the embedding output, l = the output of layer l, no final norm), in float64 from
// the pass's float states.
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xtensor.hpp>

#include "sdlens/forward/forward.hpp"

namespace sdlens {

// The paper's probe sentence (its Fig. 1); BOS goes before it where the model's tokenizer adds one.
inline constexpr const char* probe_sentence = "The quick brown fox jumps over the lazy dog.";

// ||h_l,t|| for hidden states [L+1, T, d]: an (L+1) x T matrix.
inline Eigen::MatrixXd hidden_state_norms(const xt::xtensor<float, 3>& hidden)
{
    const auto layers = static_cast<Eigen::Index>(hidden.shape(0)), T = static_cast<Eigen::Index>(hidden.shape(1));
    const auto d = static_cast<std::size_t>(hidden.shape(2));
    Eigen::MatrixXd norms(layers, T);
    for (Eigen::Index l = 0; l < layers; ++l)
        for (Eigen::Index t = 0; t < T; ++t) {
            const float* x = hidden.data() + (static_cast<std::size_t>(l) * static_cast<std::size_t>(T) + static_cast<std::size_t>(t)) * d;
            double s = 0;
            for (std::size_t k = 0; k < d; ++k) s += static_cast<double>(x[k]) * static_cast<double>(x[k]);
            norms(l, t) = std::sqrt(s);
        }
    return norms;
}

struct norm_profile {
    std::vector<int> tokens;
    Eigen::MatrixXd norms;  // (L+1) x T
};

// The norms of one sequence from position 0; `options` may switch attention off, ablate a
// direction, etc. (hidden states are switched on and logits off here).
template <class = void>  // compiled where it is called (core/compiled.hpp)
norm_profile token_norms(const model& m, const std::vector<int>& tokens, forward_options options = {})
{
    options.hidden_states = true;
    options.logits = forward_options::logits_mode::none;
    session s(m, std::move(options));
    return {tokens, hidden_state_norms(s.run(tokens).hidden)};
}

}  // namespace sdlens
