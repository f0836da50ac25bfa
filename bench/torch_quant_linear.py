"""Times torch.nn.functional.linear in f32 on the CPU at SmolLM2-135M's Linear shapes, for
bench/bench_quant_kernels.cpp's table: one row of x (decode) and 16 rows, on THREADS threads.
Times are the process's CPU time per call divided by THREADS (bench_quant_kernels reports the
calling thread's CPU time), so a shared host's other load does not inflate them.

usage: torch_quant_linear.py [THREADS]
Prints one line per shape and a summary weighted like bench_quant_kernels' (7 Linears per layer x
30 layers plus the tied output head):  torch_f32: decode_ms=X tile_ms=Y threads=T
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

LAYERS = 30
SHAPES = [("q_o", 576, 576, 2 * LAYERS), ("k_v", 192, 576, 2 * LAYERS), ("gate_up", 1536, 576, 2 * LAYERS),
          ("down", 576, 1536, LAYERS), ("lm_head", 49152, 576, 1)]


def median_seconds(call, threads, seconds=0.2, repeats=3):
    call()
    samples = []
    for _ in range(repeats):
        iters, start = 0, time.process_time()
        while time.process_time() - start < seconds * threads:
            call()
            iters += 1
        samples.append((time.process_time() - start) / iters / threads)
    return statistics.median(samples)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    totals = {1: 0.0, 16: 0.0}
    with torch.inference_mode():
        for name, out_features, in_features, per_token in SHAPES:
            w = torch.rand(out_features, in_features) * 0.1 - 0.05
            for m in (1, 16):
                x = torch.rand(m, in_features) * 2 - 1
                t = median_seconds(lambda: F.linear(x, w), threads)
                totals[m] += per_token * t
                print(f"torch f32 {name} {out_features}x{in_features} m{m}: {t * 1e6:.1f} us "
                      f"{w.numel() * 4 / t / 1e9:.2f} GB/s")
    print(f"torch_f32: decode_ms={totals[1] * 1e3:.3f} tile_ms={totals[16] * 1e3:.3f} threads={threads}")


if __name__ == "__main__":
    main()
