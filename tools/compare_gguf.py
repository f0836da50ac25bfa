#!/usr/bin/env python3
"""Checks generate on a GGUF file against transformers loading the same file (gguf_file=).

transformers dequantizes the GGUF (through the gguf PyPI package) and runs LlamaForCausalLM on the
CPU in f32 with eager attention, once; then our generate runs at every --np (through the mpirun
wrapper, with --check and --dump-logits) and each run's prompt logits and greedy ids are compared:

  python3 tools/compare_gguf.py --gguf build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
      --generate build/examples/generate --mpirun scripts/mpirun.sh --np 1 2 3 4

Prints per rank count `gguf np=N: max_abs_diff=X ids_match=yes|no check=ok|failed`, and exits 1
when a difference exceeds --tolerance (default 1e-4), the ids differ or generate fails; exits 77
(a skip) when torch, transformers, gguf or numpy is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", required=True, help="the .gguf file")
    p.add_argument("--generate", required=True, help="build/examples/generate")
    p.add_argument("--mpirun", required=True, help="scripts/mpirun.sh")
    p.add_argument("--np", type=int, nargs="+", default=[1, 2, 3, 4], help="rank counts to run")
    p.add_argument("--prompt-ids", default="1 504 3458 282 4649 314 253", help="prompt token ids")
    p.add_argument("--max-new-tokens", type=int, default=6, help="greedy tokens to decode")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |logit difference|")
    return p.parse_args()


def import_modules():
    """(numpy, torch, transformers), or exit 77 naming the missing module."""
    try:
        import gguf  # noqa: F401  (transformers reads the file through it)
        import numpy
        import torch
        import transformers
    except ImportError as e:
        print(f"SKIP: {e.name} is not installed (scripts/install-py-tools.sh)")
        sys.exit(SKIP)
    return numpy, torch, transformers


def reference(torch, transformers, path, prompt, new_tokens):
    """transformers' [prompt, vocab] f32 logits and greedy ids (full recompute each step)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path), dtype=torch.float32,
        attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0].float().numpy()
        ids = list(prompt)
        for _ in range(new_tokens):
            ids.append(int(torch.argmax(model(input_ids=torch.tensor([ids])).logits[0, -1])))
    return logits, ids[len(prompt):]


def generated_ids(output):
    for line in output.splitlines():
        if line.startswith("generated ids"):
            return [int(x) for x in line.split(":", 1)[1].split()]
    return None


def run_ours(args, ranks, logits_path):
    command = [args.mpirun, "-np", str(ranks), args.generate, "--model", args.gguf, "--prompt-ids", args.prompt_ids,
               "--max-new-tokens", str(args.max_new_tokens), "--check", "--dump-logits", logits_path]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def main():
    args = parse_args()
    numpy, torch, transformers = import_modules()
    prompt = [int(x) for x in args.prompt_ids.split()]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    expected_logits, expected_ids = reference(torch, transformers, args.gguf, prompt, args.max_new_tokens)
    print(f"transformers: ids={' '.join(map(str, expected_ids))}")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.np:
            logits_path = os.path.join(tmp, f"np{ranks}.npy")
            rc, output = run_ours(args, ranks, logits_path)
            ids = generated_ids(output)
            if rc != 0 or ids is None or not os.path.exists(logits_path):
                print(f"gguf np={ranks}: generate failed (exit code {rc})\n{output}")
                failures += 1
                continue
            ours = numpy.load(logits_path).astype(numpy.float32)
            diff = float(numpy.max(numpy.abs(ours - expected_logits))) if ours.shape == expected_logits.shape \
                else float("inf")
            match = ids == expected_ids
            ok = diff <= args.tolerance and match
            print(f"gguf np={ranks}: max_abs_diff={diff:.3g} ids_match={'yes' if match else 'no'} "
                  f"check={'ok' if ok else 'failed'}")
            failures += 0 if ok else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
