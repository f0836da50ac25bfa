#!/usr/bin/env python3
"""Checks a run of examples/train against the same steps through transformers + torch (not part of make test).

Trains AutoModelForCausalLM from the same checkpoint in f32 (eager attention, CPU) with our fixed
semantics: step s uses rows (s*B .. s*B+B-1) mod N of the tokens file, inputs row[:-1], labels
row[1:], the mean token cross-entropy; torch.optim.AdamW(model.parameters(), lr, betas=(0.9, 0.95),
eps=1e-8, weight_decay=W); clip_grad_norm_ over all parameters before each step when --clip-grad-norm
is given. Then compares each step's loss and grad_norm with our --log jsonl, and the final weights
with our --save directory (loaded into a second transformers model, so both sides have transformers'
parameter names):

  scripts/mpirun.sh -np 2 build/examples/train --model /tmp/tiny --tokens /tmp/tokens.npy --steps 10 \\
      --batch 4 --lr 1e-3 --clip-grad-norm 1.0 --log /tmp/steps.jsonl --save /tmp/trained
  python3 tools/compare_torch_training.py --model /tmp/tiny --tokens /tmp/tokens.npy --steps 10 \\
      --batch 4 --lr 1e-3 --clip-grad-norm 1.0 --log /tmp/steps.jsonl --saved /tmp/trained

Prints a line per step and
  torch: loss_max_rel_diff=X grad_norm_max_rel_diff=X weight_max_abs_diff=X (NAME) ok|MISMATCH
exiting 1 when a loss differs by more than --loss-tolerance (relative) or a weight by more than
--weight-tolerance. Needs `pip install torch transformers numpy safetensors`.
"""
import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the checkpoint directory train was given")
    p.add_argument("--tokens", required=True, help="the .npy of token ids [N, T+1] train was given")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip-grad-norm", type=float, default=None)
    p.add_argument("--log", required=True, help="train's --log jsonl")
    p.add_argument("--saved", help="train's --save directory (the final weights); optional")
    p.add_argument("--loss-tolerance", type=float, default=1e-5, help="largest accepted relative loss difference")
    p.add_argument("--weight-tolerance", type=float, default=1e-5, help="largest accepted |weight difference|")
    return p.parse_args()


def load(directory):
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                                 attn_implementation="eager")
    except TypeError:
        return transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32,
                                                                 attn_implementation="eager")


def train(args, tokens):
    model = load(args.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=args.weight_decay)
    steps = []
    for s in range(args.steps):
        rows = tokens[[(s * args.batch + b) % len(tokens) for b in range(args.batch)]]
        inputs, labels = rows[:, :-1], rows[:, 1:]
        optimizer.zero_grad()
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        max_norm = args.clip_grad_norm if args.clip_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        steps.append({"step": s, "loss": loss.item(), "grad_norm": grad_norm.item()})
    return model, steps


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def compare_steps(ours, theirs):
    loss_diff = norm_diff = 0.0
    for o, t in zip(ours, theirs):
        print(f"step {t['step']}: loss ours {o['loss']:.9g} torch {t['loss']:.9g}  "
              f"grad_norm ours {o['grad_norm']:.9g} torch {t['grad_norm']:.9g}")
        loss_diff = max(loss_diff, relative(o["loss"], t["loss"]))
        norm_diff = max(norm_diff, relative(o["grad_norm"], t["grad_norm"]))
    return loss_diff, norm_diff


def compare_weights(saved_dir, model):
    saved = dict(load(saved_dir).named_parameters())
    worst, worst_name = 0.0, "-"
    for name, p in model.named_parameters():
        diff = (saved[name].detach() - p.detach()).abs().max().item()
        if diff >= worst:
            worst, worst_name = diff, name
    return worst, worst_name


def main():
    args = parse_args()
    torch.manual_seed(0)
    tokens = torch.from_numpy(np.load(args.tokens).astype(np.int64))
    with open(args.log) as f:
        ours = [json.loads(line) for line in f if line.strip()]
    if len(ours) != args.steps:
        sys.exit(f"{args.log}: {len(ours)} steps, expected {args.steps}")
    model, theirs = train(args, tokens)
    loss_diff, norm_diff = compare_steps(ours, theirs)
    weight_diff, name = compare_weights(args.saved, model) if args.saved else (0.0, "-")
    ok = loss_diff <= args.loss_tolerance and weight_diff <= args.weight_tolerance
    print(f"torch: loss_max_rel_diff={loss_diff:.3g} grad_norm_max_rel_diff={norm_diff:.3g} "
          f"weight_max_abs_diff={weight_diff:.3g} ({name}) {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
