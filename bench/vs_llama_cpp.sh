#!/usr/bin/env bash
# sdlens against llama.cpp on this machine, in one run: the forward-pass benchmark's shape (Llama,
# d 2048, 16 layers, FFN 5632, 32 heads, 4 kv heads, vocab 32000) in F32, BF16, Q8_0 and Q4_K,
# 2 threads, prompts of 128 and 512 tokens and 32 generated tokens. The two programs take turns,
# twice, so that a change in the machine's speed (shared hosts drift by ±20% within an hour) shows
# as a difference between rounds rather than between programs. Prints both programs' tokens per
# second per round and the ratio sdlens / llama.cpp (its range over the rounds).
#
#   bench/vs_llama_cpp.sh LLAMA_BENCH [BUILD_DIR]
#
# LLAMA_BENCH: llama.cpp's llama-bench, built for this CPU; its llama-quantize must sit beside it.
# BUILD_DIR (default build/default) holds sdlens's bin/sdlens and bench/sdlens_bench. llama.cpp
# reads GGUF files that `sdlens plant` writes (random weights and a placeholder vocabulary; the
# values do not change the speed); sdlens_bench writes the F32 and BF16 shapes as safetensors
# itself. The quantized rows are one file for both programs: llama-quantize turns the F32 GGUF
# into Q8_0 and Q4_K_M (Q4_K with Q6_K for some tensors, llama.cpp's usual 4-bit file) and
# sdlens_bench reads those (SDLENS_BENCH_GGUF_Q8_0, SDLENS_BENCH_GGUF_Q4_K).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 LLAMA_BENCH [BUILD_DIR]" >&2; exit 2; }
llama_bench=$1
llama_quantize=$(dirname "$llama_bench")/llama-quantize
build=${2:-build/default}
for f in "$llama_bench" "$llama_quantize" "$build/bin/sdlens" "$build/bench/sdlens_bench"; do
  [ -x "$f" ] || { echo "$0: $f: not an executable" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in f32 bf16; do
  "$build/bin/sdlens" plant --gguf --hidden 2048 --layers 16 --heads 32 --kv-heads 4 --ffn 5632 \
    --vocab 32000 --dtype "$t" --out "$work/$t" > /dev/null
done
mkdir -p "$work/q8_0" "$work/q4_k"
"$llama_quantize" "$work/f32/model.gguf" "$work/q8_0/model.gguf" Q8_0 > "$work/quantize.log" 2>&1
"$llama_quantize" "$work/f32/model.gguf" "$work/q4_k/model.gguf" Q4_K_M >> "$work/quantize.log" 2>&1
export SDLENS_BENCH_GGUF_Q8_0="$work/q8_0/model.gguf" SDLENS_BENCH_GGUF_Q4_K="$work/q4_k/model.gguf"

for round in 1 2; do
  echo "== round $round: llama.cpp ($(date +%T))"
  for t in f32 bf16 q8_0 q4_k; do
    "$llama_bench" -m "$work/$t/model.gguf" -t 2 -p 128,512 -n 32 -r 3 -o json > "$work/llama-$round-$t.json"
  done
  echo "== round $round: sdlens ($(date +%T))"
  "$build/bench/sdlens_bench" --benchmark_filter='prompt_processing/(f32|bf16|q8_0|q4_k)/|generation/' \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=json \
    > "$work/sdlens-$round.json" 2> /dev/null
done

python3 - "$work" <<'EOF'
import json, sys, os
work = sys.argv[1]
rows = [(t, test) for t in ("f32", "bf16", "q8_0", "q4_k") for test in ("pp128", "pp512", "tg32")]
def llama(r, t):
    out = {}
    for e in json.load(open(os.path.join(work, f"llama-{r}-{t}.json"))):
        test = f"pp{e['n_prompt']}" if e["n_gen"] == 0 else f"tg{e['n_gen']}"
        out[test] = e["avg_ts"]
    return out
def sdlens(r):
    out = {}
    for b in json.load(open(os.path.join(work, f"sdlens-{r}.json")))["benchmarks"]:
        if b.get("aggregate_name") != "median": continue
        parts = b["run_name"].split("/")
        test = f"pp{parts[2]}" if parts[0] == "prompt_processing" else "tg32"
        out[(parts[1], test)] = b["tok/s"]
    return out
L = {r: {t: llama(r, t) for t in ("f32", "bf16", "q8_0", "q4_k")} for r in (1, 2)}
S = {r: sdlens(r) for r in (1, 2)}
print("| dtype, test | sdlens r1 | llama.cpp r1 | sdlens r2 | llama.cpp r2 | sdlens / llama.cpp |")
print("|---|---|---|---|---|---|")
for t, test in rows:
    cells, ratios = [], []
    for r in (1, 2):
        s, l = S[r].get((t, test)), L[r][t].get(test)
        cells += [f"{s:.2f}" if s else "-", f"{l:.2f}" if l else "-"]
        if s and l: ratios.append(s / l)
    ratio = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
    print(f"| {t.upper()} {test} | " + " | ".join(cells) + f" | {ratio} |")
EOF
