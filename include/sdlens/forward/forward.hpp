#pragma once
// The reference forward pass, for every family model_config describes. One session holds the KV
// cache: run() takes any number of tokens at once (a prompt: matrix-matrix products), next() one
// token (generation). forward() is a fresh session over one sequence.
//
// One layer, as the loop in session::run reads:
//   a = norm_attn(x)
//   sequential: x = x + attn(a);  x = x + ffn(norm_ffn(x))
//   parallel:   x = x + attn(a) + ffn(shared_input_norm ? a : norm_ffn(x))
// with sandwich norms (Gemma 2/3) each branch's output normalized before it is added;
//   post-norm encoders (BERT): x = norm_attn(x + attn(x)); x = norm_ffn(x + ffn(x)).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xtensor.hpp>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/forward/kernels.hpp"
#include "sdlens/forward/linear.hpp"
#include "sdlens/forward/options.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

// The model must outlive the session (it holds a pointer and reads the weights in place).
// A class template only so that it is compiled where it is used (core/compiled.hpp); `session`
// below is the one instantiation.
template <class = void>
class basic_session {
public:
    explicit basic_session(const model& m, forward_options options = {});

    const model& get_model() const { return *m_; }
    const forward_options& options() const { return opt_; }
    // Number of positions already in the cache: the position of the next token.
    std::int64_t position() const { return pos_; }
    void reset() { pos_ = 0; }

    // Runs tokens at positions position() .. position() + T - 1 and appends them to the cache.
    // Hidden states and captures in the result are those of these T tokens.
    forward_result run(const std::vector<int>& tokens);

    // The same from the rows of the embedding table's output instead of token ids (one row per
    // position, hidden-size wide): random or edited embeddings through the model. Learned
    // position embeddings are added as for tokens.
    forward_result run_embeddings(row_matrix<float> x);

    // One layer's FFN block on rows of the residual stream, norm included: what the layer adds
    // to x through its FFN (for parallel blocks with a shared norm, through the attention norm).
    row_matrix<float> ffn_block(int layer, const row_matrix<float>& x);

    // Logits of the next position after one more token.
    Eigen::VectorXf next(int token);

private:
    struct small_weights {
        Eigen::VectorXf attn_norm, attn_norm_bias, ffn_norm, ffn_norm_bias;
        Eigen::VectorXf bq, bk, bv, bo, b_gate, b_up, b_down;
        Eigen::VectorXf post_attn_norm, post_ffn_norm, q_norm, k_norm;
    };
    struct kv_cache {
        row_matrix<float> k, v;  // capacity x kv_dim; the first position() rows are filled
    };

    static Eigen::VectorXf dense_or_empty(const vector_view& v) { return v ? to_dense(v) : Eigen::VectorXf(); }
    // A norm's gain: the stored weight plus the config's offset (Gemma's 1 + w).
    Eigen::VectorXf gain_or_empty(const vector_view& v) const
    {
        Eigen::VectorXf g = dense_or_empty(v);
        if (g.size()) g.array() += static_cast<float>(m_->config.norm_weight_offset);
        return g;
    }
    // Normalizes a branch's output in place when the model has sandwich norms.
    void post_norm(row_matrix<float>& y, const Eigen::VectorXf& gain) const
    {
        if (!m_->config.sandwich_norms) return;
        row_matrix<float> normed;
        normalize_rows(y, m_->config.norm, m_->config.norm_eps, gain, Eigen::VectorXf(), normed);
        y.swap(normed);
    }
    void check_layer(int layer, const char* what) const;
    void check_tokens(const std::vector<int>& tokens) const;
    void check_positions(std::int64_t T) const;
    void add_positions(row_matrix<float>& x) const;
    // The normalized input of a layer's FFN matrices, and the ablations at that layer applied.
    void ffn_input(int layer, const small_weights& s, const row_matrix<float>& x, const row_matrix<float>& a,
                   row_matrix<float>& f_in) const;
    void store_hidden(forward_result& r, std::int64_t index, const row_matrix<float>& x) const
    {
        std::copy(x.data(), x.data() + x.size(), r.hidden.data() + index * x.size());
    }
    static void add_bias(row_matrix<float>& Y, const Eigen::VectorXf& b)
    {
        if (b.size()) Y.rowwise() += b.transpose();
    }
    // Y = X W^T, through the linear hook when there is one.
    void linear(const linear_site& site, const row_matrix<float>& X, const matrix_view& w, row_matrix<float>& Y);
    void attention(int layer, const layer_weights& w, const small_weights& s, const row_matrix<float>& a,
                   std::int64_t pos0, row_matrix<float>& out);
    // RMSNorm over each head_dim block of every row (Gemma 3's query and key norms).
    void normalize_heads(row_matrix<float>& X, std::int64_t heads, const Eigen::VectorXf& gain) const
    {
        const std::int64_t hd = m_->config.head_dim;
        Eigen::Map<row_matrix<float>> per_head(X.data(), X.rows() * heads, hd);
        row_matrix<float> normed;
        normalize_rows(per_head, m_->config.norm, m_->config.norm_eps, gain, Eigen::VectorXf(), normed);
        per_head = normed;
    }
    void ffn(int layer, const layer_weights& w, const small_weights& s, const row_matrix<float>& x, row_matrix<float>& out);

