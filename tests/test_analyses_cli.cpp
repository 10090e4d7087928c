// The analysis commands end to end: planted checkpoints written by `sdlens plant` (with their
// tokenizer, so text and corpora work on them), every command's JSON against the ground truth,
// the one-line errors, and stories260K (real, too small to have singular defects).
#ifdef SDLENS_CLI
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/analysis/layer_directions.hpp>

#include "support.hpp"

namespace {

using sdlens::test::run_cli;

std::string q(const std::filesystem::path& p) { return "\"" + p.string() + "\""; }

using sdlens::test::cli_json;

Eigen::VectorXd vec(const nlohmann::json& j)
{
    const auto v = j.get<std::vector<double>>();
    return Eigen::Map<const Eigen::VectorXd>(v.data(), static_cast<Eigen::Index>(v.size()));
}

// A small corpus of the probe kind: sentences ending in '.', the planted delimiter.
std::filesystem::path write_corpus(const sdlens::test::temp_dir& dir)
{
    const auto p = dir / "corpus.txt";
    std::ofstream f(p);
    f << "short\n";  // 5 characters: not a sample
    for (int i = 0; i < 12; ++i) f << "the cat " << i << " sat on a mat. then it ran off\n";
    return p;
}

}  // namespace

TEST_CASE("analysis commands on planted checkpoints find what was planted")
{
    struct family_case {
        const char* family;
        const char* extra;
    };
    for (const family_case fc : {family_case{"llama", ""}, family_case{"qwen2", " --gguf"}, family_case{"gpt2", ""}}) {
        CAPTURE(fc.family);
        sdlens::test::temp_dir dir;
        const auto out = dir / "m";
        const auto planted = cli_json(std::string("plant --family ") + fc.family + " --hidden 72 --heads 4 --layers 6 --explode 2 --decay 5 --vocab 160 --seed 77 --out " +
                                     q(out) + fc.extra);
        const std::string model = q(planted["model"].get<std::string>());
        const Eigen::VectorXd u = vec(planted["direction"]);

        const auto det = cli_json("detect " + model);
        CHECK(det["method"] == "data-free");
        CHECK(det["explosion_layers"] == nlohmann::json::array({2}));
        CHECK(det["decay_layers"] == nlohmann::json::array({5}));

        const auto corpus = write_corpus(dir);
        const auto dir_file = dir / "direction.json";
        const auto emp = cli_json("empirical " + model + " --corpus " + q(corpus) + " --out " + q(dir_file));
        CHECK(emp["sequences"] == 12);
        CHECK(sdlens::acute_angle_degrees(vec(emp["direction"]), u) < 1.0);
        REQUIRE_FALSE(emp["high_norm_tokens"].empty());
        bool period = false;
        for (const auto& t : emp["high_norm_tokens"]) period = period || (t["piece"] == "." && !t["initial"].get<bool>());
        CHECK(period);

        const auto detc = cli_json("detect " + model + " --corpus " + q(corpus));
        CHECK(detc["method"] == "corpus");
        CHECK(detc["explosion_layers"] == nlohmann::json::array({2}));
        CHECK(detc["decay_layers"] == nlohmann::json::array({5}));

        const auto ang = cli_json("angles " + model + " --direction " + q(dir_file));
        REQUIRE(ang["layers"].size() == 6);
        CHECK(ang["layers"][1]["u1_angle_deg"].get<double>() < 2.0);
        CHECK(ang["layers"][4]["u1_angle_deg"].get<double>() < 2.0);
        CHECK(ang["layers"][4]["eigenvalue"][0].get<double>() < 0);
        CHECK(ang["layers"][0]["u1_angle_deg"].get<double>() > 45.0);

        const auto paths = cli_json("paths " + model + " --top 3");
        CHECK(paths["layer"] == 2);
        const auto& top = paths["no_attention"]["top"];
        REQUIRE(!top.empty());
        std::vector<int> triggers = planted["trigger_tokens"].get<std::vector<int>>();
        for (std::size_t i = 0; i < triggers.size(); ++i)
            CHECK(std::find(triggers.begin(), triggers.end(), top[i]["token"].get<int>()) != triggers.end());

        const auto sub = cli_json("subspace " + model + " --k 12");
        CHECK(sub["ratio"].get<double>() >= 10);
        CHECK(sub["plus_norms"].size() == 12);

        const auto coef = cli_json("coefficients " + model);
        CHECK(coef["initial"].size() == coef["tokens"].size());

        const auto abl = cli_json("ablate " + model + " -n 3");
        CHECK(abl["max_norm"].get<double>() > 10 * abl["ablated_max_norm"].get<double>());

        const auto norms = cli_json("norms " + model);
        CHECK(norms["pieces"].back() == ".");
        CHECK(norms["norms"].size() == 7);

        const auto stab = cli_json("stability " + model + " " + model);
        CHECK(stab["pairs"][0]["min_angle_deg"].get<double>() < 1e-6);
    }
}

