#pragma once
// A model's weights decoded into owned float matrices in canonical orientation. Writers take
// this (random and planted models are built in it, then laid out the way each family's files
// do); tests compare loaded models through it. An absent tensor is an empty matrix/vector.
#include <vector>

#include <Eigen/Core>

#include "sdlens/model/matrix_view.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

struct dense_layer {
    row_matrix<float> wq, wk, wv, wo;  // (q_dim, d), (kv_dim, d), (kv_dim, d), (d, q_dim)
    Eigen::VectorXf bq, bk, bv, bo;
    Eigen::VectorXf attn_norm, attn_norm_bias;
    Eigen::VectorXf ffn_norm, ffn_norm_bias;
    row_matrix<float> w_gate, w_up, w_down;  // (M, d), (M, d), (d, M)
    Eigen::VectorXf b_gate, b_up, b_down;
    Eigen::VectorXf post_attn_norm, post_ffn_norm, q_norm, k_norm;
};

struct dense_weights {
    row_matrix<float> token_embedding;     // (vocab, d)
    row_matrix<float> position_embedding;  // (max_positions, d) or empty
    row_matrix<float> token_type_embedding;  // (token_types, d) or empty
    Eigen::VectorXf embedding_norm, embedding_norm_bias;
    Eigen::VectorXf final_norm, final_norm_bias;
    row_matrix<float> lm_head;  // (vocab, d); empty when tied to the token embedding
    std::vector<dense_layer> layers;
};

namespace detail {
inline row_matrix<float> dense_or_empty(const matrix_view& m) { return m ? to_dense(m) : row_matrix<float>(); }
inline Eigen::VectorXf dense_or_empty(const vector_view& v) { return v ? to_dense(v) : Eigen::VectorXf(); }
}  // namespace detail

inline dense_layer materialize(const layer_weights& w)
{
    using detail::dense_or_empty;
    dense_layer d;
    d.wq = dense_or_empty(w.wq);
    d.wk = dense_or_empty(w.wk);
    d.wv = dense_or_empty(w.wv);
    d.wo = dense_or_empty(w.wo);
    d.bq = dense_or_empty(w.bq);
    d.bk = dense_or_empty(w.bk);
    d.bv = dense_or_empty(w.bv);
    d.bo = dense_or_empty(w.bo);
    d.attn_norm = dense_or_empty(w.attn_norm);
    d.attn_norm_bias = dense_or_empty(w.attn_norm_bias);
    d.ffn_norm = dense_or_empty(w.ffn_norm);
    d.ffn_norm_bias = dense_or_empty(w.ffn_norm_bias);
    d.w_gate = dense_or_empty(w.w_gate);
    d.w_up = dense_or_empty(w.w_up);
    d.w_down = dense_or_empty(w.w_down);
    d.b_gate = dense_or_empty(w.b_gate);
    d.b_up = dense_or_empty(w.b_up);
    d.b_down = dense_or_empty(w.b_down);
    d.post_attn_norm = dense_or_empty(w.post_attn_norm);
    d.post_ffn_norm = dense_or_empty(w.post_ffn_norm);
    d.q_norm = dense_or_empty(w.q_norm);
    d.k_norm = dense_or_empty(w.k_norm);
    return d;
}

inline dense_weights materialize(const model& m)
{
    using detail::dense_or_empty;
    dense_weights d;
    d.token_embedding = dense_or_empty(m.token_embedding);
    d.position_embedding = dense_or_empty(m.position_embedding);
    d.token_type_embedding = dense_or_empty(m.token_type_embedding);
    d.embedding_norm = dense_or_empty(m.embedding_norm);
    d.embedding_norm_bias = dense_or_empty(m.embedding_norm_bias);
    d.final_norm = dense_or_empty(m.final_norm);
    d.final_norm_bias = dense_or_empty(m.final_norm_bias);
    if (!m.config.tied_embeddings) d.lm_head = dense_or_empty(m.lm_head);
    for (const auto& l : m.layers) d.layers.push_back(materialize(l));
    return d;
}

}  // namespace sdlens
