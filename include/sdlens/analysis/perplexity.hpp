#pragma once
// Perplexity and the KL divergence of model variants from a reference, over a tokenized corpus,
// in the two protocols people compare with:
//  - hf (Hugging Face's and the paper's): the text tokenized once, BOS once at its start where the
//    model's tokenizer adds it, cut into non-overlapping windows of ctx tokens (the remainder
//    dropped); every token after the first of each window is scored.
//  - llama.cpp (llama-perplexity): the same windows, but the first token of each window is
//    replaced by BOS where the model adds BOS, and only the second half is scored: the logits at
//    positions ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1.
// PPL = exp(mean NLL over the scored tokens). The KL divergence per scored token is
// sum_v p(v) (log p(v) - log q(v)), p the reference's next-token distribution, q the variant's,
// in double from f32 logits (llama.cpp stores the reference as 16-bit log-probabilities and
// skips p < e^-16, so its values differ in the last digits); median and p99 as llama.cpp takes
// them (linear interpolation between sorted values), top-1 agreement the share of scored tokens
// where both argmaxes agree.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "sdlens/core/error.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

enum class ppl_style { hf, llama_cpp };

inline const char* ppl_style_name(ppl_style s) { return s == ppl_style::hf ? "hf" : "llama.cpp"; }
inline ppl_style parse_ppl_style(const std::string& s)
{
    if (s == "hf") return ppl_style::hf;
    if (s == "llama.cpp") return ppl_style::llama_cpp;
    throw input_error("--ppl-style: '" + s + "' is not hf or llama.cpp");
}

// The first position whose logits are scored (they predict the token after it); scoring runs to
// position ctx-2.
inline std::int64_t first_scored_position(std::int64_t ctx, ppl_style s) { return s == ppl_style::hf ? 0 : ctx / 2; }

// The stream's non-overlapping windows of ctx tokens, as the style feeds them to the model.
// bos: the token that replaces each window's first in llama.cpp style, or -1 when the model adds
// no BOS (then windows are the stream's, as in hf style).
inline std::vector<std::vector<int>> perplexity_windows(const std::vector<int>& stream, std::int64_t ctx, ppl_style s, int bos)
{
    if (ctx < 2) throw input_error("--ctx: a window of " + std::to_string(ctx) + " tokens scores nothing");
    std::vector<std::vector<int>> w;
    for (std::size_t i = 0; i + static_cast<std::size_t>(ctx) <= stream.size(); i += static_cast<std::size_t>(ctx)) {
        w.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(i), stream.begin() + static_cast<std::ptrdiff_t>(i + ctx));
        if (s == ppl_style::llama_cpp && bos >= 0) w.back().front() = bos;
    }
    return w;
}

// log(sum exp z) of one row of logits, in double.
inline double log_sum_exp(const Eigen::Ref<const Eigen::VectorXf>& z)
{
    const double mx = static_cast<double>(z.maxCoeff());
    return mx + std::log((z.cast<double>().array() - mx).exp().sum());
}

struct kl_summary {
    double mean = 0, median = 0, p99 = 0, top1_agreement = 0;
};

struct perplexity_result {
    std::int64_t windows = 0, tokens = 0;  // scored tokens
    double nll = 0, ppl = 0;
    double nll_stderr = 0;                 // of the mean NLL, from the per-token spread
    kl_summary kl;                         // against the reference (zero for the reference itself)
    double forward_seconds = 0;            // in this variant's forward passes
};

// linear interpolation between sorted values, as llama.cpp's percentile()
inline double sorted_percentile(const std::vector<double>& sorted, double fraction)
{
    if (sorted.empty()) return 0;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    const double p = fraction * static_cast<double>(sorted.size() - 1);
    const std::size_t i = static_cast<std::size_t>(p);
    const double f = p - static_cast<double>(i);
    return (1 - f) * sorted[i] + f * sorted[std::min(i + 1, sorted.size() - 1)];
}

