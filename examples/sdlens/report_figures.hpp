#pragma once
// The paper's figures, drawn from the analyses' results for `sdlens report`: each function takes
// results (and token pieces for labels) and returns an svg::figure; nothing here runs a model.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <sdlens/analysis/ablation.hpp>
#include <sdlens/analysis/coefficients.hpp>
#include <sdlens/analysis/exploding_paths.hpp>
#include <sdlens/analysis/explosion_subspace.hpp>
#include <sdlens/analysis/layer_angles.hpp>

#include "svg_plot.hpp"

namespace sdlens::cli::report {

inline std::string degrees(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f\xC2\xB0", v);
    return buf;
}
inline std::string short_number(double v)
{
    char buf[32];
    if (std::abs(v) < 1e-6) return "0";  // rounding noise of an exact zero
    std::snprintf(buf, sizeof buf, std::abs(v) >= 100 ? "%.0f" : "%.3g", v);
    return buf;
}

// Fig. 1 and 10 follow the paper: the first few tokens of the probe and every '.'.
inline std::vector<Eigen::Index> probe_positions(const std::vector<std::string>& pieces, std::size_t first = 4)
{
    std::vector<Eigen::Index> out;
    for (std::size_t t = 0; t < pieces.size(); ++t) {
        const bool period = pieces[t].find('.') != std::string::npos;
        if (t < first || period) out.push_back(static_cast<Eigen::Index>(t));
    }
    return out;
}

inline std::string token_label(const std::vector<std::string>& pieces, Eigen::Index t)
{
    return "'" + pieces[static_cast<std::size_t>(t)] + "' (pos " + std::to_string(t) + ")";
}

inline svg::chart norm_profile_chart(const Eigen::MatrixXd& norms, const std::vector<std::string>& pieces, const std::string& title)
{
    svg::chart c;
    c.title = title;
    c.x_label = "layer index (0 = embeddings, l = output of layer l)";
    c.y_label = "hidden-state norm ||h|| (L2)";
    c.integer_x = true;
    for (Eigen::Index t : probe_positions(pieces)) {
        svg::series s{token_label(pieces, t), svg::mark_kind::line, {}, {}, ""};
        s.point_markers = norms.rows() <= 64;
        for (Eigen::Index l = 0; l < norms.rows(); ++l) s.x.push_back(static_cast<double>(l)), s.y.push_back(norms(l, t));
        c.data.push_back(std::move(s));
    }
    return c;
}

// Fig. 1: the norm of the first tokens and '.' of the probe sentence, per layer.
inline svg::figure fig_norms(const Eigen::MatrixXd& norms, const std::vector<std::string>& pieces)
{
    svg::figure f;
    f.id = "fig-1-norms";
    f.title = "Fig. 1: hidden-state norm per layer of the probe sentence's first tokens and '.'";
    f.panels.push_back(norm_profile_chart(norms, pieces, "Norm per layer, probe sentence"));
    return f;
}

// sigma_1 of L per layer, the data-free detection's evidence (not a figure of the paper).
inline svg::figure fig_sigma(const Eigen::VectorXd& sigma, double median, const std::vector<std::int64_t>& explosion,
                             const std::vector<std::int64_t>& decay)
{
    svg::figure f;
    f.id = "fig-d-sigma";
    f.title = "Data-free detection: largest singular value of each layer's linearization L";
    svg::chart c;
    c.title = "sigma_1 of L per layer";
    c.x_label = "layer (1-based)";
    c.y_label = "sigma_1 of L (gain, unitless)";
    c.y_scale = svg::scale::log;
    c.integer_x = true;
    svg::series s{"sigma_1(L)", svg::mark_kind::bar, {}, {}, "#0072B2"};
    for (Eigen::Index l = 0; l < sigma.size(); ++l) s.x.push_back(static_cast<double>(l + 1)), s.y.push_back(sigma[l]);
    c.data.push_back(std::move(s));
    if (median > 0) c.lines.push_back({5 * median, "5 x median (outlier rule)", "#888"});
    for (auto l : explosion) c.notes.push_back({static_cast<double>(l), sigma[l - 1], "explosion " + std::to_string(l), "#D55E00"});
    for (auto l : decay) c.notes.push_back({static_cast<double>(l), sigma[l - 1], "decay " + std::to_string(l), "#0072B2"});
    f.panels.push_back(std::move(c));
    return f;
}

// Fig. 4: the acute angle between u_1 of each layer and the reference direction.
inline svg::figure fig_u1_angles(const std::vector<layer_angle_row>& rows, const std::string& direction_name,
                                 const std::vector<std::pair<std::int64_t, std::string>>& marked)
{
    svg::figure f;
    f.id = "fig-4-u1-angles";
    f.title = "Fig. 4: acute angle between the layer-wise singular defect direction u_1 and " + direction_name;
    svg::chart c;
    c.title = "Angle of u_1 of L to the reference direction";
    c.x_label = "layer (1-based)";
    c.y_label = "acute angle (degrees)";
    c.integer_x = true;
    c.y_min = 0, c.y_max = 90;
    svg::series s{"u_1 of L", svg::mark_kind::line, {}, {}, ""};
    s.point_markers = rows.size() <= 64;
    for (const auto& r : rows) s.x.push_back(static_cast<double>(r.layer)), s.y.push_back(r.u1_angle_deg);
    c.data.push_back(std::move(s));
    for (const auto& [layer, name] : marked)
        for (const auto& r : rows)
            if (r.layer == layer) c.notes.push_back({static_cast<double>(layer), r.u1_angle_deg, name + " " + std::to_string(layer) + ": " + degrees(r.u1_angle_deg), "#D55E00"});
    f.panels.push_back(std::move(c));
    return f;
}

// Fig. 5: per layer, the smallest angle between an eigenvector of R and the direction, and that
// eigenvector's eigenvalue (real part).
inline svg::figure fig_eigen(const std::vector<layer_angle_row>& rows, const std::vector<std::pair<std::int64_t, std::string>>& marked)
{
    svg::figure f;
    f.id = "fig-5-eigen";
    f.title = "Fig. 5: the eigenvector of R = L - I closest to the reference direction, and its eigenvalue";
    svg::chart a;
    a.title = "Minimum angle between an eigenvector of R and the direction";
    a.x_label = "layer (1-based)";
    a.y_label = "acute angle (degrees)";
    a.integer_x = true;
    a.y_min = 0, a.y_max = 90;
    svg::series angle{"min eigenvector angle", svg::mark_kind::line, {}, {}, "#D55E00"};
    angle.point_markers = rows.size() <= 64;
    svg::chart b;
    b.title = "Eigenvalue of that eigenvector (real part)";
    b.x_label = "layer (1-based)";
    b.y_label = "Re(eigenvalue) (unitless)";
    b.integer_x = true;
    svg::series value{"Re(eigenvalue)", svg::mark_kind::bar, {}, {}, "#0072B2"};
    for (const auto& r : rows) {
        angle.x.push_back(static_cast<double>(r.layer)), angle.y.push_back(r.eig_angle_deg);
        value.x.push_back(static_cast<double>(r.layer)), value.y.push_back(r.eigenvalue.real());
    }
    a.data.push_back(std::move(angle));
    b.data.push_back(std::move(value));
    for (const auto& [layer, name] : marked)
        for (const auto& r : rows)
            if (r.layer == layer) {
                a.notes.push_back({static_cast<double>(layer), r.eig_angle_deg, name + " " + std::to_string(layer) + ": " + degrees(r.eig_angle_deg), "#D55E00"});
                b.notes.push_back({static_cast<double>(layer), r.eigenvalue.real(), name + " " + std::to_string(layer) + ": " + short_number(r.eigenvalue.real()), "#0072B2"});
            }
    f.panels.push_back(std::move(a));
    f.panels.push_back(std::move(b));
    f.panel_height = 280;
    return f;
}

// Fig. 6: every trained token alone without attention, its norm after layer E; the tokens above
// the threshold (the non-initial high-norm tokens) in red, the top five named.
inline svg::figure fig_no_attention(const exploding_paths_result& r, double threshold, const std::vector<std::string>& pieces)
{
    svg::figure f;
    f.id = "fig-6-no-attention";
    f.title = "Fig. 6: attention-independent exploding path: every token alone, all attention removed, norm after layer " + std::to_string(r.layer);
    svg::chart c;
    c.title = "Norm after layer " + std::to_string(r.layer) + " without attention, per vocabulary token";
    c.x_label = "token id";
    c.y_label = "norm after layer " + std::to_string(r.layer) + " (L2, log scale)";
    c.y_scale = svg::scale::log;
    svg::series ordinary{"ordinary tokens", svg::mark_kind::scatter, {}, {}, "#56B4E9"};
    svg::series high{"high-norm without attention (> threshold)", svg::mark_kind::scatter, {}, {}, "#D55E00"};
    ordinary.radius = 1.8, high.radius = 3.5;
    for (Eigen::Index t = 0; t < r.no_attention.size(); ++t) {
        if (!std::isfinite(r.no_attention[t])) continue;
        auto& s = r.no_attention[t] > threshold ? high : ordinary;
        s.x.push_back(static_cast<double>(t)), s.y.push_back(r.no_attention[t]);
    }
    c.data.push_back(std::move(ordinary));
    c.data.push_back(std::move(high));
    if (std::isfinite(threshold)) c.lines.push_back({threshold, "threshold " + short_number(threshold), "#888"});
    for (const auto& t : top_tokens(r.no_attention, 5))
        c.notes.push_back({static_cast<double>(t.token), t.norm, "'" + pieces[static_cast<std::size_t>(t.token)] + "' " + short_number(t.norm),
                           t.norm > threshold ? "#D55E00" : "#222"});
    f.panels.push_back(std::move(c));
    return f;
}

// Fig. 7: every trained token at position 0 (attention on), and random embeddings sorted.
inline svg::figure fig_initial(const exploding_paths_result& r)
{
    svg::figure f;
    f.id = "fig-7-initial";
    f.title = "Fig. 7: attention-related exploding path: every token as the initial token, and random embeddings, norm after layer " +
              std::to_string(r.layer);
    svg::chart a;
    a.title = "Every trained token at position 0";
    a.x_label = "token id";
    a.y_label = "norm after layer " + std::to_string(r.layer) + " (L2, log scale)";
    a.y_scale = svg::scale::log;
    svg::series tokens{"token as the initial token", svg::mark_kind::scatter, {}, {}, "#009E73"};
    tokens.radius = 1.8;
    for (Eigen::Index t = 0; t < r.initial.size(); ++t)
        if (std::isfinite(r.initial[t])) tokens.x.push_back(static_cast<double>(t)), tokens.y.push_back(r.initial[t]);
    a.data.push_back(std::move(tokens));
    svg::chart b;
    b.title = "Random embeddings (scaled to the mean embedding norm) at position 0, sorted";
    b.x_label = "rank (largest first)";
    b.y_label = "norm after layer " + std::to_string(r.layer) + " (L2, log scale)";
    b.y_scale = svg::scale::log;
    svg::series random{"random embedding", svg::mark_kind::line, {}, {}, "#CC79A7"};
    for (Eigen::Index i = 0; i < r.random_sorted.size(); ++i) random.x.push_back(static_cast<double>(i + 1)), random.y.push_back(r.random_sorted[i]);
    b.data.push_back(std::move(random));
    if (r.mean_embedding_norm > 0) {
        a.lines.push_back({r.mean_embedding_norm, "mean embedding norm", "#888"});
        b.lines.push_back({r.mean_embedding_norm, "mean embedding norm", "#888"});
    }
    f.panels.push_back(std::move(a));
    f.panels.push_back(std::move(b));
    f.panel_height = 280;
    return f;
}

// Fig. 8: FFN output norms of the unit inputs +v_i and -v_i.
inline svg::figure fig_subspace(const explosion_subspace_result& r)
{
    svg::figure f;
    f.id = "fig-8-subspace";
    f.title = "Fig. 8: FFN output norm at layer " + std::to_string(r.layer) + " for each right singular vector +-v_i of F";
    svg::chart c;
    c.title = "||FFN(+-v_i)|| at layer " + std::to_string(r.layer);
    c.x_label = "i (right singular vector of F, by singular value)";
    c.y_label = "FFN output norm (L2, log scale)";
    c.y_scale = svg::scale::log;
    c.integer_x = true;
    svg::series plus{"+v_i", svg::mark_kind::scatter, {}, {}, "#0072B2"}, minus{"-v_i", svg::mark_kind::scatter, {}, {}, "#E69F00"};
    plus.radius = minus.radius = 3;
    for (Eigen::Index i = 0; i < r.plus_norms.size(); ++i) {
        plus.x.push_back(static_cast<double>(i + 1)), plus.y.push_back(r.plus_norms[i]);
        minus.x.push_back(static_cast<double>(i + 1)), minus.y.push_back(r.minus_norms[i]);
    }
    c.data.push_back(std::move(plus));
    c.data.push_back(std::move(minus));
    if (r.plus_norms.size()) {
        // Through SwiGLU or GELU often only one sign of v_1 explodes; the note says which.
        const bool minus_larger = r.minus_norms[0] > r.plus_norms[0];
        const double largest = std::max(r.plus_norms[0], r.minus_norms[0]);
        c.notes.push_back({1, largest, std::string(minus_larger ? "-v_1: " : "+v_1: ") + short_number(largest), "#222"});
    }
    f.panels.push_back(std::move(c));
    return f;
}

// Fig. 9: the coefficient on v_1 of each token's FFN input at positions 0 and 1. v_1 has no
// sign; it is oriented so that the initial tokens' mean coefficient is positive.
inline svg::figure fig_coefficients(const coefficients_result& r, const std::string& first_piece)
{
    svg::figure f;
    f.id = "fig-9-coefficients";
    f.title = "Fig. 9: coefficient on v_1 of the FFN input at layer " + std::to_string(r.layer) + ", each token at position 0 and at position 1";
    svg::chart c;
    c.title = "h . v_1 before the FFN of layer " + std::to_string(r.layer);
    c.x_label = "token id";
    c.y_label = "coefficient on v_1 (unitless)";
    const double sign = r.initial.size() && r.initial.mean() < 0 ? -1 : 1;
    svg::series initial{"at position 0 (alone)", svg::mark_kind::scatter, {}, {}, "#D55E00"};
    svg::series second{"at position 1 (after '" + first_piece + "')", svg::mark_kind::scatter, {}, {}, "#0072B2"};
    initial.radius = 3.2;  // drawn first and larger, so that it shows around an equal position-1 value
    second.radius = 1.8;
    for (std::size_t i = 0; i < r.tokens.size(); ++i) {
        const double t = r.tokens[i];
        initial.x.push_back(t), initial.y.push_back(sign * r.initial[static_cast<Eigen::Index>(i)]);
        second.x.push_back(t), second.y.push_back(sign * r.second[static_cast<Eigen::Index>(i)]);
    }
    c.data.push_back(std::move(initial));
    c.data.push_back(std::move(second));
    f.panels.push_back(std::move(c));
    return f;
}

// Fig. 10: the probe's norms with and without v_1 in the FFN input of layer E, and the text each
// generates.
inline svg::figure fig_ablation(const ablation_result& r, const std::vector<std::string>& pieces, const std::string& plain_text,
                                const std::string& ablated_text)
{
    svg::figure f;
    f.id = "fig-10-ablation";
    f.title = "Fig. 10: norms with the explosion subspace v_1 removed before the FFN of layer " + std::to_string(r.layer);
    f.panels.push_back(norm_profile_chart(r.plain.norms, pieces, "Unablated"));
    f.panels.push_back(norm_profile_chart(r.ablated.norms, pieces, "v_1 removed before the FFN of layer " + std::to_string(r.layer)));
    if (!r.plain_continuation.empty() || !r.ablated_continuation.empty()) {
        f.text_lines.push_back("generated, unablated:  " + plain_text);
        f.text_lines.push_back("generated, v_1 removed: " + ablated_text);
    }
    f.panel_height = 280;
    return f;
}

}  // namespace sdlens::cli::report
