// sdlens quant-eval MODEL --corpus FILE: perplexity and KL divergence of a fake-quantized model
// (W8A8 RTN, SmoothQuant, per-channel, W4 g128), with the explosion and decay layers' down
// projections kept or not (paper Sec. 5.1, Table 1); --table runs the whole grid in one pass.
// sdlens precision-plan MODEL: those layers' tensors, as llama-quantize's --tensor-type-file.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <sdlens/analysis/fake_quantization.hpp>
#include <sdlens/analysis/perplexity.hpp>
#include <sdlens/analysis/precision_plan.hpp>
#include <sdlens/io/corpus.hpp>

#include "analysis_cli.hpp"

namespace sdlens::cli {

namespace {

double physical_memory_bytes()
{
    const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? static_cast<double>(pages) * static_cast<double>(size) : 8e9;
}

// --skip auto|none|LIST, resolved against the model.
precision_plan resolve_skip(const model& m, const std::string& skip, const std::string& command)
{
    if (skip == "none") return precision_plan_from_list(m, {});
    if (skip == "auto") {
        progress_meter meter(command);
        return precision_plan_auto(m, {}, [&](std::int64_t i, std::int64_t n) { meter("finding explosion and decay layers, layer", i, n); });
    }
    const std::vector<int> layers = parse_int_list(skip, "--skip", "layer number (1-based), or auto, or none");
    for (int l : layers)
        if (l < 1 || l > static_cast<int>(m.layers.size()))
            fail_input("--skip", "layer " + std::to_string(l) + " is not in 1.." + std::to_string(m.layers.size()));
    return precision_plan_from_list(m, layers);
}

nlohmann::json plan_json(const precision_plan& p)
{
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& c : p.layers) {
        nlohmann::json j{{"layer", c.layer}, {"reason", c.reason}, {"checkpoint_tensor", c.checkpoint_tensor}, {"gguf_tensor", c.gguf_tensor}};
        if (c.sigma_1 > 0) j["sigma_1"] = c.sigma_1;
        layers.push_back(j);
    }
    nlohmann::json j{{"source", p.source}, {"layers", layers}};
    if (p.source == "auto") j["median_sigma_1"] = p.median_sigma;
    return j;
}

struct quant_eval_args {
    std::string model, tokenizer, corpus, method = "rtn", skip, style = "hf";
    std::int64_t ctx = 0, windows = 0, calib_windows = 4;
    std::uint64_t seed = 0;
    double alpha = 0.5, memory_gb = 0;
    bool table = false, json = false;
    bos_choice bos;
};

// One row of the evaluation: a method and the down projections it keeps.
struct variant {
    quant_method method;
    precision_plan skip;
};

// A seeded sample of n of the indices [lo, hi), in increasing order (Fisher-Yates on mt19937_64's
// outputs, which the standard fixes, unlike std::shuffle's use of them).
std::vector<std::size_t> seeded_sample(std::size_t lo, std::size_t hi, std::size_t n, std::uint64_t seed)
{
    std::vector<std::size_t> idx(hi - lo);
    std::iota(idx.begin(), idx.end(), lo);
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < n && i + 1 < idx.size(); ++i) std::swap(idx[i], idx[i + rng() % (idx.size() - i)]);
    idx.resize(n);
    std::sort(idx.begin(), idx.end());
    return idx;
}

