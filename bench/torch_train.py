"""Times a training step of a Llama checkpoint in transformers on 1 CPU thread: the peer of `make bench-train`.

Does what bench_train does per step, with what a user would pick instead: transformers'
LlamaForCausalLM (torch, CPU, f32, default "sdpa" attention, train mode) on the same checkpoint,
--batch rows of --seq tokens with ids[i] = (i * 7919 + 13 * (i // (seq + 1)) + 5) % vocab over the
[rows, seq + 1] token matrix (bench_train.cpp's rule), inputs row[:-1], labels row[1:], mean token
cross-entropy, backward, clip_grad_norm_(1.0) and torch.optim.AdamW(lr=1e-4, betas=(0.9, 0.95),
eps=1e-8, weight_decay=0.01). --warmup untimed steps, then --repeats timed ones; the medians of
the forward (through the loss), backward and optimizer seconds and of the whole step go to OUT.json
with the process's peak RSS.

Usage: python3 bench/torch_train.py MODEL_DIR OUT.json [--batch 8] [--seq 256] [--repeats 3] [--warmup 1]

Exits 3 without writing OUT.json when torch or transformers cannot be imported (the Makefile
reads that as "peer not available").
"""
import argparse
import json
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    import transformers
except Exception as e:  # ImportError, or a broken install failing at import
    print(f"[torch_train] torch/transformers not available: {e}", file=sys.stderr)
    sys.exit(3)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    return ap.parse_args()


def tokens(rows, columns, vocab):
    ids = [(i * 7919 + 13 * (i // columns) + 5) % vocab for i in range(rows * columns)]
    return torch.tensor(ids, dtype=torch.int64).reshape(rows, columns)


def main():
    args = parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, torch_dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    data = tokens(args.batch * (args.warmup + args.repeats), args.seq + 1, model.config.vocab_size)
    times = {"forward_s": [], "backward_s": [], "optimizer_s": [], "step_s": []}
    for step in range(args.warmup + args.repeats):
        rows = data[step * args.batch:(step + 1) * args.batch]
        optimizer.zero_grad()
        start = time.perf_counter()
        logits = model(input_ids=rows[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        forward_end = time.perf_counter()
        loss.backward()
        backward_end = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        end = time.perf_counter()
        if step < args.warmup:
            continue
        times["forward_s"].append(forward_end - start)
        times["backward_s"].append(backward_end - forward_end)
        times["optimizer_s"].append(end - backward_end)
        times["step_s"].append(end - start)
    result = {key: statistics.median(values) for key, values in times.items()}
    result["tokens"] = args.batch * args.seq
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"torch {torch.__version__} transformers {transformers.__version__}, 1 thread: step {result['step_s']:.3f} s "
          f"(forward {result['forward_s']:.3f}, backward {result['backward_s']:.3f}, "
          f"optimizer {result['optimizer_s']:.3f}), {result['tokens'] / result['step_s']:.1f} tokens/s")


if __name__ == "__main__":
    main()
