#pragma once
// The empirical high-norm direction (paper Sec. 3.1, Table 2): every hidden state of every layer
// index 0..L of a corpus whose norm exceeds a threshold is collected; the direction is their
// normalized mean after sign alignment; their spread is the mean pairwise acute angle.
//
// Memory does not grow with the corpus: the mean is a running sum, and the pairwise angle is
// taken over a seeded uniform sample (reservoir sampling) of at most `angle_sample_cap` states;
// below the cap every pair is used.
//
// Automatic threshold (when none is given), chosen on the norms of a calibration set (the first
// `calibration_sequences` sequences): sort every norm; m = their median; among consecutive
// sorted norms a < b with b >= 5 m, take the pair with the largest ratio b / a; if that ratio is
// at least 2 the threshold is sqrt(a b), the geometric middle of the gap, otherwise there are no
// high-norm states (threshold = infinity). High-norm states are tens of times the typical norm
// and separated from it by a gap (LLaMA2-7B: ordinary states ~47, high ~930; the paper's own
// thresholds range from 200 to 8000), so the rule depends on ratios only, not on a model's scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xtensor.hpp>

#include "sdlens/analysis/layer_directions.hpp"
#include "sdlens/analysis/norm_profile.hpp"
#include "sdlens/forward/forward.hpp"

namespace sdlens {

struct threshold_choice {
    double threshold = std::numeric_limits<double>::infinity();  // infinity: no high-norm states
    bool found = false;
    double median = 0;
    double gap_low = 0, gap_high = 0;  // the norms either side of the chosen gap
};

inline threshold_choice automatic_threshold(std::vector<double> norms, double min_multiple = 5, double min_gap = 2)
{
    threshold_choice c;
    if (norms.empty()) return c;
    std::sort(norms.begin(), norms.end());
    c.median = norms[norms.size() / 2];
    double best = 0;
    for (std::size_t i = 0; i + 1 < norms.size(); ++i) {
        const double a = norms[i], b = norms[i + 1];
        if (!(b >= min_multiple * c.median) || !(a > 0)) continue;
        if (b / a > best) best = b / a, c.gap_low = a, c.gap_high = b;
    }
    if (best >= min_gap) {
        c.found = true;
        c.threshold = std::sqrt(c.gap_low * c.gap_high);
    }
    return c;
}

struct empirical_options {
    double threshold = 0;                     // 0 = automatic (above)
    std::int64_t calibration_sequences = 64;  // sequences whose norms set the automatic threshold
    std::int64_t angle_sample_cap = 2048;     // states kept for the pairwise angle
    std::uint64_t seed = 2024;                // of that sample
    forward_options forward;                  // e.g. attention switched off; hidden states are switched on
};

struct high_norm_token {
    int token = 0;
    bool initial = false;     // at position 0
    std::int64_t count = 0;   // positions at which this token was high-norm in some layer
};

struct empirical_result {
    double threshold = 0;
    threshold_choice automatic;  // how the threshold was chosen, when it was
    Eigen::VectorXd direction;   // unit; empty when no state exceeded the threshold
    std::int64_t states = 0;
    double mean_pairwise_angle_deg = 0;
    std::int64_t angle_states = 0;  // states the angle was taken over (all, or the sample)
    bool angle_sampled = false;
    std::vector<std::int64_t> per_layer_count;  // layer index 0..L
    std::int64_t initial_states = 0, non_initial_states = 0;
    std::vector<high_norm_token> tokens;  // most frequent first
    std::int64_t sequences = 0, positions = 0;
};

// Mean over all pairs i < j of the acute angle between rows of X, in degrees (float64 Gram matrix).
inline double mean_pairwise_acute_angle(const Eigen::MatrixXd& rows)
{
    const Eigen::Index n = rows.rows();
    if (n < 2) return 0;
    Eigen::MatrixXd X = rows;
    for (Eigen::Index i = 0; i < n; ++i) X.row(i).normalize();
    const Eigen::MatrixXd G = X * X.transpose();
    double sum = 0;
    for (Eigen::Index j = 1; j < n; ++j)
        for (Eigen::Index i = 0; i < j; ++i) sum += std::acos(std::min(1.0, std::abs(G(i, j))));
    return sum / (0.5 * static_cast<double>(n) * static_cast<double>(n - 1)) * 180 / 3.14159265358979323846;
}

// Collects the high-norm states of one sequence after another.
class empirical_accumulator {
public:
    empirical_accumulator(std::int64_t hidden_size, double threshold, const empirical_options& o = {})
        : d_(hidden_size), threshold_(threshold), cap_(std::max<std::int64_t>(2, o.angle_sample_cap)), rng_(o.seed),
          sum_(Eigen::VectorXd::Zero(hidden_size))
    {
    }

