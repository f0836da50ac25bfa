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
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--logits", required=True, help=".npy from generate --dump-logits: [prompt, vocab] f32")
    p.add_argument("--prompt-ids", required=True, help='the prompt given to generate, e.g. "1 2 3"')
    p.add_argument("--max-new-tokens", type=int, default=8, help="greedy tokens to decode")
    p.add_argument("--ids", default="", help="generate's ids to compare with (optional)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |logit difference|")
    return p.parse_args()


def load_model(directory):
    with open(os.path.join(directory, "config.json")) as f:
        architecture = json.load(f)["architectures"][0]
    model_class = getattr(transformers, architecture)
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        model = model_class.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = model_class.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="eager")
    return model.eval()


@torch.no_grad()
def greedy(model, prompt, new_tokens):
    """Full-sequence recompute each step (no cache): the simplest reference."""
    ids = list(prompt)
    for _ in range(new_tokens):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):]


def main():
    args = parse_args()
    prompt = [int(x) for x in args.prompt_ids.split()]
    model = load_model(args.model)
    with torch.no_grad():
        reference = model(input_ids=torch.tensor([prompt])).logits[0].float().numpy()
    ours = np.load(args.logits)
    if ours.shape != reference.shape:
        print(f"transformers: shape mismatch: ours {ours.shape}, transformers {reference.shape}")
        return 1
    diff = float(np.max(np.abs(ours - reference)))
    ids = greedy(model, prompt, args.max_new_tokens)
    ids_match = "-"
    if args.ids:
        ids_match = "yes" if [int(x) for x in args.ids.split()] == ids else "no"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {type(model).__name__}, "
          f"logits {list(reference.shape)}, max |logit| {float(np.max(np.abs(reference))):.3g}")
    print(f"transformers: max_abs_diff={diff:.3g} ids={' '.join(map(str, ids))} ids_match={ids_match}")
    return 0 if diff <= args.tolerance and ids_match != "no" else 1


if __name__ == "__main__":
    sys.exit(main())