    const model* m_;
    forward_options opt_;
    std::int64_t pos_ = 0;
    std::vector<small_weights> small_;
    Eigen::VectorXf final_norm_, final_norm_bias_, embedding_norm_, embedding_norm_bias_;
    std::vector<float> alibi_slopes_;  // per query head, when the model has ALiBi
    std::vector<kv_cache> cache_;
    row_matrix<float> scratch_;  // decoded weights, reused from one product to the next
    row_matrix<float> hooked_input_[2];  // copies of product inputs for on_linear_input, likewise
    kernels::gemm_workspace gemm_workspace_;  // packing buffers of the matrix-product kernels, likewise
};

using session = basic_session<>;

// The members below are out of line so that an extern template declaration keeps them out of the
// files that include this header.
template <class D>
basic_session<D>::basic_session(const model& m, forward_options options) : m_(&m), opt_(std::move(options))
{
    const auto& c = m.config;
    if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
        throw input_error("model: " + std::to_string(c.num_heads) + " query heads cannot share " +
                          std::to_string(c.num_kv_heads) + " key/value heads");
    if (!m.token_embedding) throw input_error("model: no token embedding");
    for (auto& a : opt_.ablations) {
        check_layer(a.layer, "direction ablation");
        if (a.direction.size() != c.hidden_size)
            throw input_error("direction ablation: the direction has " + std::to_string(a.direction.size()) +
                              " entries, the model's hidden size is " + std::to_string(c.hidden_size));
        const float n = a.direction.norm();
        if (!(n > 0.0f) || !std::isfinite(n)) throw input_error("direction ablation: the direction is zero");
        a.direction /= n;
    }
    if (opt_.capture_ffn_layer != 0) check_layer(opt_.capture_ffn_layer, "FFN capture");
    if (opt_.last_layer != 0) {
        check_layer(opt_.last_layer, "last layer");
        if (opt_.logits != forward_options::logits_mode::none)
            throw input_error("last layer: logits need every layer; ask for none when the pass stops at layer " +
                              std::to_string(opt_.last_layer));
    }
    if (opt_.last_layer != 0 && opt_.capture_ffn_layer > opt_.last_layer)
        throw input_error("FFN capture: layer " + std::to_string(opt_.capture_ffn_layer) + " is after the last layer run, " +
                          std::to_string(opt_.last_layer));
    if (opt_.sequence_length < 0) throw input_error("sequence length: " + std::to_string(opt_.sequence_length) + " is negative");
    if (c.post_norm && !opt_.ablations.empty())
        throw input_error("direction ablation: not implemented for post-norm encoders (" + std::string(family_name(c.family)) + ")");
    if (!m.lm_head && opt_.logits != forward_options::logits_mode::none)
        throw input_error(std::string("logits: the ") + family_name(c.family) + " model has no language-model head; ask for none");
    for (int l : opt_.zero_attention_layers) check_layer(l, "attention zeroing");
    // Norm gains and biases are small: decode them once.
    for (const auto& w : m.layers) {
        if (!w.wq || !w.wk || !w.wv || !w.wo || !w.w_up || !w.w_down || (is_gated(c.activation) && !w.w_gate))
            throw input_error("model: a layer lacks an attention or FFN matrix its config calls for");
        small_weights s;
        s.attn_norm = gain_or_empty(w.attn_norm);
        s.attn_norm_bias = dense_or_empty(w.attn_norm_bias);
        s.ffn_norm = gain_or_empty(w.ffn_norm);
        s.ffn_norm_bias = dense_or_empty(w.ffn_norm_bias);
        s.bq = dense_or_empty(w.bq);
        s.bk = dense_or_empty(w.bk);
        s.bv = dense_or_empty(w.bv);
        s.bo = dense_or_empty(w.bo);
        s.b_gate = dense_or_empty(w.b_gate);
        s.b_up = dense_or_empty(w.b_up);
        s.b_down = dense_or_empty(w.b_down);
        s.post_attn_norm = gain_or_empty(w.post_attn_norm);
        s.post_ffn_norm = gain_or_empty(w.post_ffn_norm);
        s.q_norm = gain_or_empty(w.q_norm);
        s.k_norm = gain_or_empty(w.k_norm);
        if ((c.sandwich_norms && (!s.post_attn_norm.size() || !s.post_ffn_norm.size())) || (c.qk_norm && (!s.q_norm.size() || !s.k_norm.size())))
            throw input_error("model: a layer lacks the post-branch or query/key norms its config calls for");
        small_.push_back(std::move(s));
    }
    final_norm_ = gain_or_empty(m.final_norm);
    embedding_norm_ = gain_or_empty(m.embedding_norm);
    embedding_norm_bias_ = dense_or_empty(m.embedding_norm_bias);
    alibi_slopes_ = alibi_slopes(c);
    final_norm_bias_ = dense_or_empty(m.final_norm_bias);
    cache_.resize(m.layers.size());
}

