#!/usr/bin/env bash
# tools/tokenize on the tiny tokenizer of write_tiny_tokenizer.sh (ids worked out by hand: <s> is
# 1, "▁" 259, every other character its UTF-8 byte tokens, byte + 3): encoding with and without
# BOS, --escaped newlines and tabs both ways, decoding with and without special tokens, and bad
# input (invalid UTF-8, an id that is not a number or is outside the vocabulary, a missing model,
# an unsupported tokenizer.json) exiting 1 with one message naming the line or the field.
# Usage: check_tokenize.sh TOKENIZE_EXE
set -u
tokenize=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-tokenize-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$(dirname "$0")/write_tiny_tokenizer.sh" "$dir" 301 || exit 1
failures=0

# name, stdin, expected stdout, then tokenize's flags
expect_output() {
  local name=$1 input=$2 expected=$3 output
  shift 3
  output=$(printf '%s' "$input" | "$tokenize" --model "$dir" "$@" 2>&1)
  if [ "$output" = "$expected" ]; then
    echo "--- $name: ok"
  else
    echo "--- $name: got '$output', expected '$expected'"
    failures=$((failures + 1))
  fi
}

# name, stdin, text the error must contain, then tokenize's args
expect_error() {
  local name=$1 input=$2 expected=$3 output rc
  shift 3
  output=$(printf '%s' "$input" | "$tokenize" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -eq 1 ] && grep -qF -- "$expected" <<<"$output"; then
    echo "--- $name: ok"
  else
    echo "--- $name: exit code $rc, message '$output', expected 1 and '$expected'"
    failures=$((failures + 1))
  fi
}

expect_output encode $'héllo wörld\n' "1 259 107 198 172 111 111 114 259 122 198 185 117 111 103"
# An empty line is an empty text: no ids (the BOS only without --no-special).
expect_output encode-no-special $'ab\n\nab\n' $'259 100 101\n\n259 100 101' --no-special
expect_output encode-escaped 'a\tb\nc' "1 259 100 12 101 13 102" --escaped
expect_output decode $'1 259 100 12 101\n' $'<s> a\tb' --decode
expect_output decode-escaped $'1 259 100 12 101 13 102\n' '<s> a\tb\nc' --decode --escaped
expect_output decode-no-special $'1 259 100 12 101\n' $'a\tb' --decode --no-special

wordpiece=$dir/wordpiece.json
sed 's/"type": "BPE"/"type": "WordPiece"/' "$dir/tokenizer.json" >"$wordpiece"
expect_error invalid-utf8 $'ok\nbad \xC3(\n' "line 2" --model "$dir"
expect_error id-not-a-number $'1 x\n' "line 1" --model "$dir" --decode
expect_error id-outside-vocab $'1 301\n' "token id 301 is outside the vocabulary [0, 301)" --model "$dir" --decode
expect_error missing-model '' "$dir/absent does not exist" --model "$dir/absent"
expect_error wordpiece '' "model.type" --model "$wordpiece"
echo "tokenize checks: $failures failed"
[ "$failures" -eq 0 ]
