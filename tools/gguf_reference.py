#!/usr/bin/env python3
"""Writes a GGUF with one tensor of every type dtensor reads, and gguf-py's dequantization of each.

The independent reference for io/gguf's decoding (tests/check_gguf_reference.sh): the file is
written with the gguf PyPI package's GGUFWriter from raw bytes (random quantized payloads, with
the f16 scale fields set to finite values), and each tensor's expected f32 values come from
gguf.quants.dequantize, saved as OUT_DIR/<tensor>.npy in our row-major shape:

  python3 tools/gguf_reference.py OUT_DIR      # OUT_DIR/types.gguf, OUT_DIR/<tensor>.npy

Exits 77 (a skip) when numpy or gguf is missing (scripts/install-py-tools.sh).
"""
import os
import sys

try:
    import numpy as np
    import gguf
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
    from gguf.quants import dequantize
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (scripts/install-py-tools.sh)")
    sys.exit(77)

# Byte offsets of the f16 scale fields inside one block (ggml-common.h): random bytes there could
# be inf or nan, so they get finite values instead.
SCALE_FIELDS = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}

# name: (type, our shape). Rows hold several blocks so boxes can start and end inside them.
TENSORS = {
    "f32": (T.F32, (3, 40)),
    "f16": (T.F16, (3, 40)),
    "bf16": (T.BF16, (3, 40)),
    "q8_0": (T.Q8_0, (3, 96)),
    "q4_0": (T.Q4_0, (3, 96)),
    "q4_1": (T.Q4_1, (3, 96)),
    "q4_k": (T.Q4_K, (3, 512)),
    "q5_k": (T.Q5_K, (3, 512)),
    "q6_k": (T.Q6_K, (3, 512)),
    "q8_0_3d": (T.Q8_0, (2, 3, 64)),
    "q6_k_3d": (T.Q6_K, (2, 2, 256)),
}


def raw_bytes(rng, qtype, shape):
    """uint8 [rows..., row bytes] in ggml's layout."""
    block, block_bytes = GGML_QUANT_SIZES[qtype]
    *outer, cols = shape
    if qtype == T.F32:
        return rng.standard_normal(shape).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.standard_normal(shape).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        bits = rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8)
    blocks = rng.integers(0, 256, size=(*outer, cols // block, block_bytes), dtype=np.uint8)
    for at in SCALE_FIELDS[qtype]:
        scales = rng.uniform(-1, 1, size=blocks.shape[:-1]).astype(np.float16)
        blocks[..., at:at + 2] = scales[..., None].view(np.uint8)
    return blocks.reshape(*outer, cols // block * block_bytes)


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(18)
    writer = gguf.GGUFWriter(os.path.join(out, "types.gguf"), "llama")
    for name, (qtype, shape) in TENSORS.items():
        raw = raw_bytes(rng, qtype, shape)
        writer.add_tensor(name, raw, raw_dtype=qtype)
        expected = dequantize(raw, qtype).astype(np.float32).reshape(shape)
        np.save(os.path.join(out, f"{name}.npy"), expected)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