template <class D>
forward_result basic_session<D>::run(const std::vector<int>& tokens)
{
    check_tokens(tokens);
    row_matrix<float> x(static_cast<Eigen::Index>(tokens.size()), m_->config.hidden_size);
    for (std::size_t t = 0; t < tokens.size(); ++t)
        read_rows(m_->token_embedding, tokens[t], 1, x.row(static_cast<Eigen::Index>(t)).data());
    return run_embeddings(std::move(x));
}

template <class D>
forward_result basic_session<D>::run_embeddings(row_matrix<float> x)
{
    const model_config& c = m_->config;
    const std::int64_t T = x.rows();
    const std::int64_t d = c.hidden_size;
    const std::int64_t L = opt_.last_layer > 0 ? opt_.last_layer : static_cast<std::int64_t>(m_->layers.size());
    const std::int64_t pos0 = pos_;
    if (x.cols() != d)
        throw input_error("embeddings: rows of " + std::to_string(x.cols()) + " values, the hidden size is " + std::to_string(d));
    check_positions(T);
    forward_result result;
    if (T == 0) return result;

    // Gemma scales the embedding rows (inputs_embeds too, as transformers does).
    if (c.embedding_scale != 1) x *= static_cast<float>(c.embedding_scale);
    if (c.bidirectional && pos0 != 0)
        throw input_error(std::string("tokens: a ") + family_name(c.family) + " encoder sees a sequence whole; it cannot continue one");
    add_positions(x);
    if (m_->token_type_embedding) {  // encoders: every token is of type 0
        Eigen::RowVectorXf type0(d);
        read_rows(m_->token_type_embedding, 0, 1, type0.data());
        x.rowwise() += type0;
    }
    if (embedding_norm_.size()) {
        row_matrix<float> normed;
        normalize_rows(x, c.norm, c.norm_eps, embedding_norm_, embedding_norm_bias_, normed);
        x.swap(normed);
    }
    if (opt_.hidden_states) {
        result.hidden = xt::xtensor<float, 3>::from_shape({static_cast<std::size_t>(L + 1), static_cast<std::size_t>(T),
                                                            static_cast<std::size_t>(d)});
        store_hidden(result, 0, x);
    }

    row_matrix<float> a, attn, f_in, ffn_out;
    for (std::int64_t l = 0; l < L; ++l) {
        const int layer = static_cast<int>(l + 1);
        const layer_weights& w = m_->layers[l];
        const small_weights& s = small_[l];

        if (c.post_norm) {  // BERT: each branch reads the stream; norms follow the residual sums
            if (opt_.attention_off(layer)) attn.setZero(T, d);
            else attention(layer, w, s, x, pos0, attn);
            x += attn;
            normalize_rows(x, c.norm, c.norm_eps, s.attn_norm, s.attn_norm_bias, a);
            if (layer == opt_.capture_ffn_layer) result.ffn_input_raw = result.ffn_input = a;
            ffn(layer, w, s, a, ffn_out);
            if (layer == opt_.capture_ffn_layer) result.ffn_output = ffn_out;
            a += ffn_out;
            normalize_rows(a, c.norm, c.norm_eps, s.ffn_norm, s.ffn_norm_bias, x);
            if (opt_.hidden_states) store_hidden(result, l + 1, x);
            continue;
        }
        normalize_rows(x, c.norm, c.norm_eps, s.attn_norm, s.attn_norm_bias, a);
        if (opt_.attention_off(layer)) attn.setZero(T, d);
        else {
            attention(layer, w, s, a, pos0, attn);
            post_norm(attn, s.post_attn_norm);
        }

        if (!c.parallel_residual) x += attn;
        ffn_input(layer, s, x, a, f_in);
        if (layer == opt_.capture_ffn_layer) {
            result.ffn_input_raw = x;
            result.ffn_input = f_in;
        }

        ffn(layer, w, s, f_in, ffn_out);
        post_norm(ffn_out, s.post_ffn_norm);
        if (layer == opt_.capture_ffn_layer) result.ffn_output = ffn_out;

        x += ffn_out;
        if (c.parallel_residual) x += attn;
        if (opt_.hidden_states) store_hidden(result, l + 1, x);
    }

    if (opt_.logits != forward_options::logits_mode::none) {
        const bool all = opt_.logits == forward_options::logits_mode::all;
        const std::int64_t S = opt_.sequence_length;
        row_matrix<float> last;
        if (all) last = x;
        else if (S > 0) {  // the last position of every sequence
            last.resize(T / S, d);
            for (std::int64_t i = 0; i < T / S; ++i) last.row(i) = x.row(i * S + S - 1);
        } else last = x.bottomRows(1);
        row_matrix<float> normed;
        normalize_rows(last, c.norm, c.norm_eps, final_norm_, final_norm_bias_, normed);
        linear({0, linear_kind::lm_head}, normed, m_->lm_head, result.logits);
        if (c.logit_softcap > 0) {
            const float cap = static_cast<float>(c.logit_softcap);
            result.logits = ((result.logits.array() / cap).tanh() * cap).matrix();
        }
    }
    pos_ += opt_.sequence_length > 0 ? 1 : T;  // a batch of sequences leaves the session spent
    return result;
}

