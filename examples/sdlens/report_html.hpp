#pragma once
// The page of `sdlens report`: a summary table, notes, and the figures (inline SVG, each with a
// caption and a link to its standalone file), with CSS for a laptop screen and for print. No
// script, no fonts or images fetched: it reads offline and prints as it looks.
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "svg_plot.hpp"

namespace sdlens::cli::html {

using svg::escape;

struct summary_row {
    std::string label, value;  // plain text, escaped here
};

struct figure_entry {
    std::string file;     // the standalone SVG, relative to index.html
    std::string svg;      // the same SVG, inlined
    std::string heading;  // "Fig. 4: ..."
    std::string caption;  // one sentence: what to look for
    std::vector<std::pair<std::string, std::string>> texts;  // (heading, text) side by side under it, e.g. generated text
};

struct page {
    std::string title, headline;  // headline: the finding in one sentence
    std::vector<summary_row> summary;
    std::vector<std::string> notes;
    std::vector<figure_entry> figures;
};

inline const char* stylesheet()
{
    return R"(body{font-family:Helvetica,Arial,sans-serif;color:#222;margin:0 auto;padding:16px 20px;max-width:1000px;line-height:1.4}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:24px 0 6px}h3{font-size:14px;margin:4px 0}
p.headline{font-size:16px;background:#f3f6fa;border-left:4px solid #0072B2;padding:8px 12px}
table.summary{border-collapse:collapse;width:100%;font-size:14px}
table.summary th{text-align:left;vertical-align:top;width:32%;padding:4px 8px;background:#fafafa;border-bottom:1px solid #e4e4e4;font-weight:600}
table.summary td{padding:4px 8px;border-bottom:1px solid #e4e4e4;word-break:break-word}
ul.notes{font-size:14px;color:#444}
figure{margin:18px 0;break-inside:avoid;page-break-inside:avoid}
figure svg{width:100%;height:auto;max-width:100%;border:1px solid #eee}
figcaption{font-size:14px;margin-top:4px}figcaption a{color:#0072B2;font-size:12px}
div.texts{display:flex;flex-wrap:wrap;gap:12px}div.texts div{flex:1 1 300px}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:8px;font-size:13px;border:1px solid #e4e4e4}
@media print{body{max-width:none;padding:0}a{color:inherit;text-decoration:none}h2{break-after:avoid}}
)";
}

inline std::string to_html(const page& p)
{
    std::ostringstream o;
    o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<title>" << escape(p.title) << "</title>\n<style>\n" << stylesheet() << "</style>\n</head>\n<body>\n"
      << "<h1>" << escape(p.title) << "</h1>\n<p class=\"headline\">" << escape(p.headline) << "</p>\n"
      << "<table class=\"summary\">\n";
    for (const auto& r : p.summary) o << "<tr><th>" << escape(r.label) << "</th><td>" << escape(r.value) << "</td></tr>\n";
    o << "</table>\n";
    if (!p.notes.empty()) {
        o << "<ul class=\"notes\">\n";
        for (const auto& n : p.notes) o << "<li>" << escape(n) << "</li>\n";
        o << "</ul>\n";
    }
    for (const auto& f : p.figures) {
        o << "<h2>" << escape(f.heading) << "</h2>\n<figure>\n" << f.svg << "<figcaption>" << escape(f.caption) << " <a href=\""
          << escape(f.file) << "\">(" << escape(f.file) << ")</a></figcaption>\n</figure>\n";
        if (f.texts.empty()) continue;
        o << "<div class=\"texts\">\n";
        for (const auto& [heading, text] : f.texts) o << "<div><h3>" << escape(heading) << "</h3><pre>" << escape(text) << "</pre></div>\n";
        o << "</div>\n";
    }
    o << "</body>\n</html>\n";
    return o.str();
}

}  // namespace sdlens::cli::html
