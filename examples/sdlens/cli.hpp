#pragma once
// What every subcommand of the sdlens program shares: output in text or JSON, progress on a
// terminal, and the one place where subcommands are registered (main.cpp).
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
    if (json) std::cout << j.dump(2) << '\n';
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

// Each subcommand file defines one of these; main.cpp calls them all, in the order of --help.
void register_info(CLI::App& app);
void register_plant(CLI::App& app);
void register_demo(CLI::App& app);
void register_directions(CLI::App& app);
void register_eig(CLI::App& app);
void register_forward(CLI::App& app);
void register_generate(CLI::App& app);

}  // namespace sdlens::cli
