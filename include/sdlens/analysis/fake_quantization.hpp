#pragma once
// Fake quantization of a model's linear layers through the forward pass (paper Sec. 5.1, Table 1):
// weights are quantized once, activations (the input of every product) on every call, and the
// products run in float on the quantized values, as SmoothQuant's and the paper's evaluation
// code simulate W8A8.
//
// The quantizers follow SmoothQuant's fake_quant.py and AWQ's pseudo_quantize_tensor:
//  - int8, symmetric: step = max(absmax, 1e-5) / 127, code = round(x / step) clamped to +-127,
//    rounding half to even (torch.round); per tensor, per output row of a weight ("per
//    channel"), or per row of an activation ("per token").
//  - int4 weights in groups of g input columns, asymmetric (AWQ's zero point): step =
//    max(max - min, 1e-5) / 15, zero = clamp(round(-min / step), 0, 15), code = clamp(round(x /
//    step) + zero, 0, 15), value (code - zero) step. A last group shorter than g keeps its own step.
//
// "Per tensor" means per linear layer of the original model: the views of one layer that share a
// stored tensor (fused q/k/v, fused gate/up) share one weight step, as a fused nn.Linear does;
// q, k and v (and gate and up) read the same input, so their activation steps agree anyway.
// lm_head is not quantized (neither SmoothQuant nor the paper quantize it).
//
// Int8 weights are kept as their integer codes in bf16 (exact for |code| <= 256) with the step
// applied to the product's output columns: half the memory of f32 values and the speed of a bf16
// model. Int4 and smoothed-only weights are kept as f32 values.
//
// SmoothQuant (alpha, default 0.5): per input channel j of the matrices after a norm (q/k/v;
// gate/up), s_j = max|X_j|^alpha / max|W_j|^(1-alpha), clamped below at 1e-5, from calibration
// maxima of the activations; the weights' columns are multiplied by s_j and the activations
// divided by it before they are quantized. That equals folding 1/s into the norm's weight (and
// bias), as SmoothQuant does, up to one rounding. o and down are not smoothed. Where one norm
// feeds both attention and FFN (parallel blocks with a shared norm), one s serves both, so that
// it can be folded into that norm.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "sdlens/core/compiled.hpp"
#include "sdlens/core/error.hpp"
#include "sdlens/forward/forward.hpp"
#include "sdlens/io/half.hpp"
#include "sdlens/model/model.hpp"

