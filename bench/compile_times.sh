#!/usr/bin/env bash
# What including and building sdlens costs, so a regression in compile time shows:
#  headers  every public header alone in an otherwise empty file, front end only (-fsyntax-only):
#           wall seconds and the compiler's peak RSS;
#  build    a fresh build of the `ci` preset (ccache off) at -j JOBS, every compiler call logged
#           with its wall seconds and peak RSS, slowest first, and the total wall time.
# Usage: bench/compile_times.sh [headers|build|all] [--jobs N] [--out FILE]
# Needs the packages of scripts/install-deps.sh and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
what=all
jobs=$(nproc)
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    headers|build|all) what=$1 ;;
    --jobs) jobs=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "compile_times.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x /usr/bin/time ] || { echo "compile_times.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
cxx=${CXX:-c++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report() { if [ -n "$out" ]; then tee -a "$out"; else cat; fi; }
[ -z "$out" ] || : > "$out"

echo "# $($cxx --version | head -1); $(lscpu | sed -n 's/^Model name: *//p'); $(nproc) cores" | report

if [ "$what" = headers ] || [ "$what" = all ]; then
  echo "# header: -fsyntax-only wall s, peak RSS MB" | report
  # The same flags as the ci preset's compile lines: C++17, OpenMP, -O2 (which -fsyntax-only ignores).
  flags=(-std=c++17 -fopenmp -Iinclude -isystem /usr/include/eigen3)
  find include/sdlens -name '*.hpp' | sort | while read -r h; do
    rel=${h#include/}
    printf '#include <%s>\nint main() { return 0; }\n' "$rel" > "$work/one.cpp"
    /usr/bin/time -f '%e %M' -o "$work/t" "$cxx" "${flags[@]}" -fsyntax-only "$work/one.cpp"
    read -r secs kb < "$work/t"
    printf '%-45s %7.2f %7d\n' "$rel" "$secs" $((kb / 1024))
  done | report
fi

if [ "$what" = build ] || [ "$what" = all ]; then
  log="$work/calls.log"
  # Each compiler call runs under GNU time, which appends "seconds RSS-KB object" to the log.
  launcher="/usr/bin/time;-a;-o;$log;-f;%e %M %C"
  start=$(date +%s.%N)
  CCACHE_DISABLE=1 cmake -S . -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS=-Wall -Wextra" \
    "-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher" -DSDLENS_USE_CCACHE=OFF >/dev/null
  CCACHE_DISABLE=1 cmake --build "$work/build" -j "$jobs" >/dev/null
  end=$(date +%s.%N)
  echo "# build: every compiler call, wall s, peak RSS MB, source (slowest first)" | report
  awk -v root="$PWD" '{ src = ""; for (i = 3; i <= NF; ++i) if ($i == "-c") src = $(i + 1);
         if (src == "") next; sub(root "/", "", src);
         printf "%-45s %7.2f %7d\n", src, $1, $2 / 1024 }' "$log" | sort -k2,2 -nr | report
  awk -v j="$jobs" -v a="$start" -v b="$end" 'BEGIN { printf "# full build at -j %s: %.0f s wall\n", j, b - a }' | report
fi