template <class D>
void basic_session<D>::ffn_input(int layer, const small_weights& s, const row_matrix<float>& x, const row_matrix<float>& a,
                                 row_matrix<float>& f_in) const
{
    const model_config& c = m_->config;
    const bool shared = c.parallel_residual && c.shared_input_norm;
    auto normalize = [&](const row_matrix<float>& in) {
        if (shared) normalize_rows(in, c.norm, c.norm_eps, s.attn_norm, s.attn_norm_bias, f_in);
        else normalize_rows(in, c.norm, c.norm_eps, s.ffn_norm, s.ffn_norm_bias, f_in);
    };
    const direction_ablation* before_norm = nullptr;
    for (const auto& ab : opt_.ablations)
        if (ab.layer == layer && ab.site == ablation_site::ffn_block_input) before_norm = &ab;
    if (before_norm) {
        row_matrix<float> y = x;
        for (const auto& ab : opt_.ablations)
            if (ab.layer == layer && ab.site == ablation_site::ffn_block_input) y -= (y * ab.direction) * ab.direction.transpose();
        normalize(y);
    } else if (shared) {
        f_in = a;
    } else {
        normalize(x);
    }
    for (const auto& ab : opt_.ablations)
        if (ab.layer == layer && ab.site == ablation_site::ffn_input) f_in -= (f_in * ab.direction) * ab.direction.transpose();
}

