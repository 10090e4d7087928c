// sdlens quant-eval and precision-plan: the JSON each prints, llama.cpp's own perplexity of
// stories260K (an outside reference), the precision plan of a planted checkpoint, bad input.
#include <cmath>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "support.hpp"

#ifdef SDLENS_CLI

namespace {

using namespace sdlens::test;

std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

std::optional<std::filesystem::path> tinystories()
{
    auto fx = fixtures_dir();
    if (!fx) return std::nullopt;
    auto p = *fx / "../corpora/tinystories-sample.txt";
    if (!std::filesystem::exists(p)) return std::nullopt;
    return p;
}

}  // namespace

TEST_CASE("quant-eval on stories260K: llama.cpp-style perplexity equals llama-perplexity's")
{
    const auto dir = stories260k();
    const auto corpus = tinystories();
    if (!dir || !corpus) return;
    // llama.cpp (upstream 0253fb21f, built from its public repository outside the project, on an
    // AMD EPYC Zen 4): llama-perplexity -m stories260K.gguf -f tinystories-sample.txt -c 512
    // printed "Final estimate: PPL = 5.3851 +/- 0.11864" over 30 chunks. Its logits are f32 sums
    // in another order; the bound is 0.5%.
    const auto j = cli_json("quant-eval " + q(*dir / "stories260K.gguf") + " --corpus " + q(*corpus) +
                            " --method none --ctx 512 --ppl-style llama.cpp --calib-windows 0");
    CHECK(j["ppl_style"] == "llama.cpp");
    CHECK(j["windows"] == 30);
    CHECK(j["tokens"] == 30 * 255);
    CHECK(std::abs(j["ppl"].get<double>() / 5.3851 - 1) < 0.005);

    // The Table 1 grid: every row over the same windows; the reference has no KL; RTN moves the
    // distribution, and per-channel weights with per-token activations move it less.
    const auto t = cli_json("quant-eval " + q(*dir / "stories260K.gguf") + " --corpus " + q(*corpus) + " --table --ctx 256 --windows 8");
    REQUIRE(t.size() == 7);
    CHECK(t[0]["method"] == "none");
    CHECK(t[0]["kl"]["mean"] == 0.0);
    for (const auto& row : t) CHECK(row["tokens"] == t[0]["tokens"]);
    CHECK(t[1]["method"] == "rtn");
    CHECK(t[1]["kl"]["mean"].get<double>() > 1e-4);
    CHECK(t[5]["method"] == "rtn-per-channel");
    CHECK(t[5]["kl"]["mean"].get<double>() < t[1]["kl"]["mean"].get<double>());
    CHECK(t[3]["method"] == "smoothquant");
    CHECK(t[3]["calibration"]["tokens"] == 4 * 256);
    CHECK(t[2]["skip_source"] == "auto");
    CHECK(t[2]["skip"].empty());  // stories260K has no singular defects
}

