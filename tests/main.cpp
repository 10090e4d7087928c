// The test runner. It remembers whether ctest asked for one test case alone, so that a test
// needing ../shared/fixtures can report "skipped" (exit 77) instead of passing silently.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstring>

#include "support.hpp"

namespace sdlens::test {
bool single_test_case_run = false;
}

int main(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--test-case=", 12) == 0) sdlens::test::single_test_case_run = true;
    doctest::Context context(argc, argv);
    return context.run();
}