template <class D>
row_matrix<float> basic_session<D>::ffn_block(int layer, const row_matrix<float>& x)
{
    check_layer(layer, "FFN block");
    if (m_->config.post_norm) throw input_error("FFN block: not defined for post-norm encoders, whose FFN reads the normalized stream");
    if (x.cols() != m_->config.hidden_size)
        throw input_error("FFN block: rows of " + std::to_string(x.cols()) + " values, the hidden size is " +
                          std::to_string(m_->config.hidden_size));
    const small_weights& s = small_[static_cast<std::size_t>(layer - 1)];
    row_matrix<float> a, f_in, out;
    if (m_->config.parallel_residual && m_->config.shared_input_norm)
        normalize_rows(x, m_->config.norm, m_->config.norm_eps, s.attn_norm, s.attn_norm_bias, a);
    ffn_input(layer, s, x, a, f_in);
    ffn(layer, m_->layers[static_cast<std::size_t>(layer - 1)], s, f_in, out);
    post_norm(out, s.post_ffn_norm);
    return out;
}

template <class D>
Eigen::VectorXf basic_session<D>::next(int token)
{
    const auto saved = opt_.logits;
    opt_.logits = forward_options::logits_mode::last;
    const bool saved_hidden = opt_.hidden_states;
    opt_.hidden_states = false;
    forward_result r = run({token});
    opt_.logits = saved;
    opt_.hidden_states = saved_hidden;
    return r.logits.row(0).transpose();
}

template <class D>
void basic_session<D>::check_layer(int layer, const char* what) const
{
    if (layer < 1 || layer > static_cast<int>(m_->layers.size()))
        throw input_error(std::string(what) + ": layer " + std::to_string(layer) + " is not in 1.." +
                          std::to_string(m_->layers.size()));
}

template <class D>
void basic_session<D>::check_tokens(const std::vector<int>& tokens) const
{
    const std::int64_t vocab = m_->token_embedding.rows;
    for (int t : tokens)
        if (t < 0 || t >= vocab)
            throw input_error("tokens: " + std::to_string(t) + " is outside the vocabulary 0.." + std::to_string(vocab - 1));
}

template <class D>
void basic_session<D>::check_positions(std::int64_t T) const
{
    const std::int64_t S = opt_.sequence_length;
    if (S > 0) {
        if (pos_ != 0) throw input_error("independent sequences: the session has run already; start a new one");
        if (T % S != 0)
            throw input_error("independent sequences: " + std::to_string(T) + " tokens are not whole sequences of " +
                              std::to_string(S));
    }
    const std::int64_t end = S > 0 ? S : pos_ + T;
    const std::int64_t offset = m_->config.position_offset;  // RoBERTa's first position row
    if (m_->config.learned_positions && end + offset > m_->position_embedding.rows)
        throw input_error("tokens: " + std::to_string(end) + " positions exceed the model's " +
                          std::to_string(m_->position_embedding.rows - offset) + " learned positions");
}

template <class D>
void basic_session<D>::add_positions(row_matrix<float>& x) const
{
    if (!m_->config.learned_positions) return;
    const std::int64_t T = x.rows(), S = opt_.sequence_length;
    row_matrix<float> p(S > 0 ? S : T, x.cols());
    read_rows(m_->position_embedding, (S > 0 ? 0 : pos_) + m_->config.position_offset, p.rows(), p.data());
    if (S > 0)
        for (std::int64_t i = 0; i < T; i += S) x.middleRows(i, S) += p;
    else
        x += p;
}

