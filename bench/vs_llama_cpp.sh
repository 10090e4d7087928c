#!/usr/bin/env bash
# sdlens against llama.cpp on this machine, in one run: the forward-pass benchmark's shape (Llama,
# d 2048, 16 layers, FFN 5632, 32 heads, 4 kv heads, vocab 32000) in F32 and BF16, 2 threads,
# prompts of 128 and 512 tokens and 32 generated tokens. The two programs take turns, twice, so
# that a change in the machine's speed (shared hosts drift by ±20% within an hour) shows as a
# difference between rounds rather than between programs.
#
#   bench/vs_llama_cpp.sh LLAMA_BENCH [BUILD_DIR]
#
# LLAMA_BENCH: llama.cpp's llama-bench, built for this CPU. BUILD_DIR (default build/default)
# holds sdlens's bin/sdlens and bench/sdlens_bench. llama.cpp reads GGUF files that `sdlens plant`
# writes (random weights and a placeholder vocabulary; the values do not change the speed);
# sdlens_bench writes the same shapes as safetensors itself.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 LLAMA_BENCH [BUILD_DIR]" >&2; exit 2; }
llama_bench=$1
build=${2:-build/default}
for f in "$llama_bench" "$build/bin/sdlens" "$build/bench/sdlens_bench"; do
  [ -x "$f" ] || { echo "$0: $f: not an executable" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in f32 bf16; do
  "$build/bin/sdlens" plant --gguf --hidden 2048 --layers 16 --heads 32 --kv-heads 4 --ffn 5632 \
    --vocab 32000 --dtype "$t" --out "$work/$t" > /dev/null
done
for round in 1 2; do
  echo "== round $round: llama.cpp ($(date +%T))"
  for t in f32 bf16; do
    "$llama_bench" -m "$work/$t/model.gguf" -t 2 -p 128,512 -n 32 -r 3 -o md | grep -E '^\| llama'
  done
  echo "== round $round: sdlens ($(date +%T))"
  "$build/bench/sdlens_bench" --benchmark_filter='prompt|generation' --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true 2>/dev/null | grep -E '_(median|mean) '
done
