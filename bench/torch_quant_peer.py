"""The peer of `make bench-quant`: transformers + torch in f32 on the same model, prompt and threads.

    python3 bench/torch_quant_peer.py MODEL.gguf --threads 2 --runs 3 --prompt-tokens 64 --new-tokens 32

Loads the GGUF through transformers (gguf_file=, dequantized to f32), then times greedy generation
as bench_quant does: a prefill of the prompt (ids 100, 101, ...) and single-token decode steps
through the KV cache. Prints one `quant-row:` line like bench_quant's (np=1, format=torch-f32;
weights_mib the parameters' bytes, rss_mib VmRSS after loading). Exits 2 without torch or
transformers (the Makefile then leaves the row out).
"""
import argparse
import os
import statistics
import sys
import time


def status_mib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as error:
        print(f"torch peer skipped: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    directory, name = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32).eval()
    rss = status_mib("VmRSS")
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    prompt = torch.arange(100, 100 + args.prompt_tokens).unsqueeze(0)
    prefill, decode = [], []
    with torch.inference_mode():
        for _ in range(args.runs):
            start = time.perf_counter()
            out = model(prompt, use_cache=True)
            prefill.append(args.prompt_tokens / (time.perf_counter() - start))
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            start = time.perf_counter()
            for _ in range(args.new_tokens - 1):
                out = model(token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            decode.append((args.new_tokens - 1) / (time.perf_counter() - start))
    print(f"quant-row: np=1 format=torch-f32 weights_mib={weights:.1f} rss_mib={rss:.1f} "
          f"hwm_mib={status_mib('VmHWM'):.1f} prefill_tps={statistics.median(prefill):.1f} "
          f"decode_tps={statistics.median(decode):.1f} max_diff=nan mean_diff=nan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