    // Hidden states [L+1, T, d] of one sequence from position 0, and its tokens.
    void add(const xt::xtensor<float, 3>& hidden, const std::vector<int>& tokens)
    {
        const auto layers = static_cast<std::int64_t>(hidden.shape(0)), T = static_cast<std::int64_t>(hidden.shape(1));
        if (static_cast<std::int64_t>(hidden.shape(2)) != d_ || static_cast<std::int64_t>(tokens.size()) != T)
            throw input_error("empirical direction: hidden states do not match the hidden size or the tokens");
        if (static_cast<std::int64_t>(per_layer_.size()) < layers) per_layer_.resize(static_cast<std::size_t>(layers), 0);
        const Eigen::MatrixXd norms = hidden_state_norms(hidden);
        ++sequences_;
        positions_ += T;
        for (std::int64_t t = 0; t < T; ++t) {
            bool high = false;
            for (std::int64_t l = 0; l < layers; ++l) {
                if (!(norms(l, t) > threshold_)) continue;
                high = true;
                const float* p = hidden.data() + (l * T + t) * d_;
                Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXf>(p, d_).cast<double>();
                // Directions have no sign: orient each state like the mean so far.
                if (x.dot(sum_) < 0) x = -x;
                sum_ += x;
                ++per_layer_[static_cast<std::size_t>(l)];
                (t == 0 ? initial_ : non_initial_) += 1;
                keep_for_angles(x);
            }
            if (high) ++tokens_[{tokens[static_cast<std::size_t>(t)], t == 0}];
        }
    }

    empirical_result result() const
    {
        empirical_result r;
        r.threshold = threshold_;
        r.states = seen_;
        r.per_layer_count = per_layer_;
        r.initial_states = initial_;
        r.non_initial_states = non_initial_;
        r.sequences = sequences_;
        r.positions = positions_;
        if (seen_ > 0) r.direction = sum_.normalized();
        r.angle_states = static_cast<std::int64_t>(sample_.size());
        r.angle_sampled = seen_ > static_cast<std::int64_t>(sample_.size());
        if (!sample_.empty()) {
            Eigen::MatrixXd rows(static_cast<Eigen::Index>(sample_.size()), d_);
            for (std::size_t i = 0; i < sample_.size(); ++i) rows.row(static_cast<Eigen::Index>(i)) = sample_[i].cast<double>().transpose();
            r.mean_pairwise_angle_deg = mean_pairwise_acute_angle(rows);
        }
        for (const auto& [key, n] : tokens_) r.tokens.push_back({key.first, key.second, n});
        std::stable_sort(r.tokens.begin(), r.tokens.end(), [](const high_norm_token& a, const high_norm_token& b) { return a.count > b.count; });
        return r;
    }

private:
    void keep_for_angles(const Eigen::VectorXd& x)
    {
        ++seen_;
        if (static_cast<std::int64_t>(sample_.size()) < cap_) {
            sample_.push_back(x.cast<float>());
            return;
        }
        // Algorithm R: the k-th state replaces a kept one with probability cap / k.
        std::uniform_int_distribution<std::int64_t> pick(0, seen_ - 1);
        const std::int64_t j = pick(rng_);
        if (j < cap_) sample_[static_cast<std::size_t>(j)] = x.cast<float>();
    }

    std::int64_t d_;
    double threshold_;
    std::int64_t cap_;
    std::mt19937_64 rng_;
    Eigen::VectorXd sum_;
    std::vector<Eigen::VectorXf> sample_;
    std::int64_t seen_ = 0, initial_ = 0, non_initial_ = 0, sequences_ = 0, positions_ = 0;
    std::vector<std::int64_t> per_layer_;
    std::map<std::pair<int, bool>, std::int64_t> tokens_;
};

// Sequences one at a time (nullopt at the end), e.g. the tokenized lines of a corpus_reader.
using sequence_source = std::function<std::optional<std::vector<int>>()>;
// Called after each sequence: the step ("calibration" or "collection") and sequences done.
using progress_callback = std::function<void(const char* step, std::int64_t done)>;

// Runs every sequence alone from position 0 and collects its high-norm states. With an automatic
// threshold, the calibration sequences run twice (once for their norms, once collected), so that
// nothing but their token ids is kept.
template <class = void>  // compiled where it is called (core/compiled.hpp)
empirical_result empirical_high_norm_direction(const model& m, const sequence_source& next, const empirical_options& o = {},
                                               const progress_callback& progress = {})
{
    forward_options fo = o.forward;
    fo.hidden_states = true;
    fo.logits = forward_options::logits_mode::none;
    auto states_of = [&](const std::vector<int>& tokens) {
        session s(m, fo);
        return s.run(tokens).hidden;
    };
    std::vector<std::vector<int>> calibration;
    threshold_choice choice;
    double threshold = o.threshold;
    if (!(threshold > 0)) {
        std::vector<double> norms;
        while (static_cast<std::int64_t>(calibration.size()) < std::max<std::int64_t>(1, o.calibration_sequences)) {
            auto seq = next();
            if (!seq) break;
            if (seq->empty()) continue;
            const Eigen::MatrixXd n = hidden_state_norms(states_of(*seq));
            norms.insert(norms.end(), n.data(), n.data() + n.size());
            calibration.push_back(std::move(*seq));
            if (progress) progress("calibration", static_cast<std::int64_t>(calibration.size()));
        }
        choice = automatic_threshold(std::move(norms));
        threshold = choice.threshold;
    }
    empirical_accumulator acc(m.config.hidden_size, threshold, o);
    std::int64_t done = 0;
    auto collect = [&](const std::vector<int>& seq) {
        acc.add(states_of(seq), seq);
        if (progress) progress("collection", ++done);
    };
    for (const auto& seq : calibration) collect(seq);
    // No threshold found: nothing can be collected, and the rest of the corpus is not read.
    if (std::isfinite(threshold))
        while (auto seq = next())
            if (!seq->empty()) collect(*seq);
    empirical_result r = acc.result();
    r.automatic = choice;
    return r;
}

}  // namespace sdlens
