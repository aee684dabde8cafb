#!/usr/bin/env python3
"""A small visual feature file and PyTorch's reduction of it, as the reference for core/data/VisualFeatures.

Writes, into the folder given (tests/data/vl-features):

  clip-like.safetensors  3 images of CLIP-like grid features, 49 boxes (a 7x7 grid) of width 8, stored as F16,
                         with a `#boxes` tensor for one image; written by write_visual_features below, the
                         function docs/VL.md quotes verbatim (test_visual_features checks that
                         the docs still hold it letter for letter).
  expected.json          what the file holds (as float32) and the 36 visual tokens the LST reference's
                         `--downsample` makes of each image (VL-T5/src/modeling_bart.py, class Downsample:
                         nn.AdaptiveMaxPool2d over the square grid), plus the same reduction of two synthetic
                         grids (196 -> 36 tokens, and a batch 64 -> 16) whose inputs both sides compute from
                         integers.

  /opt/ladderbench/hf-venv/bin/python tools/reference/visual_features.py tests/data/vl-features

Needs torch and safetensors. Versions are recorded in expected.json.
"""
import json
import os
import sys

import safetensors
import torch
from safetensors.torch import save_file


# --- begin write_visual_features ---
def write_visual_features(path, features, boxes=None, encoder=""):
    """features: {image id: tensor [boxes, dim]}, every image the same shape, float32/float16/bfloat16.
    boxes (optional): {image id: tensor [boxes, 4]}, (x1, x2, y1, y2) normalised to [0, 1]."""
    tensors = {image_id: t.detach().cpu().contiguous() for image_id, t in features.items()}
    for image_id, b in (boxes or {}).items():
        tensors[image_id + "#boxes"] = b.detach().cpu().float().contiguous()
    save_file(tensors, path, metadata={"encoder": encoder, "format": "ladder-visual-features-v1"})
# --- end write_visual_features ---


class Downsample(torch.nn.Module):
    """VL-T5/src/modeling_bart.py's Downsample.downsample_inputs, as the LST reference runs it (--downsample)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        self.pool = torch.nn.AdaptiveMaxPool2d(output_size)

    def forward(self, inputs):
        B, L, dim = inputs.shape
        inputs = inputs.permute(0, 2, 1)
        sqrt_L = int(L**0.5)
        inputs = inputs.reshape(B, dim, sqrt_L, sqrt_L)
        inputs = self.pool(inputs)
        inputs = inputs.reshape(B, dim, -1)
        return inputs.permute(0, 2, 1)


def synthetic(batch, boxes, dim):
    """Integer-valued input both sides compute exactly: x[b, i, d] = ((b * boxes * dim + i * dim + d) * 37) % 101."""
    n = torch.arange(batch * boxes * dim, dtype=torch.int64)
    return ((n * 37) % 101).to(torch.float32).reshape(batch, boxes, dim)


def rows(t):
    return [[float(v) for v in row] for row in t.tolist()]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(22)
    ids = ["COCO_val2014_000000000042", "COCO_val2014_000000000073", "img 3 (no boxes)"]
    features = {i: torch.randn(49, 8, generator=gen).to(torch.float16) for i in ids}
    # One image with boxes: the 7x7 grid's cells, (x1, x2, y1, y2) in [0, 1].
    cells = []
    for r in range(7):
        for c in range(7):
            cells.append([c / 7, (c + 1) / 7, r / 7, (r + 1) / 7])
    boxes = {ids[0]: torch.tensor(cells, dtype=torch.float32)}
    path = os.path.join(out_dir, "clip-like.safetensors")
    write_visual_features(path, features, boxes, encoder="synthetic CLIP-like grid (7x7, width 8)")

    down = Downsample((6, 6))
    images = {}
    for i in ids:
        f = features[i].float()
        images[i] = {
            "features": rows(f),
            "boxes": rows(boxes[i]) if i in boxes else None,
            "tokens36": rows(down(f.unsqueeze(0))[0]),
        }
    grid196 = synthetic(1, 196, 3)
    batch64 = synthetic(2, 64, 3)
    expected = {
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "operation": "VL-T5 Downsample: nn.AdaptiveMaxPool2d((t, t)) over the [dim, s, s] grid",
        "encoder": "synthetic CLIP-like grid (7x7, width 8)",
        "images": images,
        "synthetic": {
            "formula": "x[b, i, d] = ((b * boxes * dim + i * dim + d) * 37) % 101",
            "grid196_to_36": {"batch": 1, "boxes": 196, "dim": 3, "tokens": 36,
                              "output": [rows(t) for t in Downsample((6, 6))(grid196)]},
            "batch64_to_16": {"batch": 2, "boxes": 64, "dim": 3, "tokens": 16,
                              "output": [rows(t) for t in Downsample((4, 4))(batch64)]},
        },
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/vl-features")
