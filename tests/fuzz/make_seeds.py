#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/TARGET/) from the shared fixtures: small
files of each kind, valid, so that libFuzzer starts from inputs that reach deep into each parser. Run once
with the venv's python (it needs torch for the pytorch_model.bin seeds) and commit the result:

    /opt/ladderbench/venv/bin/python tests/fuzz/make_seeds.py ../shared/fixtures build/test/bin/ladder
"""
import csv
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile

import torch

fixtures, ladder = sys.argv[1], sys.argv[2]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
synth = os.path.join(fixtures, "t5-synthetic-hf")
v10, v11 = f"{synth}/t5-v1_0-relu-synth", f"{synth}/t5-v1_1-gated-gelu-synth"


def put(target, name, data):
    os.makedirs(f"{out}/{target}", exist_ok=True)
    with open(f"{out}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def small_tensors(path, names):
    """Some tensors of a fixture's model.safetensors, read with the format's own layout (no library)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    return {k: (header[k]["dtype"], header[k]["shape"], data[header[k]["data_offsets"][0]:header[k]["data_offsets"][1]])
            for k in names}


def safetensors_bytes(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


shutil.rmtree(out, ignore_errors=True)

# safetensors: two layer norms of the v1.0 fixture; with metadata; a 2-d slice of the embedding.
norms = small_tensors(f"{v10}/model.safetensors", ["encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"])
put("fuzz_safetensors", "norms.safetensors", safetensors_bytes(norms))
put("fuzz_safetensors", "metadata.safetensors", safetensors_bytes(norms, {"format": "pt"}))
emb = small_tensors(f"{v11}/model.safetensors", ["shared.weight"])["shared.weight"]
put("fuzz_safetensors", "embedding-rows.safetensors",
    safetensors_bytes({"shared.weight": (emb[0], [4, emb[1][1]], emb[2][:4 * emb[1][1] * 4])}))

# sharded index: the two tensors fuzz_shard_index writes into its shard, and an index with one missing.
shard = "model-00001-of-00001.safetensors"
put("fuzz_shard_index", "index.json", json.dumps({"metadata": {"total_size": 40}, "weight_map": {
    "shared.weight": shard, "encoder.final_layer_norm.weight": shard}}, indent=2))
put("fuzz_shard_index", "missing.json", json.dumps({"weight_map": {"decoder.final_layer_norm.weight": shard}}))

# pytorch_model.bin: the v1.0 fixture's layer norms saved by torch (zip format), one in bf16, one sharing a
# storage between two names (as a tied state dict does).
state = torch.load(f"{v10}/pytorch_model.bin", map_location="cpu", weights_only=True)
small = {k: state[k].clone() for k in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight")}
for name, sd in (("norms.bin", small), ("bf16.bin", {k: v.to(torch.bfloat16) for k, v in small.items()}),
                 ("tied.bin", {"shared.weight": small["encoder.final_layer_norm.weight"],
                               "lm_head.weight": small["encoder.final_layer_norm.weight"]})):
    buf = io.BytesIO()
    torch.save(sd, buf)
    put("fuzz_torchbin", name, buf.getvalue())

# config.json and inputs.json: the fixtures' own.
for tag, d in (("v1_0", v10), ("v1_1", v11)):
    put("fuzz_config", f"{tag}.json", open(f"{d}/config.json", "rb").read())
    put("fuzz_inputs", f"{tag}.json", open(f"{d}/expected/inputs.json", "rb").read())

# run specs: the demo preset's base with each of its methods, and a GLUE spec with LST's knobs.
preset = json.load(open(os.path.join(os.path.dirname(out), "..", "..", "resources", "presets", "demo-sweep.json")))
for i, m in enumerate(preset["methods"]):
    spec = json.loads(json.dumps(preset["base"]))
    spec["method"] = m["method"]
    spec["training"].update(m.get("training", {}))
    put("fuzz_run_spec", f"preset-{i}.json", json.dumps(spec, indent=1))
put("fuzz_run_spec", "glue-ladder.json", json.dumps({
    "backbone": "t5-base", "task": {"type": "glue", "path": "glue/RTE", "name": "rte"},
    "method": {"method": "ladder", "r": 8, "keep": [1, 3, 5], "init": "fisher", "cache": "ram"},
    "training": {"epochs": 2, "batch_size": 16, "dtype": "bf16", "gradient_accumulation": 2}, "seed": 3}, indent=1))

# sweeps: the demo preset itself, and one with seeds and a grid over dotted fields.
put("fuzz_sweep", "demo-sweep.json", json.dumps(preset, indent=1))
put("fuzz_sweep", "grid.json", json.dumps({"base": preset["base"], "seeds": [0, 1],
    "grid": {"training.learning_rate": [1e-3, 3e-3], "method.r": [4, 8]}, "store": "sweep.sqlite"}, indent=1))

# tasks: the RTE fixture's first rows as TSV (first byte 2), CSV (1) and JSONL (0) with columns text, label.
rows = list(csv.reader(open(f"{fixtures}/glue/RTE/train.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:13]
records = [{"text": r[1], "label": r[3]} for r in rows]
tsv = "text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in records)
buf = io.StringIO()
w = csv.writer(buf)
w.writerow(["text", "label"])
w.writerows([[r["text"], r["label"]] for r in records])
put("fuzz_task", "rte.tsv", b"\x02" + tsv.encode())
put("fuzz_task", "rte.csv", b"\x01" + buf.getvalue().encode())
put("fuzz_task", "rte.jsonl", b"\x00" + "".join(json.dumps(r) + "\n" for r in records).encode())

# a results store: `ladder train` on a spec whose backbone is missing records one failed run.
with tempfile.TemporaryDirectory() as tmp:
    spec = {"backbone": f"{tmp}/no-backbone", "task": {"type": "generic", "path": f"{tmp}/t.jsonl"},
            "method": {"method": "lora"}, "seed": 1}
    json.dump(spec, open(f"{tmp}/run.json", "w"))
    subprocess.run([ladder, "train", "--config", f"{tmp}/run.json", "--store", f"{tmp}/s.sqlite"],
                   capture_output=True)
    db = sqlite3.connect(f"{tmp}/s.sqlite")
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("VACUUM")
    db.close()
    put("fuzz_store", "one-failed-run.sqlite", open(f"{tmp}/s.sqlite", "rb").read())

# a training state (core/train/TrainState.h): two parameters, their AdamW moments, a best copy, the CPU
# generator's state; and one saved before the first evaluation (no best, no moments yet).
def train_state(with_best):
    f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
    tensors = {"param/a.weight": ("F32", [2, 2], f32(0.1, 0.2, 0.3, 0.4)), "param/b.bias": ("F32", [2], f32(1, 2))}
    adam = {}
    if with_best:
        for name, (dtype, shape, blob) in list(tensors.items()):
            short = name[len("param/"):]
            tensors["exp_avg/" + short] = (dtype, shape, blob)
            tensors["exp_avg_sq/" + short] = (dtype, shape, blob)
            tensors["best/" + short] = (dtype, shape, blob)
            adam[short] = 5
    tensors["rng/cpu"] = ("U8", [16], bytes(range(16)))
    meta = {"version": 1, "run_id": 3, "run_created_at": "2026-12-05T10:00:00.000Z", "spec_hash": "ab" * 8,
            "step": 5 if with_best else 0, "total_steps": 10, "epoch": 1, "next_batch": 2, "last_eval_step": 5,
            "best_score": 0.5 if with_best else None, "best_step": 5, "last_validation": None,
            "peak_allocated_bytes": 1000, "peak_reserved_bytes": 1000, "init_peak_allocated_bytes": 0,
            "eval_peak_allocated_bytes": 0, "run_tokens": 100, "run_step_seconds": 0.5, "elapsed_seconds": 1.5,
            "adam_steps": adam}
    return safetensors_bytes(tensors, {"ladder_train_state": json.dumps(meta)})


put("fuzz_train_state", "step5.state", train_state(True))
put("fuzz_train_state", "step0.state", train_state(False))

for t in sorted(os.listdir(out)):
    files = os.listdir(f"{out}/{t}")
    print(f"{t}: {len(files)} seeds, {sum(os.path.getsize(f'{out}/{t}/{f}') for f in files)} bytes")

# Vision-and-language (docs/VL.md): the feature file of tests/data/vl-features (tools/reference/visual_features.py)
# and a mixed task over the fixed feature file of fuzz_vl_task (images "a" and "b").
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
put("fuzz_visual_features", "clip-like.safetensors",
    open(os.path.join(repo, "tests/data/vl-features/clip-like.safetensors"), "rb").read())
put("fuzz_vl_task", "mixed.jsonl", "".join(json.dumps(r) + "\n" for r in [
    {"id": "q1", "task": "vqa", "image": "a", "question": "what color is it?",
     "answers": ["red", "red", "Red", "two", "2", "red", "red", "red", "the red", "red."]},
    {"id": "q2", "task": "gqa", "image": "b", "question": "is there a cube?", "answer": "yes"},
    {"id": "q3", "task": "nlvr2", "images": ["a", "b"], "statement": "both images hold a circle", "label": True},
    {"id": "q4", "task": "caption", "image": "a",
     "captions": ["a red circle.", "one red circle", "there is a red circle (small)"]},
    {"id": "q5", "task": "vqa", "image": "b", "question": "how many?", "answers": [{"answer": "three"}, {"answer": "3"}]},
    {"id": "q6", "task": "nlvr2", "images": ["b", "a"], "statement": "the left image has more squares", "label": "False"},
]))