void run_quant_eval(const quant_eval_args& a)
{
    const loaded_model lm = load_with_tokenizer(a.model, a.tokenizer);
    const model& m = lm.m;
    const tokenizer& tok = need_tokenizer(lm, "");
    const ppl_style style = parse_ppl_style(a.style);
    const quant_method single = parse_quant_method(a.method);

    const std::int64_t context = m.config.max_positions > 0 ? m.config.max_positions : 2048;
    const std::int64_t ctx = a.ctx > 0 ? a.ctx : std::min<std::int64_t>(2048, context);
    if (ctx > context)
        fail_input("--ctx", std::to_string(ctx) + " tokens exceed the model's context of " + std::to_string(context) + " positions");

    std::string text = read_text_file(a.corpus);
    if (style == ppl_style::llama_cpp && !text.empty() && text.back() == '\n') text.pop_back();  // as llama.cpp's -f does
    const bool adds_bos = a.bos.adds(tok);
    const std::vector<int> stream = tok.encode(text, adds_bos);
    const std::vector<std::vector<int>> all = perplexity_windows(stream, ctx, style, adds_bos ? tok.bos() : -1);

    // The evaluated windows come first; the calibration sample is drawn from the rest.
    const std::int64_t total = static_cast<std::int64_t>(all.size());
    const std::int64_t n_eval = a.windows > 0 ? a.windows : total - a.calib_windows;
    if (n_eval < 1 || n_eval + a.calib_windows > total)
        fail_input(a.corpus, std::to_string(stream.size()) + " tokens make " + std::to_string(total) + " windows of " +
                                 std::to_string(ctx) + ", too few for " + (a.windows > 0 ? std::to_string(a.windows) : std::string("one")) +
                                 " evaluated and " + std::to_string(a.calib_windows) +
                                 " calibration windows (lower --ctx, --windows or --calib-windows)");
    const std::vector<std::vector<int>> eval(all.begin(), all.begin() + n_eval);

    std::vector<quant_method> methods;
    std::vector<bool> with_skip;
    if (a.table) {
        methods = {quant_method::rtn, quant_method::rtn, quant_method::smoothquant, quant_method::smoothquant,
                   quant_method::rtn_per_channel, quant_method::w4g128};
        with_skip = {false, true, false, true, false, false};
    } else if (single != quant_method::none) {
        methods = {single};
        with_skip = {true};
    }
    const std::string skip_arg = !a.skip.empty() ? a.skip : a.table ? "auto" : "none";
    const precision_plan skip_plan = resolve_skip(m, skip_arg, "quant-eval");
    const precision_plan no_skip = precision_plan_from_list(m, {});

    bool smooth = false;
    for (quant_method q : methods) smooth = smooth || q == quant_method::smoothquant;
    activation_maxima maxima;
    std::vector<std::size_t> calib_idx;
    if (smooth) {
        if (a.calib_windows < 1) fail_input("--calib-windows", "SmoothQuant needs at least one calibration window");
        calib_idx = seeded_sample(static_cast<std::size_t>(n_eval), all.size(), static_cast<std::size_t>(a.calib_windows), a.seed);
        std::vector<std::vector<int>> calib;
        for (std::size_t i : calib_idx) calib.push_back(all[i]);
        progress_meter meter("quant-eval");
        maxima = calibrate_activation_maxima(m, calib, [&](std::int64_t i, std::int64_t n) { meter("calibrating, window", i, n); });
    }

    // Variants of one method share its quantized weights (the skip list only routes the kept down
    // projections to the stored ones). Methods are evaluated together while their weights fit the
    // memory budget; past it, in groups, each running the unquantized model again for its KL.
    std::vector<variant> variants;
    variants.push_back({quant_method::none, no_skip});
    std::vector<quant_method> distinct;
    for (std::size_t i = 0; i < methods.size(); ++i) {
        variants.push_back({methods[i], with_skip[i] ? skip_plan : no_skip});
        if (std::find(distinct.begin(), distinct.end(), methods[i]) == distinct.end()) distinct.push_back(methods[i]);
    }
    auto options_of = [&](quant_method q) {
        quantization_options qo;
        qo.scheme = quant_scheme::of(q, a.alpha);
        return qo;
    };
    const double budget = a.memory_gb > 0 ? a.memory_gb * 1e9 : 0.5 * physical_memory_bytes();
    std::vector<std::vector<quant_method>> groups;
    double group_bytes = 0, all_bytes = 0;
    for (quant_method q : distinct) {
        const double bytes = static_cast<double>(quantized_weight_bytes(m, options_of(q)));
        all_bytes += bytes;
        if (groups.empty() || group_bytes + bytes > budget) groups.emplace_back(), group_bytes = 0;
        groups.back().push_back(q);
        group_bytes += bytes;
    }
    if (groups.size() > 1)
        std::fprintf(stderr,
                     "quant-eval: the quantized weights of all methods take %.1f GB, over the budget of %.1f GB (--memory-gb): "
                     "%zu groups, the unquantized model runs once per group\n",
                     all_bytes / 1e9, budget / 1e9, groups.size());

    std::vector<perplexity_result> results(variants.size());
    std::vector<std::int64_t> weight_bytes(variants.size(), 0);
    for (std::size_t g = 0; g < std::max<std::size_t>(1, groups.size()); ++g) {
        std::vector<std::unique_ptr<quantized_linears>> held;
        std::vector<std::size_t> index{0};  // variants evaluated in this group; the reference first
        std::vector<forward_options> options{forward_options{}};
        for (quant_method q : groups.empty() ? std::vector<quant_method>{} : groups[g]) {
            held.push_back(std::make_unique<quantized_linears>(m, options_of(q), &maxima));
            for (std::size_t i = 1; i < variants.size(); ++i)
                if (variants[i].method == q) {
                    index.push_back(i);
                    options.push_back(held.back()->apply({}, variants[i].skip.layer_numbers()));
                    weight_bytes[i] = held.back()->weight_bytes();
                }
        }
        progress_meter meter("quant-eval");
        const std::string what = "evaluating " + std::to_string(options.size()) + " variants" +
                                 (groups.size() > 1 ? " (group " + std::to_string(g + 1) + " of " + std::to_string(groups.size()) + ")" : "") +
                                 ", window";
        const std::vector<perplexity_result> r =
            evaluate_perplexity(m, eval, style, options, [&](std::int64_t i, std::int64_t n) { meter(what, i, n); });
        for (std::size_t j = 0; j < index.size(); ++j)
            if (g == 0 || j > 0) results[index[j]] = r[j];
    }

    auto row_json = [&](std::size_t i) {
        const perplexity_result& r = results[i];
        const variant& v = variants[i];
        const double scored_tokens_per_s = r.forward_seconds > 0 ? static_cast<double>(r.windows * ctx) / r.forward_seconds : 0;
        nlohmann::json j{{"method", quant_method_name(v.method)},
                         {"skip", v.skip.layer_numbers()},
                         {"skip_source", v.skip.source},
                         {"ctx", ctx},
                         {"windows", r.windows},
                         {"tokens", r.tokens},
                         {"ppl_style", ppl_style_name(style)},
                         {"nll", r.nll},
                         {"nll_stderr", r.nll_stderr},
                         {"ppl", r.ppl},
                         {"kl", {{"mean", r.kl.mean}, {"median", r.kl.median}, {"p99", r.kl.p99}, {"top1_agreement", r.kl.top1_agreement}}},
                         {"forward_tokens_per_second", scored_tokens_per_s},
                         {"quantized_weight_bytes", weight_bytes[i]}};
        if (v.method == quant_method::smoothquant)
            j["calibration"] = {{"windows", calib_idx}, {"tokens", maxima.tokens}, {"seed", a.seed}, {"alpha", a.alpha}};
        return j;
    };
    nlohmann::json j;
    if (a.table) {
        j = nlohmann::json::array();
        for (std::size_t i = 0; i < variants.size(); ++i) j.push_back(row_json(i));
    } else {
        j = row_json(variants.size() - 1);
        j["reference"] = {{"nll", results[0].nll}, {"ppl", results[0].ppl}};
    }
    emit(a.json, j, [&](std::ostream& out) {
        out << "perplexity, " << ppl_style_name(style) << " style ("
            << (style == ppl_style::hf ? "every token after the first of each window" : "the second half of each window")
            << "), " << n_eval << " windows of " << ctx << " tokens, " << results[0].tokens << " scored\n";
        if (!skip_plan.layers.empty() && (a.table || single != quant_method::none)) {
            out << "kept in the checkpoint's precision (" << skip_plan.source << "):";
            for (const auto& c : skip_plan.layers) out << ' ' << c.checkpoint_tensor << " (" << c.reason << ")";
            out << '\n';
        }
        out << std::left << std::setw(18) << "method" << std::setw(12) << "skip" << std::right << std::setw(12) << "PPL"
            << std::setw(12) << "KL mean" << std::setw(12) << "KL median" << std::setw(12) << "KL p99" << std::setw(8) << "top-1" << '\n';
        for (std::size_t i = 0; i < variants.size(); ++i) {
            if (!a.table && i != 0 && i + 1 != variants.size()) continue;
            std::string skip;
            for (int l : variants[i].skip.layer_numbers()) skip += (skip.empty() ? "" : ",") + std::to_string(l);
            if (skip.empty() && variants[i].skip.source == "auto") skip = "auto: none";
            const perplexity_result& r = results[i];
            out << std::left << std::setw(18) << quant_method_name(variants[i].method) << std::setw(12) << (skip.empty() ? "-" : skip)
                << std::right << std::setprecision(4) << std::setw(12) << r.ppl << std::setw(12) << r.kl.mean << std::setw(12)
                << r.kl.median << std::setw(12) << r.kl.p99 << std::setw(7) << std::fixed << std::setprecision(1)
                << 100 * r.kl.top1_agreement << "%" << std::defaultfloat << '\n';
        }
    });
}

}  // namespace

