#pragma once
// What every subcommand of the sdlens program shares: output in text or JSON, progress on a
// terminal, and the one place where subcommands are registered (main.cpp).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace sdlens::cli {

// Writes the machine-readable form to stdout when --json was given, the human one otherwise.
template <class TextFn>
void emit(bool json, const nlohmann::json& j, TextFn&& text)
{
    // Token pieces and decoded text may hold bytes that are not UTF-8 on their own: replaced (U+FFFD).
    if (json) std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    else text(std::cout);
}

// Progress lines go to stderr, and only when a person is watching it.
inline bool progress_enabled() { return ::isatty(2) == 1; }
inline void progress(const std::string& line)
{
    if (progress_enabled()) std::fprintf(stderr, "\r%s\033[K", line.c_str());
}
inline void progress_done()
{
    if (progress_enabled()) std::fprintf(stderr, "\n");
}

// A long step, i of n, with the time left at the rate so far: "paths: no attention 512/32000, 41 s left".
class progress_meter {
public:
    explicit progress_meter(std::string command) : command_(std::move(command)) {}
    void operator()(const std::string& step, std::int64_t done, std::int64_t total)
    {
        if (!progress_enabled()) return;
        const auto now = std::chrono::steady_clock::now();
        if (step != step_) step_ = step, start_ = now;
        std::string line = command_ + ": " + step + " " + std::to_string(done) + "/" + std::to_string(total);
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        if (done > 0 && total > done && elapsed > 0.5)
            line += ", " + std::to_string(static_cast<long long>(elapsed * static_cast<double>(total - done) / static_cast<double>(done) + 0.5)) +
                    " s left";
        progress(line);
    }
    ~progress_meter() { progress_done(); }

private:
    std::string command_, step_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Each subcommand file defines one of these; main.cpp calls them all, in the order of --help.
void register_info(CLI::App& app);
void register_plant(CLI::App& app);
void register_random(CLI::App& app);
void register_demo(CLI::App& app);
void register_directions(CLI::App& app);
void register_eig(CLI::App& app);
void register_forward(CLI::App& app);
void register_generate(CLI::App& app);
void register_norms(CLI::App& app);      // norms, ablate       (cmd_norms.cpp)
void register_empirical(CLI::App& app);  // empirical, detect   (cmd_empirical.cpp)
void register_angles(CLI::App& app);     // angles, stability   (cmd_angles.cpp)
void register_paths(CLI::App& app);      // paths, subspace, coefficients (cmd_paths.cpp)
void register_report(CLI::App& app);     // report: every analysis as an HTML page (cmd_report.cpp)
void register_quant(CLI::App& app);      // quant-eval, precision-plan (cmd_quant.cpp)

}  // namespace sdlens::cli
