#!/usr/bin/env bash
# The train program end to end on tiny generated checkpoints: 10 AdamW steps with --check passing
# (losses within 1e-5 relative of the unsharded run on rank 0, weights within 1e-5) at np 1..4
# for a Llama with tied embeddings, an uneven vocab and 6 heads over 2 KV heads (at 4 ranks: the KV
# heads replicated, the heads uneven) and for a Mixtral; --dtype bf16 and --checkpoint-activations
# pass --check at np 2; --log writes one JSON line per step;
# --save writes a checkpoint generate loads (and --check passes on it); bad inputs (float, 1-D,
# 3-D or single-column --tokens, a batch larger than the file, a missing file, an id outside the
# vocabulary, an unwritable --log, nonsense flags) end every rank non-zero with the error, without
# an MPI abort.
# Usage: check_train.sh MPIRUN_WRAPPER MAKE_CHECKPOINT_EXE TRAIN_EXE GENERATE_EXE
set -u
mpirun_wrapper=$1
make_checkpoint=$2
train=$3
generate=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-train-XXXXXX")
trap 'rm -rf "$dir"' EXIT
failures=0

# name, ranks, expected exit code (0 or "nonzero"), text the output must contain, then the program and its args
run_case() {
  local name=$1 np=$2 expected_rc=$3 expected=$4 output rc verdict=ok
  shift 4
  output=$(timeout -k 5 120 "$mpirun_wrapper" -np "$np" "$@" 2>&1)
  rc=$?
  echo "--- $name (np $np): exit code $rc"
  echo "$output" | grep -v '^\s*$' | tail -6
  if [ "$expected_rc" = 0 ] && [ "$rc" -ne 0 ]; then verdict="exit code $rc, expected 0"; fi
  if [ "$expected_rc" = nonzero ] && [ "$rc" -eq 0 ]; then verdict="exit code 0, expected non-zero"; fi
  if ! grep -qF -- "$expected" <<<"$output"; then verdict="output lacks: $expected"; fi
  if [ "$expected_rc" = nonzero ] && grep -qF MPI_ABORT <<<"$output"; then verdict="the job was aborted"; fi
  echo "--- $name (np $np): $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}

# write_npy and tokens
source "$(dirname "$0")/npy_tokens.sh"

"$make_checkpoint" --out "$dir/llama" --arch llama --hidden 48 --intermediate 80 --layers 2 --heads 6 \
  --kv-heads 2 --vocab 301 --tie-word-embeddings --seed 5 >/dev/null || exit 1
"$make_checkpoint" --out "$dir/mixtral" --arch mixtral --hidden 32 --intermediate 40 --layers 2 --heads 4 \
  --kv-heads 1 --vocab 203 --experts 3 --experts-per-tok 2 --seed 6 --max-shard-bytes 40000 >/dev/null || exit 1
tokens "$dir/llama-tokens.npy" 7 9 301
tokens "$dir/mixtral-tokens.npy" 5 7 203

for np in 1 2 3 4; do
  run_case "llama 10 steps" $np 0 ") ok" "$train" --model "$dir/llama" --tokens "$dir/llama-tokens.npy" \
    --steps 10 --batch 3 --lr 1e-3 --clip-grad-norm 1.0 --log "$dir/llama-np$np.jsonl" --check
  run_case "mixtral 10 steps" $np 0 ") ok" "$train" --model "$dir/mixtral" \
    --tokens "$dir/mixtral-tokens.npy" --steps 10 --batch 2 --lr 1e-3 --weight-decay 0.1 --check
done
# A plan of local strategies: every parameter a plain tensor, the attention's split by heads (6 over
# 2 KV heads), so the gradient norm and the gathered weights follow each strategy's plain_share.
cat >"$dir/local-plan.json" <<'EOF'
{"model.layers.*.self_attn.q_proj": "local_colwise", "model.layers.*.self_attn.k_proj": "local_colwise",
 "model.layers.*.self_attn.v_proj": "local_colwise", "model.layers.*.self_attn.o_proj": "local_rowwise",
 "model.layers.*.self_attn": "gather", "model.layers.*.mlp.gate_proj": "local_colwise",
 "model.layers.*.mlp.up_proj": "local_colwise", "model.layers.*.mlp.down_proj": "local_rowwise",
 "model.layers.*.mlp": "gather"}
EOF
for np in 3 4; do
  run_case "llama local plan" $np 0 ") ok" "$train" --model "$dir/llama" --tokens "$dir/llama-tokens.npy" \
    --steps 5 --batch 3 --lr 1e-3 --clip-grad-norm 1.0 --plan "$dir/local-plan.json" --check
done
# bf16 compute over f32 masters, and activation checkpointing (the same numbers as without), at np 2.
run_case "llama bf16" 2 0 ") ok" "$train" --model "$dir/llama" --tokens "$dir/llama-tokens.npy" --steps 5 --batch 3 \
  --lr 1e-3 --dtype bf16 --check
run_case "mixtral checkpointing" 2 0 ") ok" "$train" --model "$dir/mixtral" --tokens "$dir/mixtral-tokens.npy" \
  --steps 5 --batch 2 --lr 1e-3 --checkpoint-activations --check
if [ "$(grep -c '^{"step": [0-9]*, "loss": [0-9.e-]*, "grad_norm": [0-9.e-]*}$' "$dir/llama-np2.jsonl")" != 10 ]; then
  echo "--- log: $dir/llama-np2.jsonl lacks 10 step lines"
  failures=$((failures + 1))
fi

# --save: the trained checkpoints load in generate (sharded, checked against unsharded) and differ
# from the untrained ones.
run_case "llama save" 3 0 "saved: $dir/llama-trained" "$train" --model "$dir/llama" --tokens "$dir/llama-tokens.npy" \
  --steps 3 --batch 2 --lr 1e-2 --save "$dir/llama-trained"
run_case "llama saved loads" 2 0 "check: ids_match=yes" "$generate" --model "$dir/llama-trained" --prompt-ids "3 1 4" \
  --max-new-tokens 4 --check
run_case "mixtral save" 2 0 "saved: $dir/mixtral-trained" "$train" --model "$dir/mixtral" \
  --tokens "$dir/mixtral-tokens.npy" --steps 3 --batch 2 --lr 1e-2 --save "$dir/mixtral-trained"
run_case "mixtral saved loads" 3 0 "check: ids_match=yes" "$generate" --model "$dir/mixtral-trained" \
  --prompt-ids "3 1 4" --max-new-tokens 4 --check
if cmp -s "$dir/llama/model.safetensors" "$dir/llama-trained/model.safetensors"; then
  echo "--- save: the trained Llama's weights equal the untrained ones"
  failures=$((failures + 1))
fi

# Bad input: every rank stops with the error, exit code non-zero, no abort.
llama=(--model "$dir/llama" --steps 2 --lr 1e-3)
write_npy "$dir/float.npy" "<f4" "(4, 5)" "f<" $(seq 20)
write_npy "$dir/flat.npy" "<i8" "(6,)" "q<" 1 2 3 4 5 6
write_npy "$dir/cube.npy" "<i8" "(1, 2, 3)" "q<" 1 2 3 4 5 6
write_npy "$dir/one-column.npy" "<i8" "(6, 1)" "q<" 1 2 3 4 5 6
write_npy "$dir/outside.npy" "<i8" "(2, 3)" "q<" 1 2 3 4 301 6
run_case "float tokens" 2 nonzero "token ids must be integers, the file holds f32" "$train" "${llama[@]}" \
  --tokens "$dir/float.npy" --batch 1
run_case "1-D tokens" 2 nonzero "must be 2-D [N, T+1], the file's shape is [6]" "$train" "${llama[@]}" \
  --tokens "$dir/flat.npy" --batch 1
run_case "3-D tokens" 3 nonzero "the file's shape is [1, 2, 3]" "$train" "${llama[@]}" --tokens "$dir/cube.npy" \
  --batch 1
run_case "T+1 < 2" 2 nonzero "T+1 >= 2 columns" "$train" "${llama[@]}" --tokens "$dir/one-column.npy" --batch 1
run_case "batch > rows" 4 nonzero "--batch 8 is larger than the 7 rows" "$train" "${llama[@]}" \
  --tokens "$dir/llama-tokens.npy" --batch 8
run_case "missing tokens" 2 nonzero "$dir/absent.npy: cannot read the file" "$train" "${llama[@]}" \
  --tokens "$dir/absent.npy" --batch 1
run_case "id outside the vocab" 2 nonzero "id 301 at row 1 column 1 is outside the vocabulary [0, 301)" "$train" \
  "${llama[@]}" --tokens "$dir/outside.npy" --batch 1
run_case "unwritable log" 2 nonzero "--log $dir/absent/steps.jsonl: cannot write the file" "$train" "${llama[@]}" \
  --tokens "$dir/llama-tokens.npy" --batch 1 --log "$dir/absent/steps.jsonl"
run_case "nonsense flag" 2 nonzero "--bogus" "$train" "${llama[@]}" --tokens "$dir/llama-tokens.npy" --batch 1 --bogus
run_case "nonsense number" 2 nonzero "--steps" "$train" --model "$dir/llama" --tokens "$dir/llama-tokens.npy" \
  --steps ten --batch 1 --lr 1e-3
echo "train checks: $failures failed"
[ "$failures" -eq 0 ]
