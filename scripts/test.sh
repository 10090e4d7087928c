#!/usr/bin/env bash
# Builds sdlens and runs the whole test suite, on a fresh Debian 12 machine included:
# installs the Debian packages it needs, then
#  1. the `ci` preset: the compiled library, program, examples, benchmarks (one quick run), every
#     test, and the packaging (installed package consumed header-only and compiled);
#  2. the `debug-asan` preset: the file parsers, decoders and tokenizers, and the fuzz corpora
#     replayed through the fuzz targets, under AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
scripts/install-deps.sh --tests

cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"

cmake --preset debug-asan
cmake --build --preset debug-asan -j "$jobs"
ctest --preset debug-asan -j "$jobs"
