#pragma once
// Ablation (paper Fig. 10): the norm profile and a greedy continuation of a text with the
// component along a direction (v_1 of the explosion layer) removed from the residual stream that
// enters that layer's FFN block, next to the unablated ones. Only the FFN sees the change.
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/norm_profile.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

struct ablation_result {
    int layer = 0;
    norm_profile plain, ablated;
    std::vector<int> plain_continuation, ablated_continuation;
};

template <class = void>  // compiled where it is called (core/compiled.hpp)
ablation_result ablate_direction(const model& m, const std::vector<int>& tokens, int layer, const Eigen::VectorXd& direction,
                                 int generate = 0, int stop_token = -1)
{
    forward_options ablated;
    ablated.ablations.push_back({layer, direction.cast<float>(), ablation_site::ffn_block_input});
    ablation_result r;
    r.layer = layer;
    r.plain = token_norms(m, tokens);
    r.ablated = token_norms(m, tokens, ablated);
    if (generate > 0) {
        r.plain_continuation = greedy_generate(m, tokens, generate, stop_token);
        r.ablated_continuation = greedy_generate(m, tokens, generate, stop_token, ablated);
    }
    return r;
}

}  // namespace sdlens