namespace sdlens {

// ---- the quantizers, on one block of values ----

inline float int8_step(float absmax) { return std::max(absmax, 1e-5f) / 127.0f; }
// Round half to even, as torch.round, for |v| <= 2^22: adding and taking back 1.5 * 2^23 leaves
// no fraction bits, and IEEE addition rounds to nearest even. Unlike std::nearbyint, which is a
// libm call per value without SSE4.1, this vectorizes (the activations of every product pass
// through it). Needs strict IEEE arithmetic (no -ffast-math), as the rest of sdlens does.
inline float round_half_even(float v)
{
    constexpr float magic = 12582912.0f;  // 1.5 * 2^23
    return (v + magic) - magic;
}
// Clamping first is the same as after for the integer bounds, and keeps v in the trick's range.
inline float int8_code(float x, float step) { return round_half_even(std::clamp(x / step, -127.0f, 127.0f)); }

// x <- code(x) * step with one step for all of x (per tensor) or one per row (per channel or per
// token). Returns the steps (one, or one per row).
enum class int8_granularity { per_tensor, per_row };

inline Eigen::VectorXf fake_quantize_int8(row_matrix<float>& x, int8_granularity g)
{
    const Eigen::Index rows = x.rows();
    // Every product's input passes here on every forward call: both passes run on the
    // forward's threads once an input is large (a prompt's, not one token's).
    const bool parallel = x.size() > (1 << 16);
    if (g == int8_granularity::per_tensor) {
        float* p = x.data();
        const Eigen::Index n = x.size();
        float absmax = 0;
#pragma omp parallel for simd reduction(max : absmax) if (parallel)
        for (Eigen::Index i = 0; i < n; ++i) absmax = std::max(absmax, std::abs(p[i]));
        const float step = int8_step(absmax);
#pragma omp parallel for simd if (parallel)
        for (Eigen::Index i = 0; i < n; ++i) p[i] = int8_code(p[i], step) * step;
        return Eigen::VectorXf::Constant(1, step);
    }
    Eigen::VectorXf steps(rows);
#pragma omp parallel for if (parallel)
    for (Eigen::Index r = 0; r < rows; ++r) {
        const float step = int8_step(x.cols() ? x.row(r).cwiseAbs().maxCoeff() : 0.0f);
        steps[r] = step;
        float* p = x.row(r).data();
        const Eigen::Index n = x.cols();
#pragma omp simd
        for (Eigen::Index c = 0; c < n; ++c) p[c] = int8_code(p[c], step) * step;
    }
    return steps;
}

// One row of a weight in asymmetric int4 groups of `group` columns, in place.
inline void fake_quantize_int4_groups(float* row, std::int64_t n, std::int64_t group)
{
    for (std::int64_t g0 = 0; g0 < n; g0 += group) {
        const std::int64_t m = std::min(group, n - g0);
        float lo = row[g0], hi = row[g0];
        for (std::int64_t i = 1; i < m; ++i) lo = std::min(lo, row[g0 + i]), hi = std::max(hi, row[g0 + i]);
        const float step = std::max(hi - lo, 1e-5f) / 15.0f;
        const float zero = std::clamp(std::nearbyint(-lo / step), 0.0f, 15.0f);
        for (std::int64_t i = 0; i < m; ++i)  // weights, once: nearbyint's speed does not matter
            row[g0 + i] = (std::clamp(std::nearbyint(row[g0 + i] / step) + zero, 0.0f, 15.0f) - zero) * step;
    }
}

// ---- what to do to the model ----

enum class quant_method { none, rtn, smoothquant, rtn_per_channel, w4g128 };

inline const char* quant_method_name(quant_method m)
{
    switch (m) {
    case quant_method::none: return "none";
    case quant_method::rtn: return "rtn";
    case quant_method::smoothquant: return "smoothquant";
    case quant_method::rtn_per_channel: return "rtn-per-channel";
    case quant_method::w4g128: return "w4g128";
    }
    return "?";
}

inline quant_method parse_quant_method(const std::string& s)
{
    for (quant_method m : {quant_method::none, quant_method::rtn, quant_method::smoothquant, quant_method::rtn_per_channel,
                           quant_method::w4g128})
        if (s == quant_method_name(m)) return m;
    throw input_error("--method: '" + s + "' is not one of none, rtn, smoothquant, rtn-per-channel, w4g128");
}

struct quant_scheme {
    enum class weights { keep, int8_per_tensor, int8_per_channel, int4_groups };
    enum class activations { keep, int8_per_tensor, int8_per_token };
    weights w = weights::keep;
    activations a = activations::keep;
    bool smooth = false;     // SmoothQuant's migration before quantizing (needs calibration maxima)
    double alpha = 0.5;      // SmoothQuant's migration strength
    std::int64_t group = 128;  // int4_groups only

