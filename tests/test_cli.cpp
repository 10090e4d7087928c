// The program's contract with scripts: subcommands listed by --help, one-line errors, exit codes.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "support.hpp"

#ifdef SDLENS_CLI
using sdlens::test::run_cli;

namespace {
int line_count(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST_CASE("cli: --help lists every subcommand and exits 0")
{
    const auto r = run_cli("--help");
    CHECK(r.exit_code == 0);
    for (const char* sub : {"info", "forward", "generate", "directions", "eig", "plant", "demo"}) CHECK_MESSAGE(r.out.find(sub) != std::string::npos, sub);
}

TEST_CASE("cli: an unknown subcommand is one line on stderr and exit code 2")
{
    const auto r = run_cli("no-such-subcommand");
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.out.empty());
}

TEST_CASE("cli: an unknown option is one line on stderr and exit code 2")
{
    const auto r = run_cli("info --no-such-option x");
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
}

TEST_CASE("cli: a missing model file is one line naming it and exit code 2")
{
    const auto r = run_cli("info /nonexistent/sdlens-model.gguf");
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("/nonexistent/sdlens-model.gguf") != std::string::npos);
}

TEST_CASE("cli: a file in no checkpoint format is named as such, not as a broken safetensors file")
{
    sdlens::test::temp_dir tmp;
    const std::string path = (tmp / "notes.txt").string();
    std::ofstream(path) << "these are notes, not a model\n";
    const auto r = run_cli("info \"" + path + "\"");
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find(path + ": not a safetensors, GGUF or llama2.c checkpoint") != std::string::npos);
}
#endif
