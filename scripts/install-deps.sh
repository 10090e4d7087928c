#!/usr/bin/env bash
# Installs, from Debian's packages, exactly what building and testing sdlens needs.
# With --tests, also what only the tests need. Idempotent: installs nothing when everything is
# present; runs apt-get update only when needed.
set -euo pipefail

packages=(
  cmake g++ make python3 pkg-config
  libeigen3-dev         # matrices, Maps over mmapped weights, half/bfloat16
  libspectra-dev        # eigen solvers over matrix-free operators
  xtensor-dev xtl-dev   # N-d activation captures, .npy files
  nlohmann-json3-dev    # config.json, tokenizer.json, --json output
  libcli11-dev          # the sdlens command line
  doctest-dev           # tests
  libbenchmark-dev      # bench/
)
# Only the test command needs these (scripts/test.sh passes --tests): the report tests parse the
# SVG figures of `sdlens report` and load its page in a headless browser.
test_packages=(
  libxml2-utils         # xmllint
  chromium              # headless page load and screenshot
)
if [ "${1:-}" = "--tests" ]; then packages+=("${test_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo"
  else
    echo "install-deps: missing ${missing[*]}; run as root:" >&2
    echo "  apt-get update && $cmd" >&2
    exit 1
  fi
else
  as_root=""
fi

export DEBIAN_FRONTEND=noninteractive
# An empty or stale package list makes apt-get install fail to find packages: update first.
if ! $as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
  $as_root apt-get update -qq
  $as_root apt-get install -y --no-install-recommends "${missing[@]}"
fi
