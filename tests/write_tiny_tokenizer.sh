#!/usr/bin/env bash
# Writes DIR/tokenizer.json: a SentencePiece-style BPE tokenizer of VOCAB ids for the tiny random
# checkpoints of the program checks (generate --prompt). Ids 0-2 are <unk> <s> </s> (special; <s>
# is the BOS the template adds), 3-258 the byte tokens <0x00>..<0xFF> (every character encodes
# through byte fallback), 259 "▁", and 260.. "▁w260".. up to VOCAB - 1 (decodable, never encoded).
# Usage: write_tiny_tokenizer.sh DIR VOCAB
set -eu
dir=$1
vocab=$2
{
  printf '{"version": "1.0", "added_tokens": ['
  for t in 0:'<unk>' 1:'<s>' 2:'</s>'; do
    printf '{"id": %d, "content": "%s", "special": true, "single_word": false, "lstrip": false, "rstrip": false, ' \
      "${t%%:*}" "${t#*:}"
    printf '"normalized": false}%s' "$([ "${t%%:*}" = 2 ] || echo ', ')"
  done
  printf '],\n'
  printf '"normalizer": null,\n'
  printf '"pre_tokenizer": {"type": "Metaspace", "replacement": "\\u2581", "prepend_scheme": "first", '
  printf '"split": false},\n'
  printf '"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, '
  printf '{"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"Sequence": {"id": "A", "type_id": 0}}, '
  printf '{"Sequence": {"id": "B", "type_id": 1}}], '
  printf '"special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},\n'
  printf '"decoder": {"type": "Sequence", "decoders": '
  printf '[{"type": "Replace", "pattern": {"String": "\\u2581"}, "content": " "}, '
  printf '{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},\n'
  printf '"model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true, "merges": [],\n'
  printf '"vocab": {"<unk>": 0, "<s>": 1, "</s>": 2'
  for ((b = 0; b < 256; b++)); do printf ', "<0x%02X>": %d' "$b" $((b + 3)); done
  printf ', "\\u2581": 259'
  for ((i = 260; i < vocab; i++)); do printf ', "\\u2581w%d": %d' "$i" "$i"; done
  printf '}}}\n'
} >"$dir/tokenizer.json"
