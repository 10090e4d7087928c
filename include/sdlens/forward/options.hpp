#pragma once
// What a forward pass can be asked to do besides computing logits: capture hidden states and one
// layer's FFN activations, switch attention off, remove a direction from an FFN input, and see or
// change every linear layer. Every hook is off by default and costs nothing then.
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xtensor.hpp>

#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

enum class linear_kind { q, k, v, o, gate, up, down, lm_head };

inline const char* linear_kind_name(linear_kind k)
{
    switch (k) {
    case linear_kind::q: return "q";
    case linear_kind::k: return "k";
    case linear_kind::v: return "v";
    case linear_kind::o: return "o";
    case linear_kind::gate: return "gate";
    case linear_kind::up: return "up";
    case linear_kind::down: return "down";
    case linear_kind::lm_head: return "lm_head";
    }
    return "?";
}

// Which product a linear hook is looking at. layer is 1-based; 0 for lm_head (in no block).
struct linear_site {
    int layer = 0;
    linear_kind kind = linear_kind::q;
};

// Sees the input activations (T x in) and the decoded weight (out x in, canonical orientation)
// just before Y = X W^T, and may change either: both are private copies for this one product
// (fake quantization of weights and activations is written as one of these).
using linear_hook = std::function<void(const linear_site&, row_matrix<float>& input, row_matrix<float>& weight)>;

// The cheap form of the same, for hooks that change weights once and activations every call
// (fake quantization at the speed of the plain pass): the product reads `weight` instead of the
// stored matrix (same rows and columns, in canonical orientation; any dtype the products read),
// then multiplies output column r by output_scale[r] (empty: by 1). Int8 codes kept as bf16,
// which holds every integer up to 256 exactly, with their steps as the scale, are one such.
struct linear_replacement {
    const matrix_view* weight = nullptr;  // nullptr: the stored weight, unscaled
    const Eigen::VectorXf* output_scale = nullptr;
};
using linear_weight_source = std::function<linear_replacement(const linear_site&)>;
// Sees, and may change, a private copy of the input of one product (T x in).
using linear_input_hook = std::function<void(const linear_site&, row_matrix<float>& input)>;

// Where a direction is removed from the FFN's input:
//  - ffn_input:       the normalized input that enters the FFN matrices (gate/up);
//  - ffn_block_input: the residual stream that enters the FFN's norm (the space of F's right
//                     singular vectors, and of the paper's coefficient on v_1). Only the FFN sees
//                     the change: the residual stream itself is carried on untouched.
enum class ablation_site { ffn_input, ffn_block_input };

// Removes the component along a direction: x <- x - (x . v) v, at one layer (1-based). The
// direction is normalized by the pass, so any nonzero vector will do.
struct direction_ablation {
    int layer = 0;
    Eigen::VectorXf direction;
    ablation_site site = ablation_site::ffn_input;
};

struct forward_options {
    // Logits for every position (T x vocab) or only the last one (1 x vocab; with independent
    // sequences, the last of each: sequences x vocab); none at all when
    // only hidden states are wanted (saves the lm_head product, the largest one in small models).
    enum class logits_mode { last, all, none };
    logits_mode logits = logits_mode::last;

    // Residual stream at every layer index 0..L (0 = embeddings, l = output of layer l, no final
    // norm) into forward_result::hidden [L+1, T, d].
    bool hidden_states = false;

    // One layer (1-based; 0 = none) whose FFN input and output are kept (forward_result::ffn_*).
    int capture_ffn_layer = 0;

    // Attention output replaced by zero: in every layer, or in the listed layers (1-based).
    bool zero_attention = false;
    std::vector<int> zero_attention_layers;

    std::vector<direction_ablation> ablations;

    // 0: the tokens of one run() are one sequence, continuing the cache. n > 0: they are
    // independent sequences of n tokens each, every one from position 0 (a vocabulary sweep as
    // one batch of matrix products, attention only within each sequence); no cache is kept, so
    // such a session runs once from position 0.
    std::int64_t sequence_length = 0;

    // Stop after this layer (1-based; 0 = run every layer). Hidden states are then those of
    // layer indices 0..last_layer; logits need every layer, so they must be none.
    int last_layer = 0;

    linear_hook on_linear;  // empty = weights are used as stored, without copies
    // Used only without on_linear; both empty = no copies of either.
    linear_weight_source replace_linear;
    linear_input_hook on_linear_input;

    // Round activations to bf16 in matrix products with bf16 weights, as llama.cpp does: ~2x
    // faster prompt processing on CPUs with AVX512-BF16; hidden states then differ by ~1e-3
    // relative. Only products of more than 4 positions without a linear hook are affected (one
    // token is bound by memory bandwidth and keeps f32 activations); without AVX512-BF16 it is
    // ignored.
    bool bf16_activations = false;

    bool attention_off(int layer) const
    {
        if (zero_attention) return true;
        for (int l : zero_attention_layers)
            if (l == layer) return true;
        return false;
    }
};

struct forward_result {
    // (T x vocab) or (1 x vocab) for the last position, per forward_options::logits.
    row_matrix<float> logits;
    // [L+1, T, d] when forward_options::hidden_states; empty otherwise.
    xt::xtensor<float, 3> hidden;
    // For forward_options::capture_ffn_layer, each (T x d):
    //   ffn_input_raw: the residual stream that enters the FFN's norm (for parallel blocks, the
    //                  layer input; for sequential ones, the layer input plus attention);
    //   ffn_input:     the normalized input that enters W_gate / W_up (after any ablation),
    //                  the h of the paper's coefficient h . v_1;
    //   ffn_output:    W_down(...) + bias, before it is added to the residual stream.
    row_matrix<float> ffn_input_raw, ffn_input, ffn_output;
};

}  // namespace sdlens
