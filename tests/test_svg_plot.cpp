// The report's SVG writer (examples/sdlens/svg_plot.hpp): the text helpers against hand-counted
// strings, and what a chart draws for coinciding series.
#include <regex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "svg_plot.hpp"

namespace svg = sdlens::cli::svg;

TEST_CASE("fit_text keeps short text, cuts long text to the column count, and never splits a UTF-8 character")
{
    CHECK(svg::fit_text("abcdefghij", 10) == "abcdefghij");
    CHECK(svg::fit_text("abcdefghijk", 10) == "abcdefg...");
    CHECK(svg::fit_text("abcdefghijk", 10).size() == 10);
    // "é" is two bytes and one column: ten of them fit in ten columns, eleven are cut after seven.
    std::string e;
    for (int i = 0; i < 10; ++i) e += "\xC3\xA9";
    CHECK(svg::fit_text(e, 10) == e);
    CHECK(svg::fit_text(e + "x", 10) == e.substr(0, 14) + "...");
    CHECK(svg::fit_text("abcdef", 2) == "...");
}

TEST_CASE("line series drawn earlier get larger dots, so coinciding series stay visible")
{
    svg::chart c;
    c.x_label = "layer", c.y_label = "norm";
    for (int s = 0; s < 3; ++s) {
        svg::series line{"s" + std::to_string(s), svg::mark_kind::line, {0, 1, 2}, {5, 50, 5}, ""};
        line.point_markers = true;
        c.data.push_back(line);
    }
    const std::string out = svg::render(c, 0, 0, 400, 300);
    std::regex radius("class=\"dot\"[^>]*r=\"([0-9.]+)\"");
    std::vector<double> radii;
    for (auto it = std::sregex_iterator(out.begin(), out.end(), radius); it != std::sregex_iterator(); ++it) radii.push_back(std::stod((*it)[1]));
    REQUIRE(radii.size() == 9);
    CHECK(radii[0] > radii[3]);
    CHECK(radii[3] > radii[6]);
    CHECK(radii[0] == radii[2]);
}
