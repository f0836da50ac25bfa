"""Times prefill and greedy decode of a Llama checkpoint in transformers on CPU: the peer of `make bench-tp-forward`.

bench_tp_forward times our C++ runtime on a Hugging Face Llama checkpoint; this script times what a
user would pick instead for the same job: transformers' LlamaForCausalLM (torch, CPU, default
"sdpa" attention, eval mode, torch.inference_mode()) on the same checkpoint. It does the same
work as the C++ bench, per repeat:

  - prefill: one forward over the whole prompt with use_cache=True, then the argmax of the last
    position's logits as the next id. The prompt ids are ids[i] = (i * 7919 + 13) % vocab_size,
    the rule bench_tp_forward.cpp uses. As in our bench, logits are computed for every position.
  - decode: --decode greedy steps, each a forward of the single next id on the KV cache
    (past_key_values, named `cache` in recent transformers) of the previous call, timed together.

--warmup untimed repeats come first, then --repeats timed ones; the median prefill and median
decode seconds are reported, tokens/s = prefill tokens (or decode steps) / median seconds. This
runs for every --dtypes x --threads pair (torch.set_num_threads; inter-op threads are set to 1
once at start), writes OUT.json and prints one line per run.

Usage: python3 bench/torch_tp_forward.py MODEL_DIR OUT.json [--prefill 512] [--decode 64]
           [--repeats 3] [--warmup 1] [--threads 1,2] [--dtypes f32,bf16]

Exits 3 without writing OUT.json when torch or transformers cannot be imported (the Makefile
reads that as "peer not available").
"""
import argparse
import inspect
import json
import os
import statistics
import sys
import time

try:
    import torch
    import transformers
    from transformers import LlamaForCausalLM
except Exception as e:  # ImportError, or a broken install failing at import
    print(f"[torch_tp_forward] torch/transformers not available: {e}", file=sys.stderr)
    sys.exit(3)

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}
# The KV cache argument and output field: `cache` in recent transformers (5.x deprecates the old name,
# with a warning), `past_key_values` before.
CACHE = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens")
    ap.add_argument("--decode", type=int, default=64, help="greedy decode steps")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repeats first")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--dtypes", default="f32,bf16", help="comma-separated, from: " + ",".join(DTYPES))
    args = ap.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    args.dtypes = args.dtypes.split(",")
    for d in args.dtypes:
        if d not in DTYPES:
            ap.error(f"--dtypes: unknown dtype {d!r}")
    if args.prefill < 1 or args.decode < 0 or args.repeats < 1 or args.warmup < 0:
        ap.error("need --prefill >= 1, --decode >= 0, --repeats >= 1, --warmup >= 0")
    return args


def load(model_dir, dtype):
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=dtype)
    return model.eval()


def run_once(model, prompt, decode):
    """One prefill then `decode` greedy cached steps: (prefill seconds, decode seconds)."""
    start = time.perf_counter()
    out = model(input_ids=prompt, use_cache=True)
    next_id = out.logits[0, -1].argmax().view(1, 1)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(decode):
        out = model(input_ids=next_id, use_cache=True, **{CACHE: getattr(out, CACHE)})
        next_id = out.logits[0, -1].argmax().view(1, 1)
    return prefill_s, time.perf_counter() - start


def main():
    args = parse_args()
    try:  # only allowed before any inter-op parallel work
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    result = {"torch": torch.__version__, "transformers": transformers.__version__, "model": args.model_dir,
              "prefill": args.prefill, "decode": args.decode, "repeats": args.repeats, "warmup": args.warmup,
              "runs": []}
    with torch.inference_mode():
        for dtype in args.dtypes:
            model = load(args.model_dir, DTYPES[dtype])
            vocab = model.config.vocab_size
            prompt = torch.tensor([[(i * 7919 + 13) % vocab for i in range(args.prefill)]])
            for threads in args.threads:
                torch.set_num_threads(threads)
                for _ in range(args.warmup):
                    run_once(model, prompt, args.decode)
                times = [run_once(model, prompt, args.decode) for _ in range(args.repeats)]
                prefill_s = statistics.median(t[0] for t in times)
                decode_s = statistics.median(t[1] for t in times)
                run = {"dtype": dtype, "threads": threads, "prefill_s": prefill_s, "decode_s": decode_s,
                       "prefill_tokens_per_s": args.prefill / prefill_s,
                       "decode_tokens_per_s": args.decode / decode_s if decode_s > 0 else 0.0}
                result["runs"].append(run)
                print(f"torch {dtype} threads={threads}: prefill {args.prefill} tokens {prefill_s:.3f} s "
                      f"({run['prefill_tokens_per_s']:.1f} tok/s), decode {args.decode} steps {decode_s:.3f} s "
                      f"({run['decode_tokens_per_s']:.1f} tok/s)", flush=True)
            del model
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
