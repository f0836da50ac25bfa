"""Times torch.nn.functional.linear (bf16, with bias) on the GPU for the shapes bench_gpu uses.

Writes a JSON list of {"tokens", "in", "out", "seconds"} (median per call over repeats of
back-to-back calls, like bench_gpu.cpp) to the path given, or prints it.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [(1, 4096, 4096), (128, 4096, 4096), (2048, 4096, 4096), (2048, 4096, 14336), (2048, 14336, 4096)]
REPEATS = 7


def median_seconds(call, iters):
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(iters):
            call()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) / iters)
    return statistics.median(samples)


def main():
    rows = []
    for tokens, d_in, d_out in SHAPES:
        x = torch.rand(tokens, d_in, device="cuda", dtype=torch.bfloat16) * 2 - 1
        w = torch.rand(d_out, d_in, device="cuda", dtype=torch.bfloat16) * 2 - 1
        b = torch.rand(d_out, device="cuda", dtype=torch.bfloat16) * 2 - 1
        iters = 20 if tokens * d_in * d_out > 2**32 else 200
        seconds = median_seconds(lambda: F.linear(x, w, b), iters)
        rows.append({"tokens": tokens, "in": d_in, "out": d_out, "seconds": seconds})
    text = json.dumps(rows, indent=1)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as out:
            out.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
