#!/usr/bin/env bash
# The generate program end to end at 2 ranks on tiny generated checkpoints: --check must pass
# (ids_match=yes, exit 0) for a Llama with an uneven vocab and tied embeddings (under the auto plan,
# `--plan auto` and a sequence-parallel plan file) and for a Mixtral
# with one KV head stored in shards + index; --dump-logits must write a .npy of [prompt, vocab];
# a prompt id outside the vocab must end the job non-zero, naming the id; --device cuda must pass
# --check on a GPU and fail naming the missing GPU elsewhere.
# Usage: check_generate.sh MPIRUN_WRAPPER MAKE_CHECKPOINT_EXE GENERATE_EXE
set -u
mpirun_wrapper=$1
make_checkpoint=$2
generate=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-generate-XXXXXX")
trap 'rm -rf "$dir"' EXIT
failures=0

# name, expected exit code (0 or "nonzero"), text the output must contain, then generate's args
run_case() {
  local name=$1 expected_rc=$2 expected=$3 output rc verdict=ok
  shift 3
  output=$(timeout -k 5 120 "$mpirun_wrapper" -np 2 "$generate" "$@" 2>&1)
  rc=$?
  echo "--- $name: exit code $rc"
  echo "$output" | grep -v '^\s*$' | head -12
  if [ "$expected_rc" = 0 ] && [ "$rc" -ne 0 ]; then verdict="exit code $rc, expected 0"; fi
  if [ "$expected_rc" = nonzero ] && [ "$rc" -eq 0 ]; then verdict="exit code 0, expected non-zero"; fi
  if ! grep -qF -- "$expected" <<<"$output"; then verdict="output lacks: $expected"; fi
  echo "--- $name: $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}

"$make_checkpoint" --out "$dir/llama" --arch llama --hidden 64 --intermediate 96 --layers 2 --heads 4 \
  --kv-heads 2 --vocab 301 --tie-word-embeddings --seed 5 || exit 1
"$make_checkpoint" --out "$dir/mixtral" --arch mixtral --hidden 64 --intermediate 48 --layers 2 --heads 4 \
  --kv-heads 1 --vocab 200 --experts 3 --experts-per-tok 2 --seed 6 --max-shard-bytes 40000 || exit 1

run_case llama 0 "check: ids_match=yes" --model "$dir/llama" --prompt-ids "3 1 4 1 5 9 2 6" \
  --max-new-tokens 8 --check --dump-logits "$dir/llama.npy"
# The same Llama under a sequence-parallel plan file, and under --plan auto spelled out.
cat > "$dir/sp-plan.json" <<'JSON'
{"model.embed_tokens": "rowwise_to_sequence",
 "model.layers.*.input_layernorm": "sequence_parallel", "model.layers.*.post_attention_layernorm": "sequence_parallel",
 "model.layers.*.self_attn.q_proj": "colwise", "model.layers.*.self_attn.k_proj": "colwise",
 "model.layers.*.self_attn.v_proj": "colwise", "model.layers.*.self_attn.o_proj": "rowwise_to_sequence",
 "model.layers.*.mlp.gate_proj": "colwise", "model.layers.*.mlp.up_proj": "colwise",
 "model.layers.*.mlp.down_proj": "rowwise_to_sequence", "model.norm": "sequence_parallel", "lm_head": "colwise_rep"}
JSON
run_case llama-sp-plan 0 "check: ids_match=yes" --model "$dir/llama" --plan "$dir/sp-plan.json" \
  --prompt-ids "3 1 4 1 5 9 2 6" --max-new-tokens 8 --check
run_case llama-plan-auto 0 "plan auto" --model "$dir/llama" --plan auto --prompt-ids "3 1 4" --max-new-tokens 2 --check
run_case mixtral 0 "check: ids_match=yes" --model "$dir/mixtral" --prompt-ids "7 0 199" --max-new-tokens 6 --check
# --device cuda: on a GPU the sharded model runs there and must pass --check; without one the
# job must fail saying so (no GPU visible, or a build without CUDA).
if nvidia-smi -L >/dev/null 2>&1; then
  run_case llama-cuda 0 "check: ids_match=yes" --model "$dir/llama" --device cuda --prompt-ids "3 1 4 1 5 9 2 6" \
    --max-new-tokens 8 --check
else
  run_case no-gpu nonzero "no CUDA" --model "$dir/llama" --device cuda --prompt-ids "3 1 4"
fi
# Text in and out: the Llama gets a tokenizer.json of its 301 ids.
"$(dirname "$0")/write_tiny_tokenizer.sh" "$dir/llama" 301 || exit 1
run_case llama-prompt 0 "check: ids_match=yes" --model "$dir/llama" --prompt "héllo wörld" --max-new-tokens 6 --check
run_case llama-prompt-answer 0 "answer: " --model "$dir/llama" --prompt "héllo wörld" --max-new-tokens 6
# "héllo wörld": <s>, then "▁héllo▁wörld": ▁ is 259, the rest byte tokens (byte + 3), é and ö two each.
run_case llama-prompt-ids 0 "prompt ids (15): 1 259 107 198 172 111 111 114 259 122 198 185 117 111 103" \
  --model "$dir/llama" --prompt "héllo wörld" --max-new-tokens 1
# EOS: make the first token the model generates the tokenizer's eos_token; generation stops there.
first=$(timeout -k 5 120 "$mpirun_wrapper" -np 2 "$generate" --model "$dir/llama" --prompt "héllo wörld" \
  --max-new-tokens 4 2>&1 | sed -n 's/^generated ids (4): \([0-9]*\).*/\1/p')
if [ -z "$first" ]; then
  echo "--- llama-eos: no generated ids"
  failures=$((failures + 1))
else
  case $first in
    0) eos='<unk>' ;; 1) eos='<s>' ;; 2) eos='</s>' ;; 259) eos='\u2581' ;;
    *) if [ "$first" -lt 259 ]; then eos=$(printf '<0x%02X>' $((first - 3))); else eos="\\u2581w$first"; fi ;;
  esac
  printf '{"eos_token": "%s"}\n' "$eos" >"$dir/llama/tokenizer_config.json"
  run_case llama-eos 0 "generated ids (1): $first" --model "$dir/llama" --prompt "héllo wörld" --max-new-tokens 4 \
    --check
  rm "$dir/llama/tokenizer_config.json"
fi
run_case bad-prompt-id nonzero "id 301 at position 1 is outside the vocabulary [0, 301)" --model "$dir/llama" \
  --prompt-ids "1 301"

# The .npy: 128-byte header (v1.0, padded to 64) describing [8, 301] f32, then 8 * 301 floats.
expected_bytes=$((128 + 8 * 301 * 4))
if [ "$(stat -c %s "$dir/llama.npy" 2>/dev/null)" != "$expected_bytes" ] ||
   ! head -c 128 "$dir/llama.npy" | grep -qF "'shape': (8, 301)"; then
  echo "--- dump-logits: $dir/llama.npy is not an [8, 301] f32 .npy of $expected_bytes bytes"
  failures=$((failures + 1))
fi
echo "generate checks: $failures failed"
[ "$failures" -eq 0 ]