TEST_CASE("analysis commands: bad input is one line and exit 2")
{
    sdlens::test::temp_dir dir;
    const auto out = dir / "m";
    REQUIRE(run_cli("plant --hidden 32 --layers 4 --explode 2 --decay 3 --out " + q(out)).exit_code == 0);
    const std::string model = q(out);
    {
        std::ofstream(dir / "short.json") << "{\"direction\": [1, 2, 3]}";
        const auto r = run_cli("angles " + model + " --direction " + q(dir / "short.json"));
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("hidden size") != std::string::npos);
    }
    {
        const auto r = run_cli("subspace " + model + " --layer 9");
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("outside 1..4") != std::string::npos);
    }
    {
        std::ofstream(dir / "empty.txt") << "tiny\n\n";
        const auto r = run_cli("empirical " + model + " --corpus " + q(dir / "empty.txt"));
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("no line") != std::string::npos);
    }
    {
        const auto r = run_cli("subspace " + model + " --k many");
        CHECK(r.exit_code == 2);
    }
    {
        const auto r = run_cli("norms " + model + " --frobnicate");
        CHECK(r.exit_code == 2);
    }
    for (const auto& r : {run_cli("subspace " + model + " --layer 9"), run_cli("subspace " + model + " --k many")})
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

TEST_CASE("analysis commands on stories260K: every one runs, and detect finds no explosion layer")
{
    const auto fx = sdlens::test::stories260k();
    if (!fx) return;
    const std::string model = q(*fx / "stories260K.bin"), tok = " --tokenizer " + q(*fx / "tok512.bin");
    const auto det = cli_json("detect " + model);
    CHECK(det["explosion_layers"].empty());
    CHECK(det["decay_layers"].empty());
    sdlens::test::temp_dir dir;
    const auto norms = cli_json("norms " + model + tok);
    CHECK(norms["tokens"][0] == 1);  // llama2.c's tokenizer adds BOS
    const auto emp = cli_json("empirical " + model + tok + " --corpus " + q(*fx / "../../corpora/tinystories-sample.txt") + " --lines 20");
    CHECK(emp["sequences"].get<int>() > 0);
    const auto d = dir / "d.json";
    std::ofstream(d) << nlohmann::json{{"direction", std::vector<double>(64, 1.0)}}.dump();
    CHECK(cli_json("angles " + model + " --direction " + q(d))["layers"].size() == 5);
    CHECK(cli_json("paths " + model + tok + " --layer 1")["no_attention"]["norms"].size() == 512);
    CHECK(cli_json("subspace " + model + " --layer 1 --k all")["sigma"].size() == 64);
    CHECK(cli_json("coefficients " + model + " --layer 1")["tokens"].size() > 400);
    CHECK(cli_json("ablate " + model + tok + " --layer 1 -n 4")["continuation"].size() == 4);
    CHECK(cli_json("stability " + model + " " + model)["pairs"].size() == 1);
    // No explosion layer to default to: the commands that need one say so.
    const auto r = run_cli("subspace " + model);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--layer") != std::string::npos);
}
#endif
