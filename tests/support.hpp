#pragma once
// Shared by the tests: where the fixtures are, temporary directories, running the CLI.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sdlens/core/error.hpp>

namespace sdlens::test {

extern bool single_test_case_run;

// ../shared/fixtures, or SDLENS_FIXTURES when set; nullopt when absent (a fresh clone).
inline std::optional<std::filesystem::path> fixtures_dir()
{
    const char* env = std::getenv("SDLENS_FIXTURES");
    std::filesystem::path p = env ? env : SDLENS_FIXTURES_DIR;
    if (std::filesystem::is_directory(p)) return p;
    return std::nullopt;
}

// The stories260K fixture directory; when absent, says so and skips the calling test case
// (exit 77, which ctest reports as skipped, when the case runs alone; a message otherwise).
inline std::optional<std::filesystem::path> stories260k()
{
    auto d = fixtures_dir();
    if (d && std::filesystem::is_directory(*d / "stories260K")) return *d / "stories260K";
    std::fprintf(stderr, "skipped: ../shared/fixtures/stories260K is absent (set SDLENS_FIXTURES to point at it)\n");
    if (single_test_case_run) std::exit(77);
    return std::nullopt;
}

// A fresh directory under the system temp dir, removed when the object goes away.
class temp_dir {
public:
    temp_dir()
    {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("sdlens-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

// f() must throw sdlens::input_error whose message contains every fragment.
template <class F>
void expect_input_error(F&& f, const std::vector<std::string>& fragments)
{
    bool thrown = false;
    try {
        f();
    } catch (const input_error& e) {
        thrown = true;
        const std::string msg = e.what();
        CAPTURE(msg);
        for (const auto& s : fragments) CHECK(msg.find(s) != std::string::npos);
    }
    CHECK(thrown);
}

#ifdef SDLENS_CLI
struct cli_result {
    int exit_code = -1;
    std::string out, err;
};
// Runs the sdlens program with the given arguments (shell-quoted by the caller).
inline cli_result run_cli(const std::string& args)
{
    temp_dir tmp;
    const std::string cmd = std::string("\"") + SDLENS_CLI + "\" " + args + " >\"" + (tmp / "out").string() +
                            "\" 2>\"" + (tmp / "err").string() + "\"";
    const int status = std::system(cmd.c_str());
    cli_result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    auto slurp = [](const std::filesystem::path& p) {
        std::string s;
        if (FILE* f = std::fopen(p.c_str(), "rb")) {
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
            std::fclose(f);
        }
        return s;
    };
    r.out = slurp(tmp / "out");
    r.err = slurp(tmp / "err");
    return r;
}
// Runs the program with --json, requires exit code 0, and parses what it printed.
inline nlohmann::json cli_json(const std::string& args)
{
    const auto r = run_cli(args + " --json");
    INFO(args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.out);
}
#endif

}  // namespace sdlens::test
