#pragma once
// Explosion and decay layers, two ways.
//
// Data-free, from the linearization alone: sigma_1 and u_1 of L at every layer. A layer is an
// outlier when its sigma_1 is at least `outlier_multiple` (5) times the median over layers and
// above median + `outlier_mads` (10) median absolute deviations. Outliers are grouped by their
// u_1 (acute angle below `group_angle_deg`, 20 degrees, to the group's strongest layer); the
// largest group (ties: the larger sigma_1) is the singular defect, its strongest layer's u_1 the
// direction. A layer of the group is a decay layer when u^T R u <= -sigma_1 / 2 for that unit
// direction u: the layer sends the direction back with a gain of its own size (at a decay layer
// R u ~ -c u and sigma_1 ~ |1 - c|, so the ratio is ~ -1); an explosion layer otherwise (there R
// writes u from another input, t, and u^T R u is ~0 against sigma_1, of either sign).
// A model without high-norm tokens (BERT in the paper; stories260K here) has no outlier.
//
// From data: the states above a threshold per layer index (an empirical_result): an explosion
// layer l is one where the count rises by at least `jump_fraction` (5%) of the largest count from
// index l-1 to l, a decay layer one where it falls by as much.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "sdlens/analysis/empirical_direction.hpp"
#include "sdlens/analysis/layer_directions.hpp"

namespace sdlens {

struct detect_options {
    double outlier_multiple = 5, outlier_mads = 10, group_angle_deg = 20, jump_fraction = 0.05;
    layer_analysis_options analysis;
};

struct detected_layers {
    const char* method = "data-free";
    std::vector<std::int64_t> explosion_layers, decay_layers;  // 1-based
    Eigen::VectorXd direction;                                  // empty when none found
    Eigen::VectorXd sigma_1;                                    // per layer (data-free)
    Eigen::MatrixXd u_1;                                        // d x L, column l-1 (data-free)
    std::vector<double> rayleigh;                               // u^T R u per layer of the group
    double median_sigma = 0, mad_sigma = 0;
};

template <class = void>  // compiled where it is called (core/compiled.hpp)
detected_layers detect_layers_data_free(const model& m, const detect_options& o = {},
                                        const std::function<void(std::int64_t, std::int64_t)>& progress = {})
{
    const std::int64_t L = static_cast<std::int64_t>(m.layers.size()), d = m.config.hidden_size;
    detected_layers r;
    r.sigma_1.resize(L);
    Eigen::MatrixXd u(d, L);
    layer_analysis_options a = o.analysis;
    a.k = 2;
    for (std::int64_t l = 1; l <= L; ++l) {
        const layer_singular_result s = layer_singular_triplets(m, l, a);
        r.sigma_1[l - 1] = s.sigma[0];
        u.col(l - 1) = s.u.col(0);
        if (progress) progress(l, L);
    }
    r.u_1 = u;
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        const std::size_t n = v.size();
        return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    };
    std::vector<double> s(r.sigma_1.data(), r.sigma_1.data() + L), dev;
    r.median_sigma = median(s);
    for (double x : s) dev.push_back(std::abs(x - r.median_sigma));
    r.mad_sigma = median(dev);
    std::vector<std::int64_t> outliers;
    for (std::int64_t l = 0; l < L; ++l)
        if (s[l] >= o.outlier_multiple * r.median_sigma && s[l] > r.median_sigma + o.outlier_mads * r.mad_sigma) outliers.push_back(l);
    std::sort(outliers.begin(), outliers.end(), [&](std::int64_t x, std::int64_t y) { return s[x] > s[y]; });
    std::vector<std::int64_t> best;
    for (std::int64_t lead : outliers) {
        std::vector<std::int64_t> group;
        for (std::int64_t l : outliers)
            if (acute_angle_degrees(u.col(lead), u.col(l)) < o.group_angle_deg) group.push_back(l);
        if (group.size() > best.size()) best = group;
    }
    if (best.empty()) return r;
    const std::int64_t lead = best.front();  // the strongest: outliers are sorted by sigma_1
    r.direction = u.col(lead);
    std::sort(best.begin(), best.end());
    for (std::int64_t l : best) {
        const linearized_layer<double> lin(m.config, m.layers[static_cast<std::size_t>(l)], o.analysis.linearize);
        const double q = r.direction.dot(lin.apply(layer_map::residual, Eigen::MatrixXd(r.direction)).col(0));
        r.rayleigh.push_back(q);
        (q <= -0.5 * r.sigma_1[l] ? r.decay_layers : r.explosion_layers).push_back(l + 1);
    }
    return r;
}

// From the per-layer counts of a corpus's high-norm states.
inline detected_layers detect_layers_from_counts(const empirical_result& e, const detect_options& o = {})
{
    detected_layers r;
    r.method = "corpus";
    r.direction = e.direction;
    std::int64_t peak = 0;
    for (auto c : e.per_layer_count) peak = std::max(peak, c);
    const double jump = std::max(1.0, o.jump_fraction * static_cast<double>(peak));
    for (std::size_t l = 1; l < e.per_layer_count.size(); ++l) {
        const double change = static_cast<double>(e.per_layer_count[l]) - static_cast<double>(e.per_layer_count[l - 1]);
        if (change >= jump) r.explosion_layers.push_back(static_cast<std::int64_t>(l));
        if (-change >= jump) r.decay_layers.push_back(static_cast<std::int64_t>(l));
    }
    return r;
}

}  // namespace sdlens
