// The sdlens command-line program: parses options and hands the work to the library.
// Exit codes: 0 success, 2 bad input or usage, 1 internal failure.
#include <cstdio>
#include <exception>
#include <string>

#include <sdlens/sdlens.hpp>

#include "cli.hpp"

int main(int argc, char** argv)
{
    CLI::App app{"sdlens " SDLENS_VERSION_STRING ": find, explain and use the singular defects of language models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", SDLENS_VERSION_STRING);

    // Every subcommand, registered in one place.
    sdlens::cli::register_info(app);
    sdlens::cli::register_demo(app);
    sdlens::cli::register_plant(app);
    sdlens::cli::register_random(app);
    sdlens::cli::register_directions(app);
    sdlens::cli::register_eig(app);
    sdlens::cli::register_forward(app);
    sdlens::cli::register_generate(app);
    sdlens::cli::register_norms(app);
    sdlens::cli::register_empirical(app);
    sdlens::cli::register_angles(app);
    sdlens::cli::register_paths(app);
    sdlens::cli::register_report(app);
    sdlens::cli::register_quant(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "sdlens: %s (see sdlens --help)\n", e.what());
        return 2;
    } catch (const sdlens::input_error& e) {
        std::fprintf(stderr, "sdlens: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdlens: internal error: %s\n", e.what());
        return 1;
    }
    return 0;
}