TEST_CASE("precision-plan of a planted checkpoint names its explosion and decay layers' ffn_down, in llama.cpp's and its own names")
{
    temp_dir tmp;
    // 8 layers: with 6, E, D and the initial-token trigger layer are half the layers, and the
    // median sigma_1 the outliers are measured against is one of them.
    const auto planted = cli_json("plant --family qwen2 --layers 8 --dtype bf16 --out " + q(tmp / "m"));
    const int E = planted["explosion_layer"], D = planted["decay_layer"];
    const auto r = run_cli("precision-plan " + q(tmp / "m"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == "blk." + std::to_string(E - 1) + ".ffn_down=f16\nblk." + std::to_string(D - 1) + ".ffn_down=f16\n");
    const auto j = run_cli("precision-plan " + q(tmp / "m") + " --format json --type bf16");
    REQUIRE(j.exit_code == 0);
    const auto plan = nlohmann::json::parse(j.out);
    REQUIRE(plan["layers"].size() == 2);
    CHECK(plan["layers"][0]["layer"] == E);
    CHECK(plan["layers"][0]["reason"] == "explosion layer");
    CHECK(plan["layers"][0]["checkpoint_tensor"] == "model.layers." + std::to_string(E - 1) + ".mlp.down_proj.weight");
    CHECK(plan["layers"][1]["reason"] == "decay layer");
    CHECK(plan["tensor_type_lines"][1] == "blk." + std::to_string(D - 1) + ".ffn_down=bf16");
    const auto given = run_cli("precision-plan " + q(tmp / "m") + " --skip 1,3");
    CHECK(given.out == "blk.0.ffn_down=f16\nblk.2.ffn_down=f16\n");
}

TEST_CASE("quant-eval on planted checkpoints of every family: per-tensor W8A8 breaks them, keeping the explosion and decay layers' down projections mends it")
{
    // The exploding neurons' activations set the per-tensor int8 step of E's and D's down
    // projection input, and what those layers do for ordinary tokens rounds to zero: the planted
    // ordinary-token neurons of the RoPE families (plant_ordinary.hpp), GPT-2's random FFN. The
    // kept variant's remaining KL is mostly at trigger positions, so its mean is ~20-40x below
    // the unkept one's (measured) and its median 10^2-10^3x.
    const auto corpus = tinystories();
    if (!corpus) {
        std::fprintf(stderr, "skipped: ../shared/corpora/tinystories-sample.txt is absent\n");
        return;
    }
    for (const std::string family : {"llama", "qwen2", "phi3", "gpt2", "neox"}) {
        CAPTURE(family);
        temp_dir tmp;
        const auto planted = cli_json("plant --family " + family + " --dtype bf16 --out " + q(tmp / "m"));
        const int E = planted["explosion_layer"], D = planted["decay_layer"];
        const auto t = cli_json("quant-eval " + q(tmp / "m") + " --corpus " + q(*corpus) + " --table --windows 40");
        REQUIRE(t.size() == 7);
        CHECK(t[2]["skip"] == std::vector<int>{E, D});
        for (int i : {1, 3}) {  // RTN, SmoothQuant; each followed by its skip variant
            CAPTURE(t[i]["method"].get<std::string>());
            const double mean = t[i]["kl"]["mean"], kept_mean = t[i + 1]["kl"]["mean"];
            const double median = t[i]["kl"]["median"], kept_median = t[i + 1]["kl"]["median"];
            CHECK(mean > 10 * kept_mean);
            CHECK(median > 20 * kept_median);
            CHECK(t[i + 1]["kl"]["top1_agreement"].get<double>() > t[i]["kl"]["top1_agreement"].get<double>());
            CHECK(t[i]["quantized_weight_bytes"] == t[i + 1]["quantized_weight_bytes"]);  // one set of weights for both
        }
    }
}

TEST_CASE("quant-eval --table in groups under a memory budget gives the numbers of one pass")
{
    // Past --memory-gb the methods run in groups, each with the unquantized model again: every
    // forward pass is the same computation on the same bytes, so every number is identical.
    const auto corpus = tinystories();
    if (!corpus) return;
    temp_dir tmp;
    cli_json("plant --family qwen2 --layers 4 --dtype bf16 --out " + q(tmp / "m"));
    const std::string args = "quant-eval " + q(tmp / "m") + " --corpus " + q(*corpus) + " --table --windows 6 --ctx 64";
    const auto whole = cli_json(args);
    const auto r = run_cli(args + " --memory-gb 1e-9 --json");
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("groups, the unquantized model runs once per group") != std::string::npos);
    const auto grouped = nlohmann::json::parse(r.out);
    REQUIRE(grouped.size() == whole.size());
    for (std::size_t i = 0; i < whole.size(); ++i) {
        CAPTURE(i);
        for (const char* k : {"nll", "ppl", "tokens", "quantized_weight_bytes", "method", "skip"}) CHECK(grouped[i][k] == whole[i][k]);
        CHECK(grouped[i]["kl"] == whole[i]["kl"]);
    }
}

TEST_CASE("quant-eval and precision-plan: bad input gets one line and exit code 2")
{
    temp_dir tmp;
    REQUIRE(run_cli("plant --layers 3 --explode 2 --out " + q(tmp / "m")).exit_code == 0);
    {
        std::ofstream(tmp / "short.txt") << "Once upon a time there was a cat.\n";
    }
    const std::string m = q(tmp / "m");
    for (const std::string& args : {"quant-eval " + m + " --corpus " + q(tmp / "absent.txt"),
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt"),
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --ctx 100000",
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --skip 9",
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --skip two",
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --method fp4",
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --ppl-style vllm",
                                    "quant-eval " + m + " --corpus " + q(tmp / "short.txt") + " --table --method rtn",
                                    "precision-plan " + m + " --skip 0",
                                    "precision-plan " + m + " --skip none",
                                    "precision-plan " + m + " --type q4_0",
                                    "precision-plan " + q(tmp / "nothing")}) {
        CAPTURE(args);
        const auto r = run_cli(args);
        CHECK(r.exit_code == 2);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.rfind("sdlens: ", 0) == 0);
    }
}

#endif
