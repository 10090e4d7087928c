#pragma once
// Benchmarks run at full size by default; SDLENS_BENCH_SMOKE=1 (set by the test suite) shrinks
// every shape so one iteration proves they still run, in seconds.
#include <cstdlib>

namespace sdlens::bench {
inline bool smoke() { const char* s = std::getenv("SDLENS_BENCH_SMOKE"); return s && *s && *s != '0'; }
}  // namespace sdlens::bench
