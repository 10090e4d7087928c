#!/usr/bin/env bash
# Builds the sdlens program and runs its main job on a model it generates itself (no download):
# a checkpoint with planted singular defects is written into the build tree, analysed, and the
# findings are printed next to the planted ground truth; then `sdlens report` draws the paper's
# figures for it into sdlens-demo/report/index.html and prints its summary and that path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default -DSDLENS_BUILD_TESTS=OFF -DSDLENS_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build --preset default --target sdlens_cli -j "$(nproc)"
cd build/default
./bin/sdlens demo --out sdlens-demo "$@"
echo
./bin/sdlens report sdlens-demo --out sdlens-demo/report
