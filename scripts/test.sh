#!/usr/bin/env bash
# Builds sdlens and runs the whole test suite, on a fresh Debian 12 machine included:
# installs the Debian packages it needs, configures the `ci` preset, builds, runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset ci
cmake --build --preset ci -j "$(nproc)"
ctest --preset ci -j "$(nproc)"