    static quant_scheme of(quant_method m, double alpha = 0.5)
    {
        quant_scheme s;
        s.alpha = alpha;
        switch (m) {
        case quant_method::none: break;
        case quant_method::rtn: s.w = weights::int8_per_tensor, s.a = activations::int8_per_tensor; break;
        case quant_method::smoothquant:
            s.w = weights::int8_per_tensor, s.a = activations::int8_per_tensor, s.smooth = true;
            break;
        case quant_method::rtn_per_channel: s.w = weights::int8_per_channel, s.a = activations::int8_per_token; break;
        case quant_method::w4g128: s.w = weights::int4_groups; break;
        }
        return s;
    }
    bool changes_anything() const { return w != weights::keep || a != activations::keep || smooth; }
};

// Per layer (index l-1) and input channel: the largest |activation| seen at the input of q/k/v
// (the attention norm's output) and of gate/up (the FFN norm's output), over a calibration sample.
struct activation_maxima {
    std::vector<Eigen::VectorXf> attention_input, ffn_input;
    std::int64_t tokens = 0;
};

// Runs the unquantized model over the calibration windows (each an independent sequence from
// position 0) and keeps the channel maxima. progress(i, n) after each window.
template <class = void>  // compiled where it is called (core/compiled.hpp)
activation_maxima calibrate_activation_maxima(const model& m, const std::vector<std::vector<int>>& windows,
                                              const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const std::size_t L = m.layers.size();
    const Eigen::Index d = m.config.hidden_size;
    activation_maxima r;
    r.attention_input.assign(L, Eigen::VectorXf::Zero(d));
    r.ffn_input.assign(L, Eigen::VectorXf::Zero(d));
    forward_options o;
    o.logits = forward_options::logits_mode::none;
    o.on_linear_input = [&](const linear_site& s, row_matrix<float>& x) {
        Eigen::VectorXf* target = s.kind == linear_kind::q ? &r.attention_input[static_cast<std::size_t>(s.layer - 1)]
                                  : s.kind == linear_kind::up ? &r.ffn_input[static_cast<std::size_t>(s.layer - 1)]
                                                              : nullptr;
        if (target) *target = target->cwiseMax(x.cwiseAbs().colwise().maxCoeff().transpose());
    };
    for (std::size_t i = 0; i < windows.size(); ++i) {
        forward(m, windows[i], o);
        r.tokens += static_cast<std::int64_t>(windows[i].size());
        if (progress) progress(static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(windows.size()));
    }
    return r;
}

struct quantization_options {
    quant_scheme scheme;
    std::vector<int> skip_down_layers;  // 1-based: down_proj of these layers keeps the checkpoint's precision
};

// The quantized linear layers of one model, and the forward options that use them. Holds its own
// copies of the quantized weights; the model and this object must outlive every session that
// uses the options.
class quantized_linears {
public:
    static constexpr int kinds_per_layer = 7;  // q, k, v, o, gate, up, down

    // maxima: calibration for smoothing (required when the scheme smooths, ignored otherwise).
    template <class = void>
    quantized_linears(const model& m, const quantization_options& o, const activation_maxima* maxima = nullptr);

    quantized_linears(const quantized_linears&) = delete;
    quantized_linears& operator=(const quantized_linears&) = delete;

    // base with replace_linear and on_linear_input set (on_linear must be empty). keep_down:
    // layers (1-based) whose down projection runs as stored besides the options' skip list, so
    // that the variants with and without a skip list share one set of quantized weights (the
    // down projection is never fused with another product, so its step is its own). The vector
    // is copied into the options.
    forward_options apply(forward_options base = {}, std::vector<int> keep_down = {}) const;

    const quantization_options& options() const { return opt_; }
    // Whether the product at this site runs on changed weights or inputs.
    bool changes(const linear_site& s) const
    {
        const site_state* p = find(s);
        return p && (p->view || p->quantize_input || p->input_divisor.size());
    }
    // The weight the product reads at a changed site (nullptr: the stored one) and its output scale.
    const matrix_view* weight(const linear_site& s) const
    {
        const site_state* p = find(s);
        return p && p->view ? &*p->view : nullptr;
    }
    const Eigen::VectorXf* output_scale(const linear_site& s) const
    {
        const site_state* p = find(s);
        return p && p->scale.size() ? &p->scale : nullptr;
    }
    // Bytes of quantized weights held.
    std::int64_t weight_bytes() const { return bytes_; }

private:
    struct site_state {
        std::unique_ptr<tensor_info> tensor;  // describes storage for the view
        std::vector<std::uint16_t> bf16;
        std::vector<float> f32;
        std::optional<matrix_view> view;
        Eigen::VectorXf scale;          // per output column of the product (int8 weight steps)
        Eigen::VectorXf input_divisor;  // smoothing: x_j / s_j before the input is quantized
        bool quantize_input = false;
    };
    static int kind_index(linear_kind k) { return static_cast<int>(k); }
    const site_state* find(const linear_site& s) const
    {
        if (s.layer < 1 || s.layer > static_cast<int>(sites_.size()) || s.kind == linear_kind::lm_head) return nullptr;
        return &sites_[static_cast<std::size_t>(s.layer - 1)][static_cast<std::size_t>(kind_index(s.kind))];
    }
    template <class = void>
    void quantize_layer(const model& m, int layer, const activation_maxima* maxima);

