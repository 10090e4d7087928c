#pragma once
// A model: its description and per-layer views of its weights in canonical orientation.
#include <memory>
#include <string>
#include <vector>

#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/mapped_file.hpp"
#include "sdlens/model/config.hpp"
#include "sdlens/model/matrix_view.hpp"

namespace sdlens {

// One transformer block. Matrices are (out, in): wq (q_dim, d), wk and wv (kv_dim, d),
// wo (d, q_dim), w_gate and w_up (M, d), w_down (d, M). A view that the family does not have
// (w_gate for GELU models, biases, ffn_norm when both branches share one norm) is empty.
// Norm weights are as stored: the gain is weight + config.norm_weight_offset.
struct layer_weights {
    matrix_view wq, wk, wv, wo;
    vector_view bq, bk, bv, bo;
    vector_view attn_norm, attn_norm_bias;
    vector_view ffn_norm, ffn_norm_bias;
    matrix_view w_gate, w_up, w_down;
    vector_view b_gate, b_up, b_down;  // b_gate: gated FFNs with biases (Llama's mlp_bias)
    vector_view post_attn_norm, post_ffn_norm;  // sandwich norms of the branch outputs (Gemma 2/3)
    vector_view q_norm, k_norm;                 // per-head norms (head_dim) of queries and keys (Gemma 3)
};

struct model {
    model_config config;
    std::shared_ptr<const checkpoint> source;  // owns the bytes every view points into
    matrix_view token_embedding;               // (vocab, d)
    matrix_view position_embedding;            // (max_positions, d), learned positions only
    matrix_view token_type_embedding;          // (token_types, d), encoders; row 0 is added
    vector_view embedding_norm, embedding_norm_bias;  // encoders: LayerNorm of the embedding sum
    vector_view final_norm, final_norm_bias;
    matrix_view lm_head;                       // (vocab, d); the token embedding when tied; empty for encoders
    std::vector<layer_weights> layers;
};

// Takes the bytes of a layer's weight matrices out of the process's resident memory (see
// release_pages): a pass over the layers one at a time then keeps about one layer resident
// instead of the whole memory-mapped model. Tensors shared with other layers (a fused tensor
// stacked over layers) are released too; they are read back from the file when touched.
inline void release_layer_pages(const layer_weights& w)
{
    for (const matrix_view* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down})
        if (m->tensor) release_pages(m->tensor->data, static_cast<std::size_t>(m->tensor->nbytes));
}

}  // namespace sdlens
