#!/usr/bin/env bash
# `make bench-quant`: SmolLM2-135M (the GGUF of scripts/fetch-smollm2.sh) at np 1 and 2 in f32,
# bf16, int8, q4_0, nf4 and the GGUF's own blocks as shipped (gguf: Q4_1 linears, a Q8_0
# embedding), each run its own process (build/bench/bench_quant: resident memory after loading,
# weight bytes, median prefill / decode tokens/s, the decode time's share in the Linears, the
# logits' distance from f32), and transformers
# + torch f32 as the peer on the same threads when importable. Prints the rows as a table, then
#   quant: q4_decode_vs_f32=X q4_memory_ratio=X gguf_decode_vs_f32=X gguf_memory_ratio=X
# at np 1: q4_0's decode tokens/s over f32's, and its VmRSS over f32's (targets: >= 3.0, <= 0.2).
# Usage: bench/bench_quant.sh BUILD_DIR [MODEL]   (MODEL: a .gguf file; default: fetched)
set -euo pipefail
build="$1"
model="${2:-}"
if [ -z "$model" ]; then
  model=$(scripts/fetch-smollm2.sh "$build") || { echo "bench-quant: no model (offline); skipped" >&2; exit 0; }
fi
results="$build/bench-quant"
rm -rf "$results" && mkdir -p "$results"
runs="--runs 3 --prompt-tokens 64 --new-tokens 32"
for np in 1 2; do
  scripts/mpirun.sh -np "$np" "$build/bench/bench_quant" --model "$model" --format f32 $runs \
    --dump "$results/f32-np$np.npy" | tee -a "$results/rows.txt"
  for format in bf16 int8 q4_0 nf4 gguf; do
    scripts/mpirun.sh -np "$np" "$build/bench/bench_quant" --model "$model" --format "$format" $runs \
      --reference "$results/f32-np$np.npy" | tee -a "$results/rows.txt"
  done
done
python3 bench/torch_quant_peer.py "$model" --threads "$(nproc)" --runs 3 --prompt-tokens 64 --new-tokens 32 \
  2>/dev/null | tee -a "$results/rows.txt" || true
echo
echo "SmolLM2-135M-Instruct, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
awk '
  /^quant-row:/ {
    for (i = 2; i <= NF; ++i) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if (!header++) printf "%-3s %-10s %12s %8s %8s %12s %11s %10s %9s %9s\n", "np", "format", "weights_MiB",
      "RSS_MiB", "HWM_MiB", "prefill_t/s", "decode_t/s", "linear_%", "max_diff", "mean_diff"
    share = v["decode_linear_share"] == "" ? "-" : sprintf("%.0f", 100 * v["decode_linear_share"])
    printf "%-3s %-10s %12s %8s %8s %12s %11s %10s %9s %9s\n", v["np"], v["format"], v["weights_mib"], v["rss_mib"],
      v["hwm_mib"], v["prefill_tps"], v["decode_tps"], share, v["max_diff"], v["mean_diff"]
    key = v["np"] "/" v["format"]; decode[key] = v["decode_tps"]; rss[key] = v["rss_mib"]
    delete v
  }
  END {
    printf "quant: q4_decode_vs_f32=%.2f q4_memory_ratio=%.3f gguf_decode_vs_f32=%.2f gguf_memory_ratio=%.3f\n",
      decode["1/q4_0"] / decode["1/f32"], rss["1/q4_0"] / rss["1/f32"], decode["1/gguf"] / decode["1/f32"],
      rss["1/gguf"] / rss["1/f32"]
  }' "$results/rows.txt"