template <class D>
void basic_session<D>::linear(const linear_site& site, const row_matrix<float>& X, const matrix_view& w, row_matrix<float>& Y)
{
    if (!opt_.on_linear) {
        const linear_replacement r = opt_.replace_linear ? opt_.replace_linear(site) : linear_replacement{};
        const matrix_view& weight = r.weight ? *r.weight : w;
        if (weight.rows != w.rows || weight.cols != w.cols)
            throw input_error(w.tensor->name + ": its replacement is " + std::to_string(weight.rows) + " x " +
                              std::to_string(weight.cols) + ", the stored weight " + std::to_string(w.rows) + " x " +
                              std::to_string(w.cols));
        if (opt_.on_linear_input) {
            // One buffer for stream-wide inputs, one for the FFN's: assigning X of the same shape
            // reuses the storage, where a new matrix per product cost a fresh allocation and its
            // page faults (~10% of a quantized prompt pass at d 2048).
            row_matrix<float>& input = hooked_input_[X.cols() == m_->config.hidden_size ? 0 : 1];
            input = X;
            opt_.on_linear_input(site, input);
            multiply_transposed(input, weight, Y, scratch_, opt_.bf16_activations, &gemm_workspace_);
        } else {
            multiply_transposed(X, weight, Y, scratch_, opt_.bf16_activations, &gemm_workspace_);
        }
        if (r.output_scale) {
            if (r.output_scale->size() != Y.cols())
                throw input_error(w.tensor->name + ": an output scale of " + std::to_string(r.output_scale->size()) +
                                  " values for " + std::to_string(Y.cols()) + " outputs");
            const Eigen::Index rows = Y.rows();
#pragma omp parallel for if (Y.size() > (1 << 16))
            for (Eigen::Index i = 0; i < rows; ++i) Y.row(i).array() *= r.output_scale->transpose().array();
        }
        return;
    }
    row_matrix<float> input = X;
    decode_matrix(w, scratch_);
    opt_.on_linear(site, input, scratch_);
    if (input.cols() != scratch_.cols() || scratch_.rows() != w.rows)
        throw input_error(w.tensor->name + ": after the linear hook, the weight is " + std::to_string(scratch_.rows()) +
                          " x " + std::to_string(scratch_.cols()) + " and the input has " +
                          std::to_string(input.cols()) + " columns");
    Y.noalias() = input * scratch_.transpose();
}

template <class D>
void basic_session<D>::attention(int layer, const layer_weights& w, const small_weights& s, const row_matrix<float>& a,
                                 std::int64_t pos0, row_matrix<float>& out)
{
    const model_config& c = m_->config;
    const std::int64_t T = a.rows(), S = opt_.sequence_length;
    row_matrix<float> q, k, v, o;
    if (S == 1) {
        // A sequence of one token attends only to itself: the softmax is 1 and each query head
        // reads its key/value head's value, whatever Q, K and the rotation are.
        linear({layer, linear_kind::v}, a, w.wv, v);
        add_bias(v, s.bv);
        const std::int64_t group = c.num_heads / c.num_kv_heads, hd = c.head_dim;
        o.resize(T, c.num_heads * hd);
        for (std::int64_t h = 0; h < c.num_heads; ++h) o.middleCols(h * hd, hd) = v.middleCols((h / group) * hd, hd);
        linear({layer, linear_kind::o}, o, w.wo, out);
        add_bias(out, s.bo);
        return;
    }
    linear({layer, linear_kind::q}, a, w.wq, q);
    linear({layer, linear_kind::k}, a, w.wk, k);
    linear({layer, linear_kind::v}, a, w.wv, v);
    add_bias(q, s.bq);
    add_bias(k, s.bk);
    add_bias(v, s.bv);
    if (c.qk_norm) {
        normalize_heads(q, c.num_heads, s.q_norm);
        normalize_heads(k, c.num_kv_heads, s.k_norm);
    }
    const attention_scores how{c.attention_window(layer), static_cast<float>(c.score_scale()), static_cast<float>(c.attention_softcap),
                               alibi_slopes_.empty() ? nullptr : alibi_slopes_.data(), c.bidirectional};
    if (S > 1) {  // independent sequences: each rotated from position 0, attending within itself
        o.resize(T, c.num_heads * c.head_dim);
        row_matrix<float> qs, ks, vs, os;
        const rope_frequencies sequence_rope = c.rope == rope_style::none ? rope_frequencies{} : rope_frequencies_for(c, S, layer);
        for (std::int64_t i = 0; i < T; i += S) {
            qs = q.middleRows(i, S);
            ks = k.middleRows(i, S);
            vs = v.middleRows(i, S);
            apply_rope(qs, c.num_heads, c.head_dim, 0, c.rope, c.rotary_dims, sequence_rope);
            apply_rope(ks, c.num_kv_heads, c.head_dim, 0, c.rope, c.rotary_dims, sequence_rope);
            causal_attention(qs, ks, vs, S, c.num_heads, c.num_kv_heads, c.head_dim, os, how);
            o.middleRows(i, S) = os;
        }
        linear({layer, linear_kind::o}, o, w.wo, out);
        add_bias(out, s.bo);
        return;
    }
    const rope_frequencies rope = c.rope == rope_style::none ? rope_frequencies{} : rope_frequencies_for(c, pos0 + T, layer);
    apply_rope(q, c.num_heads, c.head_dim, pos0, c.rope, c.rotary_dims, rope);
    apply_rope(k, c.num_kv_heads, c.head_dim, pos0, c.rope, c.rotary_dims, rope);

    kv_cache& cache = cache_[layer - 1];
    const std::int64_t end = pos0 + T;
    if (cache.k.rows() < end) {
        const std::int64_t capacity = std::max<std::int64_t>(end, 2 * cache.k.rows());
        cache.k.conservativeResize(capacity, c.kv_dim());
        cache.v.conservativeResize(capacity, c.kv_dim());
    }
    cache.k.middleRows(pos0, T) = k;
    cache.v.middleRows(pos0, T) = v;

    causal_attention(q, cache.k, cache.v, end, c.num_heads, c.num_kv_heads, c.head_dim, o, how);
    linear({layer, linear_kind::o}, o, w.wo, out);
    add_bias(out, s.bo);
}

