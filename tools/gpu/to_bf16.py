#!/usr/bin/env python3
"""Rewrites a safetensors file with every F32 tensor rounded to BF16 (round to nearest even, as PyTorch's
.to(torch.bfloat16) does); other dtypes and the metadata are kept. The GPU kit carries the demo backbone
this way: half the bytes, and LadderBench loads BF16 checkpoints into fp32 compute.

  python tools/gpu/to_bf16.py IN.safetensors OUT.safetensors      (a python with torch)
"""
import ctypes
import json
import struct
import sys

import torch


def main(src, dst):
    raw = open(src, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out_header, chunks, offset = {}, [], 0
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        begin, end = info["data_offsets"]
        blob = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            t = torch.frombuffer(bytearray(blob), dtype=torch.float32).to(torch.bfloat16).contiguous()
            blob = ctypes.string_at(t.data_ptr(), t.numel() * 2)
            dtype = "BF16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for c in chunks:
            f.write(c)
    print(f"{src}: {len(raw) / 1e6:.1f} MB -> {dst}: {(8 + len(text) + offset) / 1e6:.1f} MB (F32 -> BF16)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