    quantization_options opt_;
    std::vector<std::array<site_state, kinds_per_layer>> sites_;
    std::int64_t bytes_ = 0;
};

inline const matrix_view& layer_matrix(const layer_weights& w, linear_kind k)
{
    switch (k) {
    case linear_kind::q: return w.wq;
    case linear_kind::k: return w.wk;
    case linear_kind::v: return w.wv;
    case linear_kind::o: return w.wo;
    case linear_kind::gate: return w.w_gate;
    case linear_kind::up: return w.w_up;
    case linear_kind::down: return w.w_down;
    case linear_kind::lm_head: break;
    }
    throw input_error("lm_head is not a layer's matrix");
}

// What quantized_linears(m, o) will hold, before building it: int8 codes as bf16 (2 bytes a
// weight), int4 groups and smoothing alone as f32 (4 bytes), for every matrix it changes.
inline std::int64_t quantized_weight_bytes(const model& m, const quantization_options& o)
{
    const quant_scheme& q = o.scheme;
    const std::int64_t per_weight = q.w == quant_scheme::weights::int8_per_tensor || q.w == quant_scheme::weights::int8_per_channel ? 2
                                    : q.w == quant_scheme::weights::int4_groups || q.smooth                                         ? 4
                                                                                                                                    : 0;
    std::int64_t bytes = 0;
    for (std::size_t l = 0; l < m.layers.size(); ++l) {
        const bool skip_down = std::find(o.skip_down_layers.begin(), o.skip_down_layers.end(), static_cast<int>(l + 1)) != o.skip_down_layers.end();
        for (linear_kind k : {linear_kind::q, linear_kind::k, linear_kind::v, linear_kind::o, linear_kind::gate, linear_kind::up, linear_kind::down}) {
            const matrix_view& v = layer_matrix(m.layers[l], k);
            if (!v || (k == linear_kind::down && skip_down)) continue;
            // smoothing alone changes only the smoothed products' weights
            const bool smoothed = k != linear_kind::o && k != linear_kind::down;
            if (q.w == quant_scheme::weights::keep && !(q.smooth && smoothed)) continue;
            bytes += v.rows * v.cols * per_weight;
        }
    }
    return bytes;
}

template <class D>
quantized_linears::quantized_linears(const model& m, const quantization_options& o, const activation_maxima* maxima) : opt_(o)
{
    const int L = static_cast<int>(m.layers.size());
    for (int l : opt_.skip_down_layers)
        if (l < 1 || l > L) throw input_error("skip list: layer " + std::to_string(l) + " is not in 1.." + std::to_string(L));
    if (opt_.scheme.smooth) {
        if (!maxima || maxima->attention_input.size() != m.layers.size() || maxima->ffn_input.size() != m.layers.size())
            throw input_error("SmoothQuant: no calibration maxima for this model");
        if (!(opt_.scheme.alpha >= 0 && opt_.scheme.alpha <= 1))
            throw input_error("SmoothQuant: alpha " + std::to_string(opt_.scheme.alpha) + " is outside [0, 1]");
    }
    if (opt_.scheme.w == quant_scheme::weights::int4_groups && opt_.scheme.group < 1)
        throw input_error("int4 groups: a group of " + std::to_string(opt_.scheme.group) + " columns");
    sites_.resize(m.layers.size());
    if (!opt_.scheme.changes_anything()) return;
    for (int l = 1; l <= L; ++l) quantize_layer(m, l, maxima);
}

template <class D>
void quantized_linears::quantize_layer(const model& m, int layer, const activation_maxima* maxima)
{
    const layer_weights& w = m.layers[static_cast<std::size_t>(layer - 1)];
    auto& sites = sites_[static_cast<std::size_t>(layer - 1)];
    const quant_scheme& q = opt_.scheme;
    const model_config& c = m.config;
    constexpr std::array<linear_kind, kinds_per_layer> kinds{linear_kind::q,    linear_kind::k,  linear_kind::v,   linear_kind::o,
                                                              linear_kind::gate, linear_kind::up, linear_kind::down};
    const bool skip_down =
        std::find(opt_.skip_down_layers.begin(), opt_.skip_down_layers.end(), layer) != opt_.skip_down_layers.end();
    auto present = [&](linear_kind k) { return static_cast<bool>(layer_matrix(w, k)); };

    // Smoothing factors per consumer group of one norm's output.
    Eigen::VectorXf s_attn, s_ffn;
    if (q.smooth) {
        const bool shared = c.parallel_residual && c.shared_input_norm;
        auto column_max = [&](std::initializer_list<linear_kind> ks) {
            Eigen::VectorXf mx = Eigen::VectorXf::Zero(c.hidden_size);
            row_matrix<float> buf;
            for (linear_kind k : ks) {
                if (!present(k)) continue;
                decode_matrix(layer_matrix(w, k), buf);
                mx = mx.cwiseMax(buf.cwiseAbs().colwise().maxCoeff().transpose());
            }
            return mx;
        };
        auto factors = [&](const Eigen::VectorXf& act, const Eigen::VectorXf& wmax) {
            Eigen::VectorXf s(act.size());
            for (Eigen::Index j = 0; j < s.size(); ++j)
                s[j] = std::max(1e-5f, static_cast<float>(std::pow(static_cast<double>(act[j]), q.alpha) /
                                                          std::pow(std::max(1e-5, static_cast<double>(wmax[j])), 1 - q.alpha)));
            return s;
        };
        const Eigen::VectorXf& a_attn = maxima->attention_input[static_cast<std::size_t>(layer - 1)];
        const Eigen::VectorXf& a_ffn = maxima->ffn_input[static_cast<std::size_t>(layer - 1)];
        if (a_attn.size() != c.hidden_size || a_ffn.size() != c.hidden_size)
            throw input_error("SmoothQuant: calibration maxima of the wrong size at layer " + std::to_string(layer));
        if (shared) {
            s_attn = s_ffn = factors(a_attn.cwiseMax(a_ffn), column_max({linear_kind::q, linear_kind::k, linear_kind::v,
                                                                         linear_kind::gate, linear_kind::up}));
        } else {
            s_attn = factors(a_attn, column_max({linear_kind::q, linear_kind::k, linear_kind::v}));
            s_ffn = factors(a_ffn, column_max({linear_kind::gate, linear_kind::up}));
        }
    }
    auto smoothing_of = [&](linear_kind k) -> const Eigen::VectorXf* {
        if (!q.smooth) return nullptr;
        if (k == linear_kind::q || k == linear_kind::k || k == linear_kind::v) return &s_attn;
        if (k == linear_kind::gate || k == linear_kind::up) return &s_ffn;
        return nullptr;
    };

    // Decode and smooth every changed matrix, then the per-tensor steps over the views sharing a tensor.
    // changed: the product's input or weight changes; new_weight: its weight does.
    std::array<row_matrix<float>, kinds_per_layer> values;
    std::array<bool, kinds_per_layer> changed{}, new_weight{};
    for (int i = 0; i < kinds_per_layer; ++i) {
        const linear_kind k = kinds[static_cast<std::size_t>(i)];
        if (!present(k) || (k == linear_kind::down && skip_down)) continue;
        new_weight[static_cast<std::size_t>(i)] = q.w != quant_scheme::weights::keep || smoothing_of(k);
        changed[static_cast<std::size_t>(i)] = new_weight[static_cast<std::size_t>(i)] || q.a != quant_scheme::activations::keep;
        if (!new_weight[static_cast<std::size_t>(i)]) continue;
        decode_matrix(layer_matrix(w, k), values[static_cast<std::size_t>(i)]);
        if (const Eigen::VectorXf* s = smoothing_of(k)) values[static_cast<std::size_t>(i)].array().rowwise() *= s->transpose().array();
    }
    std::array<float, kinds_per_layer> tensor_absmax{};
    for (int i = 0; i < kinds_per_layer; ++i) {
        if (!new_weight[static_cast<std::size_t>(i)]) continue;
        const tensor_info* t = layer_matrix(w, kinds[static_cast<std::size_t>(i)]).tensor;
        float mx = 0;
        for (int j = 0; j < kinds_per_layer; ++j)
            if (new_weight[static_cast<std::size_t>(j)] && layer_matrix(w, kinds[static_cast<std::size_t>(j)]).tensor == t)
                mx = std::max(mx, values[static_cast<std::size_t>(j)].size() ? values[static_cast<std::size_t>(j)].cwiseAbs().maxCoeff() : 0.0f);
        tensor_absmax[static_cast<std::size_t>(i)] = mx;
    }

    for (int i = 0; i < kinds_per_layer; ++i) {
        if (!changed[static_cast<std::size_t>(i)]) continue;
        const linear_kind k = kinds[static_cast<std::size_t>(i)];
        site_state& st = sites[static_cast<std::size_t>(i)];
        if (const Eigen::VectorXf* s = smoothing_of(k)) st.input_divisor = *s;
        st.quantize_input = q.a != quant_scheme::activations::keep;
        if (!new_weight[static_cast<std::size_t>(i)]) continue;
        row_matrix<float>& v = values[static_cast<std::size_t>(i)];
        const matrix_view& stored = layer_matrix(w, k);
        st.tensor = std::make_unique<tensor_info>();
        st.tensor->name = stored.tensor->name + std::string(" (") + linear_kind_name(k) + ", fake-quantized)";
        st.tensor->shape = {v.rows(), v.cols()};
        if (q.w == quant_scheme::weights::int8_per_tensor || q.w == quant_scheme::weights::int8_per_channel) {
            // Codes as bf16, steps as the output scale.
            st.scale.resize(v.rows());
            if (q.w == quant_scheme::weights::int8_per_tensor) st.scale.setConstant(int8_step(tensor_absmax[static_cast<std::size_t>(i)]));
            else
                for (Eigen::Index r = 0; r < v.rows(); ++r) st.scale[r] = int8_step(v.cols() ? v.row(r).cwiseAbs().maxCoeff() : 0.0f);
            st.bf16.resize(static_cast<std::size_t>(v.size()));
            for (Eigen::Index r = 0; r < v.rows(); ++r)
                for (Eigen::Index col = 0; col < v.cols(); ++col)
                    st.bf16[static_cast<std::size_t>(r * v.cols() + col)] = float_to_bf16(int8_code(v(r, col), st.scale[r]));
            st.tensor->type = dtype::bf16;
            st.tensor->data = reinterpret_cast<const std::byte*>(st.bf16.data());
            st.tensor->nbytes = st.bf16.size() * sizeof(std::uint16_t);
        } else {
            if (q.w == quant_scheme::weights::int4_groups)
                for (Eigen::Index r = 0; r < v.rows(); ++r) fake_quantize_int4_groups(v.row(r).data(), v.cols(), q.group);
            st.f32.assign(v.data(), v.data() + v.size());
            st.tensor->type = dtype::f32;
            st.tensor->data = reinterpret_cast<const std::byte*>(st.f32.data());
            st.tensor->nbytes = st.f32.size() * sizeof(float);
        }
        bytes_ += static_cast<std::int64_t>(st.tensor->nbytes);
        st.view = whole(*st.tensor);
        v.resize(0, 0);
    }
}

inline forward_options quantized_linears::apply(forward_options base, std::vector<int> keep_down) const
{
    if (base.on_linear) throw input_error("quantized linears: the options already have a linear hook");
    if (!opt_.scheme.changes_anything()) return base;
    const int L = static_cast<int>(sites_.size());
    for (int l : keep_down)
        if (l < 1 || l > L) throw input_error("skip list: layer " + std::to_string(l) + " is not in 1.." + std::to_string(L));
    const auto granularity = opt_.scheme.a == quant_scheme::activations::int8_per_token ? int8_granularity::per_row
                                                                                         : int8_granularity::per_tensor;
    auto kept = [keep_down](const linear_site& s) {
        return s.kind == linear_kind::down && std::find(keep_down.begin(), keep_down.end(), s.layer) != keep_down.end();
    };
    base.replace_linear = [this, kept](const linear_site& s) {
        const site_state* p = find(s);
        if (!p || !p->view || kept(s)) return linear_replacement{};
        return linear_replacement{&*p->view, p->scale.size() ? &p->scale : nullptr};
    };
    base.on_linear_input = [this, granularity, kept](const linear_site& s, row_matrix<float>& x) {
        const site_state* p = find(s);
        if (!p || kept(s)) return;
        if (p->input_divisor.size()) x.array().rowwise() /= p->input_divisor.transpose().array();
        if (p->quantize_input) fake_quantize_int8(x, granularity);
    };
    return base;
}

}  // namespace sdlens
