#!/usr/bin/env bash
# Builds sdlens and runs the whole test suite, on a fresh Debian 12 machine included:
# installs the Debian packages it needs, then
#  1. the `ci` preset: library, program, examples, benchmarks (one quick run), every test;
#  2. the `debug-asan` preset, narrowed to the file parsers and decoders, which must survive
#     malformed input under AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
scripts/install-deps.sh

cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"

cmake --preset debug-asan -DSDLENS_BUILD_EXAMPLES=OFF \
  "-DSDLENS_TESTS_ONLY=test_dtype.cpp;test_quant*.cpp;test_safetensors*.cpp;test_gguf*.cpp;test_llama2c*.cpp;test_tokenizer*.cpp"
cmake --build --preset debug-asan -j "$jobs"
ctest --preset debug-asan -j "$jobs"
