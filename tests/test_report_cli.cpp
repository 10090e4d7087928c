// `sdlens report` end to end: on planted checkpoints of every family (whose layers and trigger
// tokens are known) and on stories260K (no defects). Every SVG must parse as XML (xmllint), have
// its axes and one mark per drawable data point; index.html must reference only files that
// exist; headless Chromium must load it without a console message and render a screenshot that
// is not blank. xmllint (libxml2-utils) and chromium are Debian packages that
// scripts/install-deps.sh installs; where one is absent, the checks that need it are skipped
// with a message.
#ifdef SDLENS_CLI
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "support.hpp"

namespace {

using sdlens::test::run_cli;
namespace fs = std::filesystem;

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

using sdlens::test::cli_json;

std::string slurp(const fs::path& p)
{
    std::ifstream f(p, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// stdout of a shell command, and its exit status.
std::pair<int, std::string> shell(const std::string& cmd)
{
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return {-1, out};
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool have(const std::string& program) { return shell("command -v " + program + " >/dev/null 2>&1").first == 0; }

std::string chromium_program()
{
    for (const char* p : {"chromium", "chromium-browser", "google-chrome"})
        if (have(p)) return p;
    return "";
}

std::string xpath(const fs::path& file, const std::string& expr)
{
    std::string out = shell("xmllint --xpath \"" + expr + "\" " + q(file) + " 2>/dev/null").second;
    if (!out.empty() && out.back() == '\n') out.pop_back();  // xmllint ends its answer with one
    return out;
}

double xpath_number(const fs::path& file, const std::string& expr) { return std::atof(xpath(file, "count(" + expr + ")").c_str()); }

// The points of a series that can be drawn: both coordinates present, y > 0 on a log axis.
std::size_t drawable_points(const nlohmann::json& series, bool log_y)
{
    std::size_t n = 0;
    for (std::size_t i = 0; i < series["x"].size() && i < series["y"].size(); ++i) {
        const auto &x = series["x"][i], &y = series["y"][i];
        if (x.is_null() || y.is_null()) continue;
        if (log_y && !(y.get<double>() > 0)) continue;
        ++n;
    }
    return n;
}

// Token pieces reach the SVG escaped the way svg_plot.hpp does it; the test compares text as
// xmllint returns it, i.e. unescaped, so only the characters escape() rewrites matter.
std::string svg_text(const std::string& s)
{
    std::string out;
    for (char c : s) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else out += c;
    }
    return out;
}

// Every figure of report.json against its SVG file: parses, one x and one y axis per panel with
// the labels of report.json, and one mark per drawable point of each series.
void check_figures(const fs::path& out, const nlohmann::json& report)
{
    REQUIRE(have("xmllint"));
    for (const auto& fig : report["figures"]) {
        const fs::path file = out / fig["file"].get<std::string>();
        CAPTURE(file);
        REQUIRE(fs::exists(file));
        CHECK(shell("xmllint --noout " + q(file) + " 2>&1").first == 0);
        const auto& panels = fig["panels"];
        CHECK(xpath_number(file, "//*[local-name()='g'][@class='axis x']") == panels.size());
        CHECK(xpath_number(file, "//*[local-name()='g'][@class='axis y']") == panels.size());
        std::size_t k = 0;
        for (std::size_t p = 0; p < panels.size(); ++p) {
            const auto& panel = panels[p];
            for (const char* axis : {"x", "y"}) {
                const std::string label = panel[std::string(axis) + "_label"].get<std::string>();
                CHECK_FALSE(label.empty());
                CHECK(xpath_number(file, "(//*[local-name()='g'][@class='axis " + std::string(axis) + "'])[" + std::to_string(p + 1) +
                                             "]/*[local-name()='text'][@class='label']") == 1);
            }
            // Ticks: at least two per axis, or the reader cannot read a value off it.
            CHECK(xpath_number(file, "(//*[local-name()='g'][@class='axis y'])[" + std::to_string(p + 1) + "]/*[local-name()='line'][@class='tick']") >= 2);
            for (const auto& s : panel["series"]) {
                ++k;
                CAPTURE(s["label"]);
                const std::string g = "(//*[local-name()='g'][@class='series'])[" + std::to_string(k) + "]";
                CHECK(xpath(file, "string(" + g + "/@data-label)") == svg_text(s["label"].get<std::string>()));
                const std::size_t expected = drawable_points(s, panel["y_scale"] == "log");
                const std::string kind = s["kind"];
                std::size_t marks = 0;
                if (kind == "scatter") marks = static_cast<std::size_t>(xpath_number(file, g + "/*[local-name()='circle']"));
                else if (kind == "bar") marks = static_cast<std::size_t>(xpath_number(file, g + "/*[local-name()='rect']"));
                else {
                    const std::string points = xpath(file, "string(" + g + "/*[local-name()='polyline']/@points)");
                    marks = points.empty() ? 0 : static_cast<std::size_t>(std::count(points.begin(), points.end(), ' ') + 1);
                }
                CHECK(marks == expected);
            }
        }
        CHECK(xpath_number(file, "//*[local-name()='g'][@class='series']") == k);
    }
}


// index.html: no script, nothing fetched from the network, and every file it names exists.
void check_page_references(const fs::path& out)
{
    std::string page = slurp(out / "index.html");
    REQUIRE_FALSE(page.empty());
    CHECK(page.find("<script") == std::string::npos);
    // The SVG namespace is a name, not an address that is fetched.
    const std::string svg_namespace = "xmlns=\"http://www.w3.org/2000/svg\"";
    for (std::size_t at; (at = page.find(svg_namespace)) != std::string::npos;) page.erase(at, svg_namespace.size());
    CHECK(page.find("http://") == std::string::npos);
    CHECK(page.find("https://") == std::string::npos);
    const std::regex ref(R"((?:href|src)=\"([^\"]*)\")");
    int refs = 0;
    for (auto it = std::sregex_iterator(page.begin(), page.end(), ref); it != std::sregex_iterator(); ++it) {
        const std::string target = (*it)[1];
        CAPTURE(target);
        if (!target.empty() && target[0] == '#') continue;
        CHECK(fs::exists(out / target));
        ++refs;
    }
    CHECK(refs > 0);
}

// The fraction of pixels of a PNG that differ from its first pixel, and how many colours it has
// (python3's zlib decodes it; Chromium writes 8-bit RGB or RGBA).
std::pair<double, int> png_colours(const fs::path& png)
{
    const std::string script = R"PY(
import sys, zlib, struct
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n'
i, idat = 8, b''
while i < len(d):
    n, t = struct.unpack('>I4s', d[i:i+8]); c = d[i+8:i+8+n]; i += 12 + n
    if t == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', c[:10])
    elif t == b'IDAT': idat += c
assert depth == 8 and ctype in (2, 6)
bpp = 3 if ctype == 2 else 4
raw, stride, prev, pos, out = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0, []
for y in range(h):
    f = raw[pos]; line = bytearray(raw[pos+1:pos+1+stride]); pos += 1 + stride
    for x in range(stride):
        a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    out.append(bytes(line)); prev = line
px = [r[x:x+3] for r in out[::4] for x in range(0, stride, bpp * 4)]
first = out[0][:3]
print(sum(p != first for p in px) / len(px), len(set(px)))
)PY";
    const fs::path py = png.parent_path() / "png_colours.py";
    std::ofstream(py) << script;
    const auto [rc, text] = shell("python3 " + q(py) + " " + q(png));
    REQUIRE(rc == 0);
    std::istringstream in(text);
    double differing = 0;
    int colours = 0;
    in >> differing >> colours;
    return {differing, colours};
}

struct browser_result {
    bool ran = false;
    std::string log;
    fs::path screenshot;
};

browser_result load_in_chromium(const std::string& chromium, const fs::path& page, const fs::path& work)
{
    browser_result r;
    r.screenshot = work / "shot.png";
    fs::remove(r.screenshot);
    const fs::path log = work / "chromium.log";
    const std::string cmd = "timeout 120 " + chromium + " --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=" +
                            q(work / "profile") + " --enable-logging=stderr --v=0 --window-size=1280,2000 --screenshot=" + q(r.screenshot) +
                            " " + q("file://" + fs::absolute(page).string()) + " >" + q(log) + " 2>&1";
    shell(cmd);
    r.log = slurp(log);
    r.ran = fs::exists(r.screenshot);
    return r;
}

// Console messages (errors included) appear in Chromium's log as "CONSOLE(line)".
bool has_console_message(const std::string& log) { return log.find(":CONSOLE(") != std::string::npos || log.find("Uncaught") != std::string::npos; }

struct planted {
    fs::path model;
    nlohmann::json truth;
};

planted plant(const sdlens::test::temp_dir& dir, const std::string& family, const std::string& extra = "")
{
    const auto out = dir / ("m-" + family);
    planted p;
    p.truth = cli_json("plant --family " + family + " --hidden 64 --heads 4 --layers 6 --explode 2 --decay 5 --vocab 160 --seed 77 --out " + q(out) + extra);
    p.model = p.truth["model"].get<std::string>();
    return p;
}

std::vector<int> ids_of(const nlohmann::json& tokens)
{
    std::vector<int> v;
    for (const auto& t : tokens) v.push_back(t["token"].get<int>());
    return v;
}

}  // namespace

TEST_CASE("report on a planted checkpoint of every family: the summary names the planted layers and trigger tokens")
{
    for (const std::string family : {"llama", "qwen2", "phi3", "neox", "gpt2"}) {
        CAPTURE(family);
        sdlens::test::temp_dir dir;
        const planted p = plant(dir, family);
        const auto out = dir / "report";
        const auto printed = cli_json("report " + q(p.model) + " --out " + q(out) + " -n 4");
        CHECK(printed["index"] == (out / "index.html").string());
        const auto report = nlohmann::json::parse(slurp(out / "report.json"));
        const auto& s = report["summary"];
        const int E = p.truth["explosion_layer"], D = p.truth["decay_layer"];
        CHECK(s["high_norm_found"] == true);
        CHECK(s["data"] == "probe sentence");
        CHECK(s["explosion_layers_data_free"] == nlohmann::json::array({E}));
        CHECK(s["decay_layers_data_free"] == nlohmann::json::array({D}));
        CHECK(s["explosion_layers_from_data"] == nlohmann::json::array({E}));
        CHECK(s["decay_layers_from_data"] == nlohmann::json::array({D}));
        CHECK(s["figure_layer"] == E);

        // Every planted trigger token the probe holds is among the summary's trigger tokens; every
        // one of them explodes without attention (Fig. 6); the page names them by id.
        const std::vector<int> found = ids_of(s["trigger_tokens"]), exploding = ids_of(s["exploding_without_attention"]);
        const std::vector<int> probe = report["probe"]["tokens"].get<std::vector<int>>();
        const std::string page = slurp(out / "index.html");
        int shown = 0;
        for (int t : p.truth["trigger_tokens"].get<std::vector<int>>()) {
            CAPTURE(t);
            CHECK(std::find(exploding.begin(), exploding.end(), t) != exploding.end());
            if (std::find(probe.begin(), probe.end(), t) == probe.end()) continue;
            CHECK(std::find(found.begin(), found.end(), t) != found.end());
            CHECK(page.find("(id " + std::to_string(t) + ",") != std::string::npos);
            ++shown;
        }
        CHECK(shown > 0);  // the probe sentence ends in '.', the planted delimiter
        // GPT-2's planted trigger sits on position 0 itself, so there every token alone explodes,
        // attention or not; elsewhere only the trigger tokens do.
        if (!p.truth["position0_triggers"].get<bool>())
            for (int t : exploding) {
                const auto triggers = p.truth["trigger_tokens"].get<std::vector<int>>();
                CHECK(std::find(triggers.begin(), triggers.end(), t) != triggers.end());
            }
        // The planted layers are the small angles of Fig. 4, and the decay layer's eigenvalue is negative (Fig. 5).
        for (const auto& row : s["angles_at_detected_layers"]) {
            CHECK(row["u1_angle_deg"].get<double>() < 5);
            if (row["role"] == "decay") CHECK(row["eigenvalue_real"].get<double>() < 0);
        }
        CHECK(page.find("Explosion / decay layers, data-free (1-based)</th><td>" + std::to_string(E) + " / " + std::to_string(D)) != std::string::npos);
        CHECK(page.find("probe sentence") != std::string::npos);

        // The figures the issue asks for, each as a file and inline.
        std::set<std::string> ids;
        for (const auto& f : report["figures"]) ids.insert(f["id"].get<std::string>());
        for (const char* id : {"fig-1-norms", "fig-4-u1-angles", "fig-5-eigen", "fig-6-no-attention", "fig-7-initial", "fig-8-subspace",
                               "fig-9-coefficients", "fig-10-ablation"}) {
            CAPTURE(id);
            CHECK(ids.count(id) == 1);
            CHECK(page.find("id=\"" + std::string(id) + "\"") != std::string::npos);
        }
        CHECK(report["steps"].size() == 9);
        CHECK(report["sdlens_version"].is_string());
        CHECK(report["model"]["family"] == family);
        check_figures(out, report);
        check_page_references(out);
    }
}

TEST_CASE("report figures hold one mark per data point, against the individual commands")
{
    sdlens::test::temp_dir dir;
    const planted p = plant(dir, "llama");
    const auto out = dir / "report";
    cli_json("report " + q(p.model) + " --out " + q(out) + " -n 0");
    const auto report = nlohmann::json::parse(slurp(out / "report.json"));
    auto figure = [&](const std::string& id) {
        for (const auto& f : report["figures"])
            if (f["id"] == id) return f;
        FAIL("no figure " << id);
        return nlohmann::json();
    };
    auto marks = [](const nlohmann::json& panel) {
        std::size_t n = 0;
        for (const auto& s : panel["series"]) n += drawable_points(s, panel["y_scale"] == "log");
        return n;
    };
    const std::size_t layers = p.truth["config"]["num_layers"];
    // Fig. 1: one line per chosen token, layer indices 0..L; the probe's '.' among them.
    const auto norms = cli_json("norms " + q(p.model));
    const nlohmann::json fig1 = figure("fig-1-norms")["panels"][0]["series"];
    for (const auto& s : fig1) CHECK(s["x"].size() == layers + 1);
    CHECK(fig1.back()["label"].get<std::string>().find("'.'") == 0);
    CHECK(fig1.back()["y"][2].get<double>() == doctest::Approx(norms["norms"][2].back().get<double>()).epsilon(1e-9));
    // Fig. 4 and 5: every layer.
    CHECK(marks(figure("fig-4-u1-angles")["panels"][0]) == layers);
    CHECK(marks(figure("fig-5-eigen")["panels"][1]) == layers);
    // Fig. 6 and 7: every trained token, as `sdlens paths` counts them.
    const auto paths = cli_json("paths " + q(p.model) + " --layer 2");
    std::size_t trained = 0;
    for (const auto& v : paths["no_attention"]["norms"]) trained += !v.is_null();
    CHECK(marks(figure("fig-6-no-attention")["panels"][0]) == trained);
    CHECK(marks(figure("fig-7-initial")["panels"][0]) == trained);
    CHECK(marks(figure("fig-7-initial")["panels"][1]) == paths["random"]["sorted_norms"].size());
    // Fig. 6's red tokens: exactly the planted triggers.
    std::vector<int> red;
    const nlohmann::json red_x = figure("fig-6-no-attention")["panels"][0]["series"][1]["x"];
    for (const auto& x : red_x) red.push_back(static_cast<int>(x.get<double>()));
    auto triggers = p.truth["trigger_tokens"].get<std::vector<int>>();
    std::sort(red.begin(), red.end());
    std::sort(triggers.begin(), triggers.end());
    CHECK(red == triggers);
    // Fig. 8: +-v_i for i = 1..min(64, d); v_1 far above the rest.
    const nlohmann::json fig8 = figure("fig-8-subspace")["panels"][0];
    CHECK(marks(fig8) == 2 * 64);
    const auto sub = cli_json("subspace " + q(p.model) + " --layer 2 --k 64");
    CHECK(fig8["series"][0]["y"][0].get<double>() == doctest::Approx(sub["plus_norms"][0].get<double>()).epsilon(1e-6));
    // Fig. 9: two coefficients per trained token.
    const auto coef = cli_json("coefficients " + q(p.model) + " --layer 2");
    CHECK(marks(figure("fig-9-coefficients")["panels"][0]) == 2 * coef["tokens"].size());
    check_figures(out, report);
}

TEST_CASE("report with a corpus takes the layers and trigger tokens from it")
{
    sdlens::test::temp_dir dir;
    const planted p = plant(dir, "qwen2", " --gguf");
    const auto corpus = dir / "corpus.txt";
    {
        std::ofstream f(corpus);
        for (int i = 0; i < 12; ++i) f << "the cat " << i << " sat on a mat. then it ran off\n";
    }
    const auto out = dir / "report";
    cli_json("report " + q(p.model) + " --corpus " + q(corpus) + " --out " + q(out) + " -n 2");
    const auto report = nlohmann::json::parse(slurp(out / "report.json"));
    const auto& s = report["summary"];
    CHECK(s["data"] == "corpus");
    CHECK(s["explosion_layers_from_data"] == nlohmann::json::array({2}));
    CHECK(s["decay_layers_from_data"] == nlohmann::json::array({5}));
    CHECK(report["empirical"]["sequences"] == 12);
    bool period = false;
    for (const auto& t : s["trigger_tokens"]) period = period || (t["piece"] == "." && t["initial"] == false);
    CHECK(period);
    const std::string page = slurp(out / "index.html");
    CHECK(page.find("the corpus (12 lines)") != std::string::npos);
    CHECK(page.find("No --corpus was given") == std::string::npos);
    check_figures(out, report);
}

TEST_CASE("report page loads in headless Chromium without console messages and renders")
{
    const std::string chromium = chromium_program();
    if (chromium.empty()) {
        MESSAGE("skipped: no chromium on PATH (Debian package 'chromium'; scripts/install-deps.sh installs it)");
        return;
    }
    sdlens::test::temp_dir dir;
    const planted p = plant(dir, "llama");
    const auto out = dir / "report";
    cli_json("report " + q(p.model) + " --out " + q(out));

    // The two ways of failing that the check must catch: a console error, and a blank page.
    const auto bad = dir / "bad.html";
    std::ofstream(bad) << "<!DOCTYPE html><html><body><script>undefined_function();</script></body></html>";
    const auto bad_run = load_in_chromium(chromium, bad, dir.path());
    REQUIRE(bad_run.ran);
    CHECK(has_console_message(bad_run.log));
    const auto blank = dir / "blank.html";
    std::ofstream(blank) << "<!DOCTYPE html><html><body></body></html>";
    const auto blank_run = load_in_chromium(chromium, blank, dir.path());
    REQUIRE(blank_run.ran);
    CHECK(png_colours(blank_run.screenshot).second == 1);

    const auto run = load_in_chromium(chromium, out / "index.html", dir.path());
    INFO(run.log);
    REQUIRE(run.ran);
    CHECK_FALSE(has_console_message(run.log));
    const auto [differing, colours] = png_colours(run.screenshot);
    CHECK(differing > 0.02);  // text, plot areas and marks cover more than 2% of the first 2000 px
    CHECK(colours >= 8);      // the palette's colours, greys and anti-aliasing
}

TEST_CASE("report on stories260K says that no high-norm tokens were found, and still draws the norms and angles")
{
    const auto fx = sdlens::test::stories260k();
    if (!fx) return;
    sdlens::test::temp_dir dir;
    const auto out = dir / "report";
    cli_json("report " + q(*fx / "stories260K.bin") + " --tokenizer " + q(*fx / "tok512.bin") + " --out " + q(out));
    const auto report = nlohmann::json::parse(slurp(out / "report.json"));
    CHECK(report["summary"]["high_norm_found"] == false);
    CHECK(report["summary"]["explosion_layers_data_free"].empty());
    std::set<std::string> ids;
    for (const auto& f : report["figures"]) ids.insert(f["id"].get<std::string>());
    CHECK(ids.count("fig-1-norms") == 1);
    CHECK(ids.count("fig-4-u1-angles") == 1);
    CHECK(ids.count("fig-5-eigen") == 1);
    CHECK(ids.count("fig-6-no-attention") == 0);
    const std::string page = slurp(out / "index.html");
    CHECK(page.find("No high-norm tokens were found") != std::string::npos);
    check_figures(out, report);
    check_page_references(out);
}

TEST_CASE("report: bad input is one line and exit 2")
{
    sdlens::test::temp_dir dir;
    {
        const auto r = run_cli("report " + q(dir / "missing") + " --out " + q(dir / "r"));
        CHECK(r.exit_code == 2);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    const planted p = plant(dir, "llama");
    {
        const auto r = run_cli("report " + q(p.model) + " --layer 9 --out " + q(dir / "r"));
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("outside 1..6") != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    {
        const auto r = run_cli("report " + q(p.model) + " --corpus " + q(dir / "no-such-corpus.txt") + " --out " + q(dir / "r"));
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("no-such-corpus.txt") != std::string::npos);
    }
}
#endif
