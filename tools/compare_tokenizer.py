#!/usr/bin/env python3
"""Checks build/tools/tokenize against Hugging Face `tokenizers` on a corpus (docs/design.md
section 6, Tokenizers).

For each tokenizer case it encodes every corpus text with both (with and without special tokens),
decodes our ids with both (special tokens kept), and counts the texts whose ids and decoded text are
identical. Exit 0 when every case matches on every text, 1 otherwise, 77 (skip) when a module or an
input file is missing.

    python3 tools/compare_tokenizer.py --tokenize build/tools/tokenize --corpus tests/data/tokenizer_corpus.txt
        --smollm2 build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --llama-vocab build/llama-vocab
        --work build/tokenizer-check [--time]

Cases (each skipped when its file is absent): SmolLM2 from its GGUF (the Hugging Face side converts
the GGUF metadata with transformers) and from tokenizer.json files: the one that conversion saves
and SmolLM2's own pre-tokenizer (Digits + ByteLevel); llama.cpp's vocabulary GGUFs for Llama-2
(SentencePiece BPE) and Llama-3 (byte-level BPE), from the GGUF and from the converted
tokenizer.json, and Llama-2's original tokenizer.json form (a Prepend + Replace normalizer instead
of Metaspace). --time also measures encoding speed (median of 3) on each side.
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

SKIP = 77
REPAIRS = 3  # the repairs gguf_tokenizer makes; a change rebuilds the cached references


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def unescape(line):
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def run_tool(tool, model, lines, *flags):
    result = subprocess.run([tool, "--model", model, "--escaped", *flags], input="\n".join(lines) + "\n",
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"compare_tokenizer: {tool} --model {model} {' '.join(flags)} failed: {result.stderr.strip()}")
    return result.stdout.split("\n")[: len(lines)], result.stderr


def gguf_tokenizer(path):
    """The tokenizer transformers builds from a GGUF's metadata, and the tokenizers.Tokenizer the
    check compares with: that one with two repairs, each of which the report counts separately.
    - tokenizer.ggml.pre=smollm: transformers has no split for it and falls back to GPT-2's; the
      file means SmolLM2's own pre-tokenizer, Digits(individual_digits) then ByteLevel (as in
      SmolLM2's tokenizer.json and llama.cpp's smollm pre-tokenizer).
    - transformers' GPT2Tokenizer adds its default "<|endoftext|>" as a new id past the file's
      vocabulary where the vocabulary lacks it (Llama-3); a model has no embedding row for it.
    - tokenizer.ggml.pre=llama-bpe: Llama-3's tokenizer.json (and llama.cpp) take a word found whole
      in the vocabulary before merging (ignore_merges); the conversion merges it.
    """
    import gguf
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    reader = gguf.GGUFReader(path)
    field = reader.fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field else "default"
    vocab_size = len(reader.fields["tokenizer.ggml.tokens"].data)
    data = json.loads(tok.backend_tokenizer.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < vocab_size]
    if pre == "smollm":
        smollm2_pre_tokenizer(data)
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        data["model"]["ignore_merges"] = True
    return tok, tok.backend_tokenizer, Tokenizer.from_str(json.dumps(data))


def save_json_variants(name, converted_dir, work, cases, patch=None):
    """The converted tokenizer.json (and optionally a patched variant) as cases of their own."""
    cases.append((f"{name} tokenizer.json", converted_dir, os.path.join(converted_dir, "tokenizer.json")))
    if patch:
        variant_name, edit = patch
        with open(os.path.join(converted_dir, "tokenizer.json"), encoding="utf-8") as f:
            data = json.load(f)
        edited = edit(copy.deepcopy(data))
        variant = os.path.join(work, f"{name}-{variant_name}")
        os.makedirs(variant, exist_ok=True)
        path = os.path.join(variant, "tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(edited, f, ensure_ascii=False)
        cases.append((f"{name} tokenizer.json ({variant_name})", path, path))


def converted(name, path, work):
    """transformers' conversion of the GGUF saved in work/name (tokenizer.json as converted) and
    work/name-reference.json (repaired), made once per GGUF file: converting Llama-3's 280,000
    merges takes transformers most of a minute."""
    from tokenizers import Tokenizer

    out = os.path.join(work, name)
    reference = os.path.join(work, f"{name}-reference.json")
    stamp = os.path.join(work, f"{name}.source")
    source = f"{os.path.abspath(path)} {os.path.getsize(path)} {os.path.getmtime(path)} {REPAIRS}"
    fresh = os.path.exists(stamp) and open(stamp).read() == source and os.path.exists(reference)
    if not fresh:
        hf_auto, _, repaired = gguf_tokenizer(path)
        hf_auto.save_pretrained(out)
        repaired.save(reference)
        with open(stamp, "w") as f:
            f.write(source)
    return out, Tokenizer.from_file(os.path.join(out, "tokenizer.json")), Tokenizer.from_file(reference)


def smollm2_pre_tokenizer(data):
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    return data


def llama2_legacy_normalizer(data):
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    data["pre_tokenizer"] = None
    return data


def collect_cases(args):
    """(name, our --model argument, Hugging Face tokenizer or tokenizer.json path) for each case."""
    cases = []
    gguf_cases = []
    if args.smollm2 and os.path.exists(args.smollm2):
        gguf_cases.append(("smollm2", args.smollm2, ("digits", smollm2_pre_tokenizer)))
    else:
        print(f"compare_tokenizer: SmolLM2 GGUF {args.smollm2} absent; its cases skipped")
    for vocab, patch in (("llama-spm", ("legacy", llama2_legacy_normalizer)), ("llama-bpe", None)):
        path = os.path.join(args.llama_vocab or "", f"ggml-vocab-{vocab}.gguf")
        if args.llama_vocab and os.path.exists(path):
            gguf_cases.append((vocab, path, patch))
        else:
            print(f"compare_tokenizer: {path} absent; its cases skipped")
    for name, path, patch in gguf_cases:
        converted_dir, as_converted, repaired = converted(name, path, args.work)
        cases.append((f"{name} GGUF", path, (repaired, as_converted)))
        save_json_variants(name, converted_dir, args.work, cases, patch)
    return cases


def hf_from(spec):
    """(the reference tokenizer, transformers' GGUF conversion as is or None)."""
    from tokenizers import Tokenizer

    if isinstance(spec, str):
        return Tokenizer.from_file(spec), None
    return spec


def time_hf(hf, texts):
    """Tokens/s of Tokenizer.encode one text at a time (as our tool does) and of encode_batch (all
    texts in one call, Rust threads over the host's cores), each the median of 3 runs."""
    rates = []
    for encode in (lambda: [hf.encode(t, add_special_tokens=False) for t in texts],
                   lambda: hf.encode_batch(texts, add_special_tokens=False)):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            count = sum(len(e.ids) for e in encode())
            runs.append(time.perf_counter() - start)
        rates.append(count / statistics.median(runs))
    return rates


def time_ours(tool, model, lines):
    rates = []
    for _ in range(3):
        _, err = run_tool(tool, model, lines, "--no-special", "--timing")
        rates.append(float(err.split("tokens/s")[0].split()[-1]))
    return statistics.median(rates)


def llama_cpp_vectors(args, model):
    """llama.cpp's own test texts and ids for its vocabulary GGUFs (MODEL.inp / MODEL.out, ids
    without BOS): how many of ours agree. Printed, not checked: for SentencePiece vocabularies
    llama.cpp prepends "▁" to a text that starts with a space, and Hugging Face does not."""
    inp, out = model + ".inp", model + ".out"
    if not (os.path.exists(inp) and os.path.exists(out)):
        return
    with open(inp, encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")
    if texts and texts[-1] == "":
        texts.pop()
    with open(out, encoding="utf-8") as f:
        expected = f.read().strip("\n").split("\n")
    ours, _ = run_tool(args.tokenize, model, [escape(t) for t in texts], "--no-special")
    same = sum(o.split() == e.split() for o, e in zip(ours, expected))
    starting_with_space = sum(t.startswith(" ") for t in texts)
    print(f"{os.path.basename(model)}: llama.cpp's test vectors: {same}/{len(texts)} identical "
          f"({starting_with_space} texts start with a space)")


def check_case(args, name, model, spec, lines, texts):
    hf, as_converted = hf_from(spec)
    failures = 0
    ours_special, _ = run_tool(args.tokenize, model, lines)
    ours_plain, _ = run_tool(args.tokenize, model, lines, "--no-special")
    ours_decoded, _ = run_tool(args.tokenize, model, ours_special, "--decode")
    ids_same = decode_same = round_trips = hf_round_trips = 0
    for i, text in enumerate(texts):
        want_special = hf.encode(text).ids
        want_plain = hf.encode(text, add_special_tokens=False).ids
        got_special = [int(x) for x in ours_special[i].split()]
        got_plain = [int(x) for x in ours_plain[i].split()]
        if got_special == want_special and got_plain == want_plain:
            ids_same += 1
        elif failures < args.show:
            failures += 1
            print(f"  [{name}] text {i + 1} {text!r}:\n    ours {got_plain}\n    hf   {want_plain}")
        want_text = hf.decode(want_special, skip_special_tokens=False)
        got_text = unescape(ours_decoded[i])
        if got_text == want_text:
            decode_same += 1
        elif failures < args.show:
            failures += 1
            print(f"  [{name}] decode of text {i + 1}:\n    ours {got_text!r}\n    hf   {want_text!r}")
        round_trips += got_text.endswith(text) and got_text.removesuffix(text).strip() in ("", "<s>", "<s> ")
        hf_round_trips += want_text.endswith(text) and want_text.removesuffix(text).strip() in ("", "<s>", "<s> ")
    ok = ids_same == len(texts) and decode_same == len(texts)
    if model.endswith(".gguf"):
        llama_cpp_vectors(args, model)
    if as_converted is not None:
        plain = sum([int(x) for x in ours_plain[i].split()] == as_converted.encode(t, add_special_tokens=False).ids
                    for i, t in enumerate(texts))
        print(f"{name}: ids identical to transformers' GGUF conversion as is (no repairs): {plain}/{len(texts)}")
    print(f"{name}: texts={len(texts)} ids_identical={ids_same} decode_identical={decode_same} "
          f"round_trips={round_trips} (hf {hf_round_trips}) {'OK' if ok else 'MISMATCH'}")
    if args.time:
        (hf_rate, hf_batch_rate), our_rate = time_hf(hf, texts), time_ours(args.tokenize, model, lines)
        print(f"{name}: encode tokens/s (median of 3): ours {our_rate:.0f} (one thread), hf tokenizers "
              f"encode {hf_rate:.0f}, encode_batch {hf_batch_rate:.0f}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenize", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--smollm2")
    parser.add_argument("--llama-vocab")
    parser.add_argument("--work", required=True)
    parser.add_argument("--time", action="store_true")
    parser.add_argument("--show", type=int, default=5, help="mismatches to print per case")
    args = parser.parse_args()
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"compare_tokenizer: SKIP: {e}")
        return SKIP
    with open(args.corpus, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    texts = [unescape(line) for line in lines]
    os.makedirs(args.work, exist_ok=True)
    cases = collect_cases(args)
    if not cases:
        print("compare_tokenizer: SKIP: no tokenizer files (scripts/fetch-smollm2.sh, scripts/fetch-llama-vocab.sh)")
        return SKIP
    results = [check_case(args, name, model, spec, lines, texts) for name, model, spec in cases]
    print(f"compare_tokenizer: {sum(results)}/{len(results)} cases identical on {len(texts)} texts")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