void register_quant(CLI::App& app)
{
    {
        auto a = std::make_shared<quant_eval_args>();
        auto* cmd = app.add_subcommand("quant-eval", "Perplexity and KL divergence of a fake-quantized model (paper Table 1)");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--corpus", a->corpus, "Text file, tokenized once as a whole")->required();
        auto* method = cmd->add_option("--method", a->method, "none, rtn (per-tensor W8A8), smoothquant, rtn-per-channel (per-channel W, per-token A), w4g128")
            ->capture_default_str();
        cmd->add_option("--skip", a->skip,
                        "Down projections kept in the checkpoint's precision: auto (explosion and decay layers, found without data), "
                        "none, or 1-based layers '2,31' (default: none; with --table, auto)");
        cmd->add_option("--ctx", a->ctx, "Tokens per window (default: min(2048, the model's context))")->check(CLI::PositiveNumber);
        cmd->add_option("--windows", a->windows, "Windows to evaluate, from the start (default: all but the calibration windows)")
            ->check(CLI::PositiveNumber);
        cmd->add_option("--calib-windows", a->calib_windows, "Windows kept apart for SmoothQuant's calibration, a seeded sample of those not evaluated")
            ->capture_default_str()
            ->check(CLI::NonNegativeNumber);
        cmd->add_option("--seed", a->seed, "Seed of the calibration sample")->capture_default_str();
        cmd->add_option("--alpha", a->alpha, "SmoothQuant's migration strength")->capture_default_str()->check(CLI::Range(0.0, 1.0));
        cmd->add_option("--ppl-style", a->style, "hf (every token after the first of each window; the paper's) or llama.cpp (the second half, BOS first)")
            ->capture_default_str();
        cmd->add_flag("--table", a->table, "The Table 1 grid in one pass: none; RTN; RTN + skip; SmoothQuant; SmoothQuant + skip; per-channel; W4 g128")
            ->excludes(method);
        cmd->add_option("--memory-gb", a->memory_gb,
                        "Quantized weights held at once (default: half the machine's memory); past it, methods run in groups")
            ->check(CLI::PositiveNumber);
        cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file (llama2.c checkpoints keep theirs apart)");
        a->bos.add_to(cmd);
        cmd->add_flag("--json", a->json, "Print JSON");
        cmd->callback([a] { run_quant_eval(*a); });
    }
    {
        struct plan_args {
            std::string model, skip = "auto", type = "f16", format = "llama.cpp";
        };
        auto a = std::make_shared<plan_args>();
        auto* cmd = app.add_subcommand("precision-plan", "The down projections to keep in high precision, for llama-quantize --tensor-type-file");
        cmd->add_option("model", a->model, "Checkpoint: Hugging Face directory, .safetensors, GGUF or llama2.c .bin")->required();
        cmd->add_option("--skip", a->skip, "auto (explosion and decay layers, found without data) or 1-based layers '2,31'")->capture_default_str();
        cmd->add_option("--type", a->type, "Type to keep them in")->capture_default_str()->check(CLI::IsMember({"f16", "bf16", "q8_0"}));
        cmd->add_option("--format", a->format, "llama.cpp (lines 'blk.N.ffn_down=TYPE') or json")
            ->capture_default_str()
            ->check(CLI::IsMember({"llama.cpp", "json"}));
        cmd->callback([a] {
            if (a->skip == "none") fail_input("--skip", "a plan keeps at least one layer: give auto or a list");
            const model m = load_model(a->model);
            const precision_plan p = resolve_skip(m, a->skip, "precision-plan");
            if (a->format == "json") {
                nlohmann::json j = plan_json(p);
                j["model"] = a->model;
                j["type"] = a->type;
                nlohmann::json lines = nlohmann::json::array();
                for (const auto& c : p.layers) lines.push_back(c.gguf_tensor + "=" + a->type);
                j["tensor_type_lines"] = lines;
                emit(true, j, [](std::ostream&) {});
                return;
            }
            if (p.layers.empty())
                std::fprintf(stderr, "precision-plan: %s: no explosion or decay layer found; the plan is empty\n", a->model.c_str());
            for (const auto& c : p.layers) std::cout << c.gguf_tensor << '=' << a->type << '\n';
        });
    }
}

}  // namespace sdlens::cli