template <class D>
void basic_session<D>::ffn(int layer, const layer_weights& w, const small_weights& s, const row_matrix<float>& x,
                           row_matrix<float>& out)
{
    const model_config& c = m_->config;
    row_matrix<float> up, gate;
    linear({layer, linear_kind::up}, x, w.w_up, up);
    add_bias(up, s.b_up);
    if (is_gated(c.activation)) {
        linear({layer, linear_kind::gate}, x, w.w_gate, gate);
        add_bias(gate, s.b_gate);
        if (c.activation == activation_kind::swiglu) up.array() *= gate.unaryExpr([](float g) { return silu(g); }).array();
        else up.array() *= gate.unaryExpr([](float g) { return gelu_tanh(g); }).array();
    } else if (c.activation == activation_kind::gelu_tanh) {
        up = up.unaryExpr([](float u) { return gelu_tanh(u); });
    } else {
        up = up.unaryExpr([](float u) { return gelu_erf(u); });
    }
    linear({layer, linear_kind::down}, up, w.w_down, out);
    add_bias(out, s.b_down);
}

// One sequence from position 0.
template <class = void>  // compiled where it is called (core/compiled.hpp)
forward_result forward(const model& m, const std::vector<int>& tokens, const forward_options& options = {})
{
    session s(m, options);
    return s.run(tokens);
}

inline int argmax(const Eigen::VectorXf& logits)
{
    Eigen::Index best = 0;
    logits.maxCoeff(&best);
    return static_cast<int>(best);
}

// Greedy continuation of a prompt: up to n new tokens, stopping before stop_token (llama2.c stops
// at BOS, which delimits stories) when it is >= 0. The prompt must not be empty.
template <class = void>
std::vector<int> greedy_generate(const model& m, const std::vector<int>& prompt, int n, int stop_token = -1,
                                        const forward_options& options = {})
{
    if (prompt.empty()) throw input_error("generate: the prompt has no tokens");
    forward_options last_only = options;
    last_only.logits = forward_options::logits_mode::last;
    last_only.hidden_states = false;
    session s(m, std::move(last_only));
    forward_result r = s.run(prompt);
    Eigen::VectorXf logits = r.logits.row(0).transpose();
    std::vector<int> out;
    for (int i = 0; i < n; ++i) {
        const int next = argmax(logits);
        if (next == stop_token) break;
        out.push_back(next);
        if (i + 1 < n) logits = s.next(next);
    }
    return out;
}

// Compiled once in sdlens::sdlens_compiled (core/compiled.hpp).
#define SDLENS_FORWARD_INSTANTIATIONS(X)                                                                \
    X(class basic_session<void>)                                                                      \
    X(forward_result forward(const model&, const std::vector<int>&, const forward_options&))          \
    X(std::vector<int> greedy_generate(const model&, const std::vector<int>&, int, int, const forward_options&))
SDLENS_FORWARD_INSTANTIATIONS(SDLENS_EXTERN_TEMPLATE)

}  // namespace sdlens
