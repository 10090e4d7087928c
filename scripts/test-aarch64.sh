#!/usr/bin/env bash
# The portable code paths on another CPU: builds the tests for aarch64 with Debian's cross compiler
# and runs them under qemu-user. On aarch64 there is no x86 dispatch, so every product goes through
# the plain (auto-vectorized) kernels and Eigen, and every numerical test checks those against
# its float64 reference. The command-line tests are left out (SDLENS_BUILD_EXAMPLES=OFF): the
# program would be an aarch64 binary the test process cannot start without binfmt_misc.
#
#   scripts/test-aarch64.sh [BUILD_DIR] [doctest options...]   (default build/aarch64)
#
# Installs g++-aarch64-linux-gnu and qemu-user from Debian's packages when they are missing (as
# root, or with sudo); the other dependencies are header-only and shared with the native build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/aarch64}
shift || true

need=()
command -v aarch64-linux-gnu-g++ > /dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 > /dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo -n"
  $as_root apt-get install -y --no-install-recommends "${need[@]}" > /dev/null ||
    { $as_root apt-get update > /dev/null && $as_root apt-get install -y --no-install-recommends "${need[@]}" > /dev/null; }
fi
bash scripts/install-deps.sh > /dev/null

emulator="qemu-aarch64;-L;/usr/aarch64-linux-gnu"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_CROSSCOMPILING_EMULATOR="$emulator" \
  -DSDLENS_BUILD_EXAMPLES=OFF -DSDLENS_BUILD_BENCHMARKS=OFF -DSDLENS_PACKAGE_TESTS=OFF \
  -DSDLENS_INSTALL=OFF -DSDLENS_USE_CCACHE=OFF > "$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; exit 1; }
cmake --build "$build" -j 2 --target sdlens_tests
aarch64-linux-gnu-readelf -h "$build/tests/sdlens_tests" | grep -q AArch64 || { echo "$0: the test program is not an aarch64 binary" >&2; exit 1; }
qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/tests/sdlens_tests" "$@"
