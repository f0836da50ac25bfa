#!/usr/bin/env python3
"""Checks our logits against Hugging Face transformers on the same checkpoint (not part of make test).

Runs LlamaForCausalLM / MixtralForCausalLM (torch, CPU, f32, eager attention) on the prompt, compares
its logits with the .npy that `generate --dump-logits` wrote, and greedy-decodes to compare ids:

  build/tools/make_checkpoint --out /tmp/tiny --arch llama --vocab 1000
  scripts/mpirun.sh -np 2 build/examples/generate --model /tmp/tiny --prompt-ids "1 2 3" \
      --max-new-tokens 8 --dump-logits /tmp/tiny.npy
  python3 tools/compare_transformers.py --model /tmp/tiny --logits /tmp/tiny.npy \
      --prompt-ids "1 2 3" --max-new-tokens 8 --ids "<generate's ids>"

Prints `transformers: max_abs_diff=X ids=... ids_match=yes|no|-`; exits 1 when the difference
exceeds --tolerance (default 1e-4) or the ids differ. Needs `pip install torch transformers numpy`.

bf16 check: with --bf16-logits OURS_BF16.npy (the [prompt, vocab] f32 .npy of a bf16 run of
generate), bf16 logits cannot match f32 to 1e-4, so they are judged against transformers' own bf16
error instead. The model is loaded a second time with dtype=torch.bfloat16 and
--bf16-attention (default sdpa, transformers' default and what a user runs; eager rounds the
attention scores to bf16) and this prints

  bf16: ours_vs_f32=X torch_bf16_vs_f32=Y (sdpa) ratio=X/Y median_row_ratio=Z

with X = max |ours bf16 - transformers f32| and Y = max |transformers bf16 - transformers f32| over
all prompt logits. Acceptance rule: ratio <= 1.5, i.e. our bf16 error is at most 1.5 times
transformers' own bf16 error on the same prompt; exit 1 otherwise. median_row_ratio (reported, not
judged) compares the medians over positions of each position's largest difference, which a
mixture of experts' routing flips at near-ties do not dominate. With --bf16-logits, --logits
(the f32 comparison) is optional; without it, max_abs_diff prints as "-" and is not checked.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers

BF16_MAX_RATIO = 1.5  # accepted (our bf16 error) / (transformers' bf16 error), both against transformers f32


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--logits", help=".npy from generate --dump-logits: [prompt, vocab] f32 "
                   "(required unless --bf16-logits is given)")
    p.add_argument("--prompt-ids", required=True, help='the prompt given to generate, e.g. "1 2 3"')
    p.add_argument("--max-new-tokens", type=int, default=8, help="greedy tokens to decode")
    p.add_argument("--ids", default="", help="generate's ids to compare with (optional)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |logit difference|")
    p.add_argument("--bf16-attention", choices=["sdpa", "eager"], default="sdpa",
                   help="transformers' attention for its bf16 run (default: sdpa, its own default)")
    p.add_argument("--bf16-logits", help=".npy of our bf16 run's logits ([prompt, vocab] f32): checked "
                   f"against transformers' own bf16 error (ratio <= {BF16_MAX_RATIO})")
    args = p.parse_args()
    if not args.logits and not args.bf16_logits:
        p.error("--logits is required unless --bf16-logits is given")
    return args


def load_model(directory, dtype=torch.float32, attention="eager"):
    with open(os.path.join(directory, "config.json")) as f:
        architecture = json.load(f)["architectures"][0]
    model_class = getattr(transformers, architecture)
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        model = model_class.from_pretrained(directory, dtype=dtype, attn_implementation=attention)
    except TypeError:
        model = model_class.from_pretrained(directory, torch_dtype=dtype, attn_implementation=attention)
    return model.eval()


@torch.no_grad()
def greedy(model, prompt, new_tokens):
    """Full-sequence recompute each step (no cache): the simplest reference."""
    ids = list(prompt)
    for _ in range(new_tokens):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):]


@torch.no_grad()
def prompt_logits(model, prompt):
    """[prompt, vocab] float32 numpy logits of one forward over the prompt."""
    return model(input_ids=torch.tensor([prompt])).logits[0].float().numpy()


def max_abs_diff_to(path, reference):
    """max |npy at path - reference|, or None (after printing why) when the shapes differ."""
    ours = np.load(path)
    if ours.shape != reference.shape:
        print(f"transformers: shape mismatch: ours {ours.shape}, transformers {reference.shape}")
        return None
    return float(np.max(np.abs(ours.astype(np.float32) - reference)))


def check_bf16(args, prompt, reference):
    """The bf16 line; True when our bf16 error is within BF16_MAX_RATIO of transformers' own."""
    ours_error = max_abs_diff_to(args.bf16_logits, reference)
    if ours_error is None:
        return False
    torch_bf16 = load_model(args.model, torch.bfloat16, args.bf16_attention)
    torch_logits = prompt_logits(torch_bf16, prompt)
    torch_error = float(np.max(np.abs(torch_logits - reference)))
    if torch_error > 0:
        ratio = ours_error / torch_error
    else:
        ratio = 1.0 if ours_error == 0 else float("inf")
    # The median over positions of each position's largest difference: a mixture of experts flips
    # an expert at a near-tie here or there, which the maximum alone reports as the whole error.
    def median_row_error(logits):
        return float(np.median(np.max(np.abs(logits - reference), axis=1)))
    ours_median = median_row_error(np.load(args.bf16_logits).astype(np.float32))
    torch_median = median_row_error(torch_logits)
    print(f"bf16: ours_vs_f32={ours_error:.3g} torch_bf16_vs_f32={torch_error:.3g} ({args.bf16_attention}) "
          f"ratio={ratio:.3g} median_row_ratio={ours_median / torch_median if torch_median > 0 else 1.0:.3g}")
    return ratio <= BF16_MAX_RATIO


def main():
    args = parse_args()
    prompt = [int(x) for x in args.prompt_ids.split()]
    model = load_model(args.model)
    reference = prompt_logits(model, prompt)
    diff = None
    if args.logits:
        diff = max_abs_diff_to(args.logits, reference)
        if diff is None:
            return 1
    ids = greedy(model, prompt, args.max_new_tokens)
    ids_match = "-"
    if args.ids:
        ids_match = "yes" if [int(x) for x in args.ids.split()] == ids else "no"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {type(model).__name__}, "
          f"logits {list(reference.shape)}, max |logit| {float(np.max(np.abs(reference))):.3g}")
    diff_text = "-" if diff is None else f"{diff:.3g}"
    print(f"transformers: max_abs_diff={diff_text} ids={' '.join(map(str, ids))} ids_match={ids_match}")
    ok = (diff is None or diff <= args.tolerance) and ids_match != "no"
    if args.bf16_logits:
        del model  # the bf16 copy is loaded next
        ok = check_bf16(args, prompt, reference) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
