#!/usr/bin/env bash
# The bad-input sweep's program runs (tests/test_bad_input_sweep.cpp checks the same flags
# in-process): generate and train at 2 ranks with a bad flag, config, checkpoint, plan or output
# path must exit non-zero with one error line naming the culprit, and never through MPI_Abort.
# Usage: check_bad_input_programs.sh MPIRUN_WRAPPER MAKE_CHECKPOINT_EXE GENERATE_EXE TRAIN_EXE
set -u
mpirun_wrapper=$1
make_checkpoint=$2
generate=$3
train=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-bad-input-XXXXXX")
trap 'rm -rf "$dir"' EXIT
failures=0
cases=0

# name, text the one error line must contain, then the program and its args
run_case() {
  local name=$1 expected=$2 output rc errors verdict=ok
  shift 2
  output=$(timeout -k 5 120 "$mpirun_wrapper" -np 2 "$@" 2>&1)
  rc=$?
  errors=$(grep -c '^error: ' <<<"$output")
  if [ "$rc" -eq 0 ]; then verdict="exit code 0, expected non-zero"; fi
  if [ "$errors" -ne 1 ]; then verdict="$errors error lines, expected one"; fi
  if ! grep '^error: ' <<<"$output" | grep -qF -- "$expected"; then verdict="the error line lacks: $expected"; fi
  if grep -qF MPI_ABORT <<<"$output"; then verdict="the job was aborted (MPI_Abort)"; fi
  echo "--- $name: exit code $rc, $verdict"
  [ "$verdict" = ok ] || { echo "$output" | head -20; failures=$((failures + 1)); }
  cases=$((cases + 1))
}

"$make_checkpoint" --out "$dir/llama" --arch llama --hidden 32 --intermediate 48 --layers 1 --heads 4 \
  --kv-heads 2 --vocab 50 --seed 3 >/dev/null || exit 1
model=(--model "$dir/llama")
cp -r "$dir/llama" "$dir/zero-hidden"
sed -i 's/"hidden_size": *[0-9]*/"hidden_size": 0/' "$dir/zero-hidden/config.json"
cp -r "$dir/llama" "$dir/truncated"
truncate -s 100 "$dir/truncated/model.safetensors"
echo '{"model.layers.*.mlp.fc9": "colwise"}' >"$dir/no-module-plan.json"
echo '{"model.layers.*.mlp.up_proj": "diagonal"}' >"$dir/unknown-plan.json"
echo '{"model.norm": "colwise"}' >"$dir/norm-plan.json"
# generate --prompt: a model of 301 ids with a 16-position context and a tiny tokenizer.json; one
# whose tokenizer.json is of a model type text/ does not implement.
"$make_checkpoint" --out "$dir/text" --arch llama --hidden 32 --intermediate 48 --layers 1 --heads 4 \
  --kv-heads 2 --vocab 301 --max-position-embeddings 16 --seed 3 >/dev/null || exit 1
"$(dirname "$0")/write_tiny_tokenizer.sh" "$dir/text" 301 || exit 1
cp -r "$dir/text" "$dir/wordpiece"
sed -i 's/"type": "BPE"/"type": "WordPiece"/' "$dir/wordpiece/tokenizer.json"

run_case "generate: unknown flag" "--bogus" "$generate" "${model[@]}" --bogus
run_case "generate: no --model" "--model is required" "$generate" --prompt-ids "1 2"
run_case "generate: --max-new-tokens -1" "--max-new-tokens" "$generate" "${model[@]}" --max-new-tokens -1
run_case "generate: --prompt-ids with a word" "--prompt-ids: 'x'" "$generate" "${model[@]}" --prompt-ids "1 x"
run_case "generate: prompt id past the vocab" "id 50 at position 1" "$generate" "${model[@]}" --prompt-ids "1 50"
run_case "generate: --dump-logits in a missing directory" "--dump-logits" "$generate" "${model[@]}" \
  --dump-logits "$dir/absent/logits.npy"
run_case "generate: missing model" "$dir/absent-model" "$generate" --model "$dir/absent-model"
run_case "generate: hidden_size 0" "\"hidden_size\"" "$generate" --model "$dir/zero-hidden"
run_case "generate: truncated safetensors" "model.safetensors" "$generate" --model "$dir/truncated"
run_case "generate: missing plan" "absent-plan.json" "$generate" "${model[@]}" --plan "$dir/absent-plan.json"
run_case "generate: plan rule naming no module" "model.layers.*.mlp.fc9" "$generate" "${model[@]}" \
  --plan "$dir/no-module-plan.json"
run_case "generate: unknown strategy" "diagonal" "$generate" "${model[@]}" --plan "$dir/unknown-plan.json"
run_case "generate: colwise on a norm" "model.norm" "$generate" "${model[@]}" --plan "$dir/norm-plan.json"
run_case "generate: --prompt and --prompt-ids" "--prompt-ids" "$generate" --model "$dir/text" --prompt "hi" \
  --prompt-ids "1 2"
run_case "generate: --prompt without a tokenizer" "--prompt needs the model's tokenizer" "$generate" "${model[@]}" \
  --prompt "hi"
run_case "generate: tokenizer.json of a WordPiece model" "model.type" "$generate" --model "$dir/wordpiece" \
  --prompt "hi"
run_case "generate: --prompt longer than the context" \
  "--prompt: the prompt is 18 tokens, longer than the model's context of 16" \
  "$generate" --model "$dir/text" --prompt "0123456789abcdef"
run_case "generate: --prompt-ids longer than the context" "--prompt-ids: the prompt is 17 tokens" "$generate" \
  --model "$dir/text" --prompt-ids "$(seq -s ' ' 1 17)"
run_case "generate: --prompt and new tokens past the context" "--max-new-tokens 8" "$generate" --model "$dir/text" \
  --prompt "hello world" --max-new-tokens 8
run_case "generate: --chat without ChatML tokens" "--chat" "$generate" --model "$dir/text" --prompt "hi" --chat
train_flags=(--tokens "$dir/absent.npy" --steps 2 --batch 1)
run_case "train: --lr nan" "--lr" "$train" "${model[@]}" "${train_flags[@]}" --lr nan
run_case "train: --steps 0" "--steps" "$train" "${model[@]}" --tokens "$dir/absent.npy" --steps 0 --batch 1 --lr 1
run_case "train: --save under a file" "--save" "$train" "${model[@]}" "${train_flags[@]}" --lr 1e-3 \
  --save "$dir/llama/config.json/out"
run_case "train: missing tokens" "$dir/absent.npy" "$train" "${model[@]}" "${train_flags[@]}" --lr 1e-3
echo "bad-input program runs: $cases cases, $failures failed"
[ "$failures" -eq 0 ]
