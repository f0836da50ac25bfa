#!/usr/bin/env python3
"""Quantizes and dequantizes rows with the gguf PyPI package, for tests/test_quant_formats.cpp.

usage: quant_gguf_reference.py FORMAT ROWS COLS IN.f32 OUT_BLOCKS.u8 OUT_DEQUANT.f32
FORMAT is q8_0, q4_0 or q4_1. IN holds ROWS x COLS little-endian f32 values; the script writes
gguf.quants.quantize's block bytes and gguf.quants.dequantize's values of those bytes.
Exits 77 (skip) when the gguf package or numpy is not importable.
"""
import sys

try:
    import numpy as np
    from gguf import GGMLQuantizationType, quants
except ImportError as error:
    print(f"skip: {error}", file=sys.stderr)
    sys.exit(77)

TYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0, "q4_1": GGMLQuantizationType.Q4_1}


def main(argv):
    fmt, rows, cols, src, blocks_path, dequant_path = argv[1:]
    qtype = TYPES[fmt]
    x = np.fromfile(src, dtype="<f4").reshape(int(rows), int(cols))
    blocks = quants.quantize(x, qtype)
    blocks.astype(np.uint8).tofile(blocks_path)
    quants.dequantize(blocks, qtype).astype("<f4").tofile(dequant_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
