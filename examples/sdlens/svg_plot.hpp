#pragma once
// A tiny SVG chart writer for `sdlens report`: line, scatter and bar series over linear or log
// axes, with ticks, axis labels, a legend, point annotations and reference lines. It knows
// nothing about models; the report feeds it numbers. Every data mark sits inside
// <g class="series" data-label="..."> (scatter: one <circle> per point; bar: one <rect>; line:
// one <polyline> whose points are the data), so a reader (or a test) can count them; points that
// cannot be drawn (NaN, or <= 0 on a log axis) are left out.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace sdlens::cli::svg {

// Text for XML: the five special characters escaped, bytes that are not valid UTF-8 and control
// characters (which XML 1.0 forbids) replaced, since token pieces can hold any bytes.
inline std::string escape(const std::string& s)
{
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) out += "\xEF\xBF\xBD";
                else out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        const std::size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        bool valid = n > 0 && i + n <= s.size();
        for (std::size_t k = 1; valid && k < n; ++k) valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (valid) out.append(s, i, n), i += n;
        else out += "\xEF\xBF\xBD", ++i;
    }
    return out;
}

// A number for an attribute: short, and never "nan" or "inf".
inline std::string num(double v)
{
    if (!std::isfinite(v)) v = 0;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

// A tick label: at most 4 significant digits, no trailing zeros, powers of ten short.
inline std::string tick_text(double v)
{
    if (std::abs(v) < 1e-12) return "0";
    char buf[32];
    const double a = std::abs(v);
    if (a >= 1e5 || a < 1e-3) std::snprintf(buf, sizeof buf, "%.0e", v);
    else std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

enum class scale { linear, log };
enum class mark_kind { line, scatter, bar };

struct series {
    std::string label;
    mark_kind kind = mark_kind::line;
    std::vector<double> x, y;
    std::string color;          // empty: the next of the palette
    double radius = 2.5;        // scatter
    bool point_markers = false;  // line: a dot at each point as well (few points)
};

struct annotation {
    double x = 0, y = 0;
    std::string text, color = "#222";
};

struct reference_line {
    double y = 0;
    std::string label, color = "#888";
};

struct chart {
    std::string title, x_label, y_label;
    scale x_scale = scale::linear, y_scale = scale::linear;
    std::optional<double> x_min, x_max, y_min, y_max;
    bool integer_x = false;  // ticks on whole numbers only (layers, indices)
    std::vector<series> data;
    std::vector<annotation> notes;
    std::vector<reference_line> lines;
};

// Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in print.
inline const char* palette(std::size_t i)
{
    static const char* colors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};
    return colors[i % 8];
}

namespace detail {

struct axis {
    scale s = scale::linear;
    double lo = 0, hi = 1;       // data range shown
    double from = 0, to = 1;     // pixel range
    double map(double v) const
    {
        if (s == scale::log) {
            const double a = std::log10(lo), b = std::log10(hi);
            return from + (std::log10(v) - a) / (b - a) * (to - from);
        }
        return from + (v - lo) / (hi - lo) * (to - from);
    }
    bool drawable(double v) const { return std::isfinite(v) && (s == scale::linear || v > 0); }
};

inline double nice_step(double span, int target)
{
    const double raw = span / std::max(1, target);
    const double p = std::pow(10, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (raw <= m * p) return m * p;
    return 10 * p;
}

inline std::vector<double> ticks(const axis& a, bool integer)
{
    std::vector<double> t;
    if (a.s == scale::log) {
        const int e0 = static_cast<int>(std::floor(std::log10(a.lo) + 1e-9)), e1 = static_cast<int>(std::ceil(std::log10(a.hi) - 1e-9));
        const int stride = std::max(1, (e1 - e0) / 6);
        for (int e = e0; e <= e1; e += stride) {
            const double v = std::pow(10, e);
            if (v >= a.lo * (1 - 1e-9) && v <= a.hi * (1 + 1e-9)) t.push_back(v);
        }
        // Less than a decade: 2 and 5 multiples keep the axis readable.
        if (t.size() < 2)
            for (int e = e0 - 1; e <= e1; ++e)
                for (double m : {2.0, 5.0}) {
                    const double v = m * std::pow(10, e);
                    if (v >= a.lo && v <= a.hi) t.push_back(v);
                }
        std::sort(t.begin(), t.end());
        return t;
    }
    double step = nice_step(a.hi - a.lo, 6);
    if (integer) step = std::max(1.0, std::round(step));
    for (double v = std::ceil(a.lo / step - 1e-9) * step; v <= a.hi + 1e-9 * step; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0 : v);
    return t;
}

// The range that holds every drawable value, padded, or forced by the chart.
inline void fit(axis& a, const std::vector<double>& values, std::optional<double> lo, std::optional<double> hi, bool pad)
{
    double mn = std::numeric_limits<double>::infinity(), mx = -mn;
    for (double v : values)
        if (a.drawable(v)) mn = std::min(mn, v), mx = std::max(mx, v);
    if (!std::isfinite(mn)) mn = a.s == scale::log ? 1 : 0, mx = a.s == scale::log ? 10 : 1;
    if (a.s == scale::log) {
        if (mx <= mn) mn /= 2, mx *= 2;
        if (pad) mn /= 1.5, mx *= 2.5;  // room above for annotations
    } else {
        if (mx <= mn) mn -= 0.5, mx += 0.5;
        else if (pad) {
            const double m = 0.05 * (mx - mn);
            mn -= m, mx += m;
        }
    }
    if (lo && (a.s == scale::linear || *lo > 0)) mn = *lo;
    if (hi) mx = *hi;
    if (mx <= mn) mx = mn + 1;
    a.lo = mn, a.hi = mx;
}

}  // namespace detail

// One chart as a <g> of the given size, its top-left corner at (left, top).
inline std::string render(const chart& c, double left, double top, double width, double height)
{
    constexpr double margin_left = 78, margin_right = 18, margin_top = 46, margin_bottom = 48;
    detail::axis x, y;
    x.s = c.x_scale, y.s = c.y_scale;
    std::vector<double> xs, ys;
    for (const auto& s : c.data) {
        xs.insert(xs.end(), s.x.begin(), s.x.end());
        ys.insert(ys.end(), s.y.begin(), s.y.end());
        if (s.kind == mark_kind::bar && y.s == scale::linear) ys.push_back(0);
    }
    for (const auto& l : c.lines) ys.push_back(l.y);
    detail::fit(x, xs, c.x_min, c.x_max, true);
    detail::fit(y, ys, c.y_min, c.y_max, true);
    const double px0 = left + margin_left, px1 = left + width - margin_right, py0 = top + height - margin_bottom, py1 = top + margin_top;
    x.from = px0, x.to = px1, y.from = py0, y.to = py1;

    std::ostringstream o;
    o << "<g class=\"chart\">\n";
    o << "<rect class=\"plot-area\" x=\"" << num(px0) << "\" y=\"" << num(py1) << "\" width=\"" << num(px1 - px0) << "\" height=\""
      << num(py0 - py1) << "\" fill=\"#fff\" stroke=\"#ccc\"/>\n";
    if (!c.title.empty())
        o << "<text class=\"title\" x=\"" << num(left + margin_left) << "\" y=\"" << num(top + 18) << "\" font-size=\"14\" font-weight=\"bold\">"
          << escape(c.title) << "</text>\n";

    // Axes: grid lines at the ticks, labels with units.
    o << "<g class=\"axis x\">\n<line x1=\"" << num(px0) << "\" y1=\"" << num(py0) << "\" x2=\"" << num(px1) << "\" y2=\"" << num(py0)
      << "\" stroke=\"#333\"/>\n";
    for (double t : detail::ticks(x, c.integer_x)) {
        const double p = x.map(t);
        o << "<line class=\"tick\" x1=\"" << num(p) << "\" y1=\"" << num(py0) << "\" x2=\"" << num(p) << "\" y2=\"" << num(py0 + 5)
          << "\" stroke=\"#333\"/><text x=\"" << num(p) << "\" y=\"" << num(py0 + 18) << "\" font-size=\"11\" text-anchor=\"middle\">"
          << escape(tick_text(t)) << "</text>\n";
    }
    o << "<text class=\"label\" x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num(top + height - 10)
      << "\" font-size=\"12\" text-anchor=\"middle\">" << escape(c.x_label) << "</text>\n</g>\n";
    o << "<g class=\"axis y\">\n<line x1=\"" << num(px0) << "\" y1=\"" << num(py0) << "\" x2=\"" << num(px0) << "\" y2=\"" << num(py1)
      << "\" stroke=\"#333\"/>\n";
    for (double t : detail::ticks(y, false)) {
        const double p = y.map(t);
        o << "<line class=\"grid\" x1=\"" << num(px0) << "\" y1=\"" << num(p) << "\" x2=\"" << num(px1) << "\" y2=\"" << num(p)
          << "\" stroke=\"#eee\"/><line class=\"tick\" x1=\"" << num(px0 - 5) << "\" y1=\"" << num(p) << "\" x2=\"" << num(px0) << "\" y2=\""
          << num(p) << "\" stroke=\"#333\"/><text x=\"" << num(px0 - 8) << "\" y=\"" << num(p + 4)
          << "\" font-size=\"11\" text-anchor=\"end\">" << escape(tick_text(t)) << "</text>\n";
    }
    const double ly = (py0 + py1) / 2, lx = left + 16;
    o << "<text class=\"label\" x=\"" << num(lx) << "\" y=\"" << num(ly) << "\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 "
      << num(lx) << ' ' << num(ly) << ")\">" << escape(c.y_label) << "</text>\n</g>\n";

    // Data, clipped to the plot area.
    static int clip_counter = 0;
    const std::string clip = "clip" + std::to_string(++clip_counter);
    o << "<clipPath id=\"" << clip << "\"><rect x=\"" << num(px0) << "\" y=\"" << num(py1) << "\" width=\"" << num(px1 - px0)
      << "\" height=\"" << num(py0 - py1) << "\"/></clipPath>\n";
    std::vector<std::string> colors;
    for (std::size_t i = 0; i < c.data.size(); ++i) {
        const auto& s = c.data[i];
        const std::string color = s.color.empty() ? palette(i) : s.color;
        colors.push_back(color);
        o << "<g class=\"series\" data-label=\"" << escape(s.label) << "\" data-kind=\""
          << (s.kind == mark_kind::line ? "line" : s.kind == mark_kind::scatter ? "scatter" : "bar") << "\" clip-path=\"url(#" << clip << ")\"";
        const std::size_t n = std::min(s.x.size(), s.y.size());
        if (s.kind == mark_kind::line) {
            // Series drawn earlier get larger dots, so that a token whose norms coincide with a
            // later one's (two high-norm tokens of equal norm) still shows as a ring around it.
            const double marker_radius = 3 + std::min(4.0, static_cast<double>(c.data.size() - 1 - i));
            o << " fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\">\n<polyline points=\"";
            std::string dots;
            bool first = true;
            for (std::size_t k = 0; k < n; ++k) {
                if (!x.drawable(s.x[k]) || !y.drawable(s.y[k])) continue;
                o << (first ? "" : " ") << num(x.map(s.x[k])) << ',' << num(y.map(s.y[k]));
                first = false;
                if (s.point_markers)
                    dots += "<circle class=\"dot\" cx=\"" + num(x.map(s.x[k])) + "\" cy=\"" + num(y.map(s.y[k])) + "\" r=\"" + num(marker_radius) +
                            "\" fill=\"" + color + "\"/>";
            }
            o << "\"/>" << dots << "\n";
        } else if (s.kind == mark_kind::scatter) {
            o << " fill=\"" << color << "\" fill-opacity=\"0.75\">\n";
            for (std::size_t k = 0; k < n; ++k)
                if (x.drawable(s.x[k]) && y.drawable(s.y[k]))
                    o << "<circle cx=\"" << num(x.map(s.x[k])) << "\" cy=\"" << num(y.map(s.y[k])) << "\" r=\"" << num(s.radius) << "\"/>";
            o << "\n";
        } else {
            o << " fill=\"" << color << "\">\n";
            // Bars rise from 0 on a linear axis, from the bottom of a log one.
            const double base = y.s == scale::log ? py0 : y.map(std::clamp(0.0, y.lo, y.hi));
            double w = n > 1 ? 0.7 * (px1 - px0) / static_cast<double>(n) : 20;
            w = std::clamp(w, 1.0, 40.0);
            for (std::size_t k = 0; k < n; ++k) {
                if (!x.drawable(s.x[k]) || !y.drawable(s.y[k])) continue;
                const double cx = x.map(s.x[k]), cy = y.map(s.y[k]);
                o << "<rect x=\"" << num(cx - w / 2) << "\" y=\"" << num(std::min(cy, base)) << "\" width=\"" << num(w) << "\" height=\""
                  << num(std::max(0.5, std::abs(base - cy))) << "\"/>";
            }
            o << "\n";
        }
        o << "</g>\n";
    }

    // Reference lines and annotations over the data; their text gets a white outline, so that it
    // stays readable where it crosses a bar or a line.
    static const char* halo = " paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"3\" stroke-linejoin=\"round\"";
    for (const auto& l : c.lines) {
        if (!y.drawable(l.y) || l.y < y.lo || l.y > y.hi) continue;
        const double p = y.map(l.y);
        o << "<g class=\"reference\"><line x1=\"" << num(px0) << "\" y1=\"" << num(p) << "\" x2=\"" << num(px1) << "\" y2=\"" << num(p)
          << "\" stroke=\"" << l.color << "\" stroke-dasharray=\"6 4\"/><text x=\"" << num(px1 - 4) << "\" y=\"" << num(p - 4)
          << "\" font-size=\"11\" text-anchor=\"end\" fill=\"" << l.color << "\"" << halo << ">" << escape(l.label) << "</text></g>\n";
    }

    // Annotations: a ring on the point and its text beside it, moved down (then up) until it
    // overlaps no text placed before it.
    struct box {
        double x0, x1, y0, y1;
    };
    std::vector<box> placed;
    auto overlaps = [&](const box& b) {
        for (const auto& p : placed)
            if (b.x0 < p.x1 && p.x0 < b.x1 && b.y0 < p.y1 && p.y0 < b.y1) return true;
        return false;
    };
    for (const auto& a : c.notes) {
        if (!x.drawable(a.x) || !y.drawable(a.y)) continue;
        const double cx = x.map(a.x), cy = y.map(std::clamp(a.y, y.lo, y.hi));
        const bool right_half = cx > (px0 + px1) / 2;
        const double tx = right_half ? cx - 10 : cx + 10, w = 6.4 * static_cast<double>(a.text.size()) + 4;
        double ty = std::clamp(cy - 6, py1 + 12, py0 - 4);
        auto at = [&](double t) { return box{right_half ? tx - w : tx, right_half ? tx : tx + w, t - 11, t + 3}; };
        for (int step = 1; overlaps(at(ty)) && step < 40; ++step) {
            const double candidate = std::clamp(cy - 6 + 14.0 * ((step + 1) / 2) * (step % 2 ? 1 : -1), py1 + 12, py0 - 4);
            ty = candidate;
        }
        placed.push_back(at(ty));
        o << "<g class=\"annotation\"><circle cx=\"" << num(cx) << "\" cy=\"" << num(cy) << "\" r=\"5\" fill=\"none\" stroke=\"" << a.color
          << "\"/><line x1=\"" << num(cx) << "\" y1=\"" << num(cy) << "\" x2=\"" << num(tx) << "\" y2=\"" << num(ty - 4) << "\" stroke=\"" << a.color
          << "\" stroke-width=\"0.7\"/><text x=\"" << num(tx) << "\" y=\"" << num(ty) << "\" font-size=\"11\" text-anchor=\""
          << (right_half ? "end" : "start") << "\" fill=\"" << a.color << "\"" << halo << ">" << escape(a.text) << "</text></g>\n";
    }

    // Legend: one row under the title.
    if (!c.data.empty()) {
        o << "<g class=\"legend\">";
        double lx0 = left + margin_left;
        for (std::size_t i = 0; i < c.data.size(); ++i) {
            const double ly0 = top + 36;
            o << "<rect x=\"" << num(lx0) << "\" y=\"" << num(ly0 - 9) << "\" width=\"12\" height=\"10\" fill=\"" << colors[i] << "\"/><text x=\""
              << num(lx0 + 16) << "\" y=\"" << num(ly0) << "\" font-size=\"11\">" << escape(c.data[i].label) << "</text>";
            lx0 += 30 + 6.2 * static_cast<double>(c.data[i].label.size());
        }
        o << "</g>\n";
    }
    o << "</g>\n";
    return o.str();
}

// A figure: charts stacked top to bottom, then lines of text (e.g. generated text), as one <svg>.
struct figure {
    std::string id, title;
    std::vector<chart> panels;
    std::vector<std::string> text_lines;
    double width = 760, panel_height = 320;
};

// At most `columns` characters of `s` (UTF-8 sequences kept whole), "..." marking a cut.
inline std::string fit_text(const std::string& s, std::size_t columns)
{
    auto next = [&](std::size_t i) {
        const auto c = static_cast<unsigned char>(s[i]);
        return std::min(s.size(), i + (c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1));
    };
    std::size_t chars = 0, cut = 0;
    for (std::size_t i = 0; i < s.size(); i = next(i)) {
        if (++chars == columns - std::min<std::size_t>(columns, 3) + 1) cut = i;
        if (chars > columns) return s.substr(0, cut) + "...";
    }
    return s;
}

inline std::string to_svg(const figure& f)
{
    // 12 px monospace runs about 7.2 px a character; the full text is beside the figure in the page.
    const auto text_columns = static_cast<std::size_t>((f.width - 32) / 7.2);
    const double text_height = f.text_lines.empty() ? 0 : 16.0 * static_cast<double>(f.text_lines.size()) + 12;
    const double height = f.panel_height * static_cast<double>(f.panels.size()) + text_height;
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"figure\" id=\"" << escape(f.id) << "\" viewBox=\"0 0 " << num(f.width) << ' '
      << num(height) << "\" width=\"" << num(f.width) << "\" height=\"" << num(height)
      << "\" font-family=\"Helvetica, Arial, sans-serif\" role=\"img\">\n<title>" << escape(f.title) << "</title>\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
    for (std::size_t i = 0; i < f.panels.size(); ++i) o << render(f.panels[i], 0, f.panel_height * static_cast<double>(i), f.width, f.panel_height);
    for (std::size_t i = 0; i < f.text_lines.size(); ++i)
        o << "<text class=\"caption-text\" x=\"16\" y=\"" << num(f.panel_height * static_cast<double>(f.panels.size()) + 18 + 16.0 * static_cast<double>(i))
          << "\" font-size=\"12\" font-family=\"monospace\">" << escape(fit_text(f.text_lines[i], text_columns)) << "</text>\n";
    o << "</svg>\n";
    return o.str();
}

}  // namespace sdlens::cli::svg