// Running sums of one variant over the scored tokens.
class perplexity_accumulator {
public:
    // logits: (ctx x vocab) of one window; reference: the reference model's logits of the same
    // window, nullptr for the reference itself. Only the scored rows are read.
    void add_window(const std::vector<int>& window, const row_matrix<float>& logits, std::int64_t first,
                    const row_matrix<float>* reference)
    {
        const std::int64_t ctx = static_cast<std::int64_t>(window.size());
        for (std::int64_t p = first; p + 1 < ctx; ++p) {
            const Eigen::VectorXf z = logits.row(p).transpose();
            const double lse = log_sum_exp(z);
            const double nll = lse - static_cast<double>(z[window[static_cast<std::size_t>(p + 1)]]);
            sum_ += nll, sum2_ += nll * nll, ++n_;
            if (reference) {
                const Eigen::VectorXf zr = reference->row(p).transpose();
                const Eigen::ArrayXd lp = zr.cast<double>().array() - log_sum_exp(zr);
                const Eigen::ArrayXd lq = z.cast<double>().array() - lse;
                const double kl = (lp.exp() * (lp - lq)).sum();
                kl_.push_back(std::max(0.0, kl));  // >= 0 exactly; rounding can give -1e-17
                Eigen::Index a = 0, b = 0;
                zr.maxCoeff(&a);
                z.maxCoeff(&b);
                same_top_ += a == b;
            }
        }
        ++windows_;
    }

    perplexity_result result() const
    {
        perplexity_result r;
        r.windows = windows_;
        r.tokens = n_;
        if (n_ == 0) return r;
        r.nll = sum_ / static_cast<double>(n_);
        r.ppl = std::exp(r.nll);
        const double var = std::max(0.0, sum2_ / static_cast<double>(n_) - r.nll * r.nll);
        r.nll_stderr = n_ > 1 ? std::sqrt(var / static_cast<double>(n_ - 1)) : 0.0;
        if (!kl_.empty()) {
            std::vector<double> s = kl_;
            std::sort(s.begin(), s.end());
            double total = 0;
            for (double v : s) total += v;
            r.kl.mean = total / static_cast<double>(s.size());
            r.kl.median = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
            r.kl.p99 = sorted_percentile(s, 0.99);
            r.kl.top1_agreement = static_cast<double>(same_top_) / static_cast<double>(s.size());
        } else {
            r.kl.top1_agreement = 1;
        }
        return r;
    }

private:
    double sum_ = 0, sum2_ = 0;
    std::int64_t n_ = 0, windows_ = 0, same_top_ = 0;
    std::vector<double> kl_;
};

// Perplexity of the reference (variants[0]) and of every other variant, with each one's KL
// divergence from the reference, one window at a time: the reference's logits of a window are
// kept only while its variants run. Each window is an independent sequence from
// position 0. progress(i, n) after each window.
template <class = void>  // compiled where it is called (core/compiled.hpp)
std::vector<perplexity_result> evaluate_perplexity(const model& m, const std::vector<std::vector<int>>& windows, ppl_style style,
                                                   const std::vector<forward_options>& variants,
                                                   const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    if (variants.empty()) throw input_error("perplexity: no model variant to evaluate");
    std::vector<perplexity_accumulator> acc(variants.size());
    std::vector<double> seconds(variants.size(), 0.0);
    for (std::size_t w = 0; w < windows.size(); ++w) {
        const std::vector<int>& win = windows[w];
        const std::int64_t ctx = static_cast<std::int64_t>(win.size()), first = first_scored_position(ctx, style);
        row_matrix<float> reference;
        for (std::size_t v = 0; v < variants.size(); ++v) {
            forward_options o = variants[v];
            o.logits = forward_options::logits_mode::all;
            o.hidden_states = false;
            const auto start = std::chrono::steady_clock::now();
            forward_result r = forward(m, win, o);
            seconds[v] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            acc[v].add_window(win, r.logits, first, v == 0 ? nullptr : &reference);
            if (v == 0) reference = std::move(r.logits);
        }
        if (progress) progress(static_cast<std::int64_t>(w + 1), static_cast<std::int64_t>(windows.size()));
    }
    std::vector<perplexity_result> out;
    for (std::size_t v = 0; v < acc.size(); ++v) {
        out.push_back(acc[v].result());
        out.back().forward_seconds = seconds[v];
    }
    return out;
}

}  // namespace sdlens
