#!/usr/bin/env python3
"""Expected outputs of Ladder Side-Tuning computed by the authors' own implementation.

Runs the reference side T5 (github.com/ylsung/Ladder-Side-Tuning, seq2seq/third_party/models/t5/
modeling_side_t5.py, the model its GLUE scripts train) on a tiny seeded T5 and writes what LadderBench's
tests/unit/test_ladder_reference.cpp compares against:

  OUT/backbone/config.json, model.safetensors    the frozen backbone as a HuggingFace folder (T5 v1.0:
                                                 ReLU, tied embeddings; 4 encoder + 4 decoder layers; HF's
                                                 initialisation, layer norms randomised)
  OUT/inputs.json                                input_ids, attention_mask, labels (`ladder forward` format)
  OUT/manifest.json                              what was run: versions, the configurations and their options;
                                                 "initialisation": mean and standard deviation of every side
                                                 tensor as the reference initialises it (d_model 128, r 4)
  OUT/<config>/side_weights.safetensors          every side parameter under the reference's state_dict() names
  OUT/<config>/expected.safetensors              logits (batch, target, vocab) and loss (1)
  OUT/<config>/gradients.safetensors             d loss / d p of every side parameter the forward uses
                                                 (same names; the reference also creates gates for dropped
                                                 layers, which get no gradient and are listed in the manifest)
  OUT/<config>/init_magnitude.safetensors,       the side blocks and final side norms that the reference's
              init_fisher.safetensors            pruning initialisation gives (load_side_pretrained_weights
                                                 "t5-base-v2" = magnitude, "fisher-v2" = Fisher on the examples
                                                 of OUT/fisher_examples.json, one per batch, in file order)
  OUT/<config>/init_<init>_indices.json          for each pruned tensor: the backbone rows (and columns) it
                                                 holds, in the reference's order (CPython's iteration order of
                                                 the set in pruning_methods.select_weights, not always ascending)
  OUT/fisher_examples.json                       those examples

Configurations (the reference's options as its scripts set them: use_gate learnable, gate_T 0.1,
add_bias_sampling True, add_residual_after False, merge_last False, lambda_distill 0; dropout 0):
  all    task_reduction_factor 4, encoder_side_layers = decoder_side_layers = None (every layer)
  keep   task_reduction_factor 8, encoder_side_layers = decoder_side_layers = [1, 3] (the odd layers, as the
         paper's T5-large list 1,3,...,23; layers 0 and 2 dropped). In LadderBench: --r 8 --keep 1,3.
The side weights are seeded random values of a useful size (gates around +-1 after the temperature, norms
around 1), not the reference's initialisation, so that every term of the forward pass shows in the numbers.

Nothing of the reference is copied: its code is imported from the checkout given with --reference.

Set-up used for tests/data/reference-lst (Python 3.11.7; torch 2.11.0 taken from LadderBench's venv
/opt/ladderbench/venv through a folder of links to torch and its own dependencies only, because that venv
may also hold a newer transformers and tokenizers that would shadow transformers 4.6.0 or fail its
version checks; transformers 4.6.0 as the reference's setup.py pins it, with --no-deps because its
tokenizers 0.10 dependency has no wheel for Python 3.11 and the model code does not need it):

  git clone https://github.com/ylsung/Ladder-Side-Tuning /opt/ladderbench/Ladder-Side-Tuning
  git -C /opt/ladderbench/Ladder-Side-Tuning checkout 1798e82e52f2f071084e6a10126c3da359176238
  python3 -m venv /opt/ladderbench/reference-venv
  mkdir /opt/ladderbench/reference-venv/torch-site
  cd /opt/ladderbench/venv/lib/python3.11/site-packages && for p in torch torch-*.dist-info torchgen \
      functorch nvidia nvidia_* cuda cuda_* triton triton-* typing_extensions* sympy sympy-* mpmath \
      mpmath-* networkx networkx-* jinja2 jinja2-* markupsafe markupsafe-* filelock filelock-* fsspec \
      fsspec-*; do [ -e "$p" ] && ln -s "$PWD/$p" /opt/ladderbench/reference-venv/torch-site/; done; cd -
  echo /opt/ladderbench/reference-venv/torch-site \
      > /opt/ladderbench/reference-venv/lib/python3.11/site-packages/ladderbench-torch.pth
  /opt/ladderbench/reference-venv/bin/pip install --no-deps transformers==4.6.0
  /opt/ladderbench/reference-venv/bin/pip install huggingface-hub==0.0.8 "numpy<2" packaging regex \
      requests sacremoses tqdm safetensors

The pruning initialisation also imports the checkout's Torch-Pruning/ folder (put on the path here).

Run (from the repository root; a few seconds on a CPU; the output is the same byte for byte each time):

  /opt/ladderbench/reference-venv/bin/python tools/reference/lst_reference.py \\
      --reference /opt/ladderbench/Ladder-Side-Tuning --out tests/data/reference-lst

Parameter counts at the published shapes (--counts FILE; tests/unit/test_ladder_counts.cpp's parameterCount* cases
read tests/data/reference-lst/param-counts.json): the reference side T5 built at the hyper-parameters of the
public t5-small, t5-base and t5-large checkpoints (T5 v1.0, written out below; nothing is downloaded), with
r 8 and the keep lists of the tests (t5-small all layers; t5-base 1,2,3,5,6,7,9,10,11 as
scripts/ladder_side_tuning_base_dropping.sh; t5-large 1,3,...,23 as scripts/ladder_side_tuning_large.sh).
The models are built on the meta device (shapes without storage; the counts are those of a real model), and
frozen by the reference's own modify_model_after_init (utils.freeze_model_params with the adapter arguments
of configs/side_transformers.json and the scripts' overrides: train_side_transformer, so every parameter with
"side" in its name trains), which also logs the trainable count that is recorded. Per model the file holds:
backbone_parameters (transformers' T5ForConditionalGeneration(config).num_parameters(), the tied embedding
once; checked equal to the reference model's parameters without "side"), trainable_parameters, groups
(trainable counts by reference name prefix), unused_gates (gates the reference creates for dropped layers),
parameters (every trainable tensor's shape) and the reference's own percentage (updated_params). Seconds:

  /opt/ladderbench/reference-venv/bin/python tools/reference/lst_reference.py \\
      --reference /opt/ladderbench/Ladder-Side-Tuning --counts tests/data/reference-lst/param-counts.json
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

import torch

SEED = 1234
VOCAB = 64
BATCH, SOURCE_LENGTH, TARGET_LENGTH = 2, 7, 5
CONFIGURATIONS = [
    {"name": "all", "r": 4, "keep": None},
    {"name": "keep", "r": 8, "keep": [1, 3]},
]
FISHER_EXAMPLES = 6  # fixed examples of different lengths, one per batch as the reference's Fisher uses them


def backbone_config():
    from transformers import T5Config

    return T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer_factor=1.0,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


def make_backbone(out_dir):
    """A plain HF T5 (transformers' own modeling_t5) with HF's initialisation, seeded; saved as a folder."""
    from safetensors.torch import save_file
    from transformers.models.t5.modeling_t5 import T5ForConditionalGeneration

    torch.manual_seed(SEED)
    config = backbone_config()
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # layer norms that are not all ones, so that a slice of one shows which it is
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape))
    os.makedirs(out_dir, exist_ok=True)
    config.to_json_file(os.path.join(out_dir, "config.json"))
    aliases = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k not in aliases}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return model.state_dict()


def make_inputs(path):
    g = torch.Generator().manual_seed(SEED + 1)
    input_ids = torch.randint(2, VOCAB, (BATCH, SOURCE_LENGTH), generator=g)
    attention_mask = torch.ones(BATCH, SOURCE_LENGTH, dtype=torch.long)
    attention_mask[0, -2:] = 0  # row 0 is padded
    input_ids[0, -2:] = 0
    labels = torch.randint(2, VOCAB, (BATCH, TARGET_LENGTH), generator=g)
    labels[1, -1] = -100  # one ignored label
    with open(path, "w") as f:
        json.dump({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist(),
                   "labels": labels.tolist()}, f, indent=1)
    return input_ids, attention_mask, labels


def reference_model(reference_root, backbone_state, r, keep, shapes=None, base=None):
    """The reference's side T5 with the options of its LST scripts, holding the backbone's weights (when
    given; `shapes` overrides the backbone's sizes; `base`, a T5Config, replaces the tiny backbone's)."""
    sys.path.insert(0, reference_root)
    from seq2seq.adapters import AdapterConfig
    from seq2seq.third_party.models.t5 import modeling_side_t5
    from seq2seq.third_party.models.t5.configuration_t5 import T5Config as ReferenceConfig

    config = ReferenceConfig(**{**(base or backbone_config()).to_dict(), **(shapes or {})})
    # What run_seq2seq.py copies from its AdapterTrainingArguments, at the values of
    # scripts/ladder_side_tuning_base.sh and ladder_side_tuning_base_dropping.sh.
    config.train_task_adapters = False
    config.train_side_ladder = False
    config.prefix_tuning = False
    config.lambda_distill = 0.0
    config.lambda_label = 1.0
    config.lambda_kd_ir = 0.0
    config.gate_T = 0.1
    config.use_gate = "learnable"
    config.gate_alpha = 0.0
    config.add_residual_after = False
    config.encoder_side_layers = keep
    config.decoder_side_layers = keep
    config.side_downsample_pool = False
    config.add_bias_sampling = True
    config.merge_last = False
    adapter_config = AdapterConfig()
    adapter_config.task_reduction_factor = r
    adapter_config.input_dim = config.d_model

    model = modeling_side_t5.T5ForConditionalGeneration(config, adapter_config=adapter_config)
    if backbone_state is not None:
        missing, unexpected = model.load_state_dict(backbone_state, strict=False)
        if unexpected or any("side" not in k for k in missing):
            raise RuntimeError(f"backbone does not fit the reference model: missing {missing}, "
                               f"unexpected {unexpected}")
    # utils.freeze_model_params: only parameters with "side" in their name train.
    for name, p in model.named_parameters():
        p.requires_grad_("side" in name)
    return model


def set_side_weights(model, seed):
    """Seeded values of a useful size for every side parameter (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g)
            if "side_gate_params" in name:
                value = 0.1 * noise  # alpha / T ~ N(0, 1)
            elif "layer_norm" in name:
                value = 1.0 + 0.2 * noise
            elif "relative_attention_bias" in name:
                value = 0.5 * noise
            elif name.endswith(".bias"):
                value = 0.1 * noise
            else:
                value = noise / math.sqrt(p.shape[1])
            p.copy_(value)


def initialisation_statistics(reference_root):
    """Mean and standard deviation of every side tensor as the reference initialises it (its
    _init_weights, run by the constructor; what training starts from with load_side_pretrained_weights "")
    for a backbone large enough that the sample statistics are sharp."""
    torch.manual_seed(SEED + 2)
    shapes = dict(d_model=128, d_kv=32, d_ff=512, num_heads=4, num_layers=2, num_decoder_layers=2,
                  relative_attention_num_buckets=32)
    r = 4
    model = reference_model(reference_root, None, r, None, shapes)
    parameters = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            x = p.detach().double()
            parameters[name] = {"shape": list(p.shape), "mean": x.mean().item(),
                                "std": x.std(unbiased=False).item()}
    print(f"initialisation: {len(parameters)} side tensors of a d_model {shapes['d_model']} backbone, r {r}")
    return {"backbone": shapes, "r": r, "parameters": parameters}


def fisher_examples(path):
    """Fixed training examples for the empirical Fisher, each its own batch (no padding), written as
    {"examples": [{"input_ids": [...], "labels": [...]}, ...]}."""
    g = torch.Generator().manual_seed(SEED + 3)
    examples = []
    for i in range(FISHER_EXAMPLES):
        source = torch.randint(2, VOCAB, (1, 4 + i % 4), generator=g)
        target = torch.randint(2, VOCAB, (1, 2 + i % 3), generator=g)
        examples.append({"input_ids": source, "attention_mask": torch.ones_like(source), "labels": target})
    with open(path, "w") as f:
        json.dump({"examples": [{"input_ids": e["input_ids"][0].tolist(), "labels": e["labels"][0].tolist()}
                                for e in examples]}, f, indent=1)
    return examples


def pruned_side_init(reference_root, backbone_state, spec, init, examples):
    """The side weights the reference's pruning initialisation gives (run_seq2seq.py with
    load_side_pretrained_weights "fisher-v2", or "t5-base-v2" for magnitude): importance on the plain HF
    model, pruning_v2 (pruning_without_residual, L1Strategy), then run_seq2seq.py's copy into the side
    network, restated here: side_block.{i}.X <- pruned {stack}.block.{i}.X, except the relative attention
    bias <- the backbone's {stack}.block.0 one, unpruned; final_side_layer_norm <- pruned final_layer_norm.
    Returns the tensors that the initialisation sets, under the reference's names, and for each pruned one
    the backbone rows and columns it holds, in the reference's order."""
    sys.path.insert(0, os.path.join(reference_root, "Torch-Pruning"))
    import transformers  # noqa: F401  (before the stand-in below: transformers probes for datasets)

    if "datasets" not in sys.modules:
        # seq2seq/pruning/fisher.py imports the datasets package for a helper that is not used here.
        import types

        sys.modules["datasets"] = types.ModuleType("datasets")
    from seq2seq.pruning.fisher import calculate_the_importance_label
    from seq2seq.pruning.pruning_methods import pruning_v2
    from transformers.models.t5.modeling_t5 import T5ForConditionalGeneration

    hf = T5ForConditionalGeneration(backbone_config())
    hf.load_state_dict(backbone_state)
    hf.eval()  # as from_pretrained leaves it
    importance = None
    if init == "fisher":
        importance = calculate_the_importance_label(hf, [dict(e) for e in examples], len(examples), "cpu",
                                                    "square")
    pruned = pruning_v2(hf, spec["r"], importance_measure=importance)

    model = reference_model(reference_root, backbone_state, spec["r"], spec["keep"])
    own = model.state_dict()
    out, indices = {}, {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            parts = name.split(".")
            if parts[1] == "side_block":
                source = ".".join([parts[0], "block"] + (["0"] if "relative_attention_bias" in name else [parts[2]])
                                  + parts[3:])
                value = own[source] if "relative_attention_bias" in name else pruned[source]
            elif parts[1] == "final_side_layer_norm":
                source = parts[0] + ".final_layer_norm." + parts[2]
                value = pruned[source]
            else:
                continue
            p.copy_(value)
            out[name] = p.detach().clone().contiguous()
            if "relative_attention_bias" not in name:
                indices[name] = backbone_indices(out[name], backbone_state[source])
    return out, indices


def backbone_indices(pruned, full):
    """Where the pruned tensor's entries sit in the backbone tensor: (rows, cols) for a matrix, (rows,) for a
    vector, in the order of the pruned tensor. The backbone's values are distinct random numbers."""
    def find(value, tensor):
        hits = (tensor == value).nonzero()
        if len(hits) != 1:
            raise RuntimeError(f"value {value} occurs {len(hits)} times in the backbone tensor")
        return hits[0].tolist()

    if pruned.dim() == 1:
        rows = [find(v, full)[0] for v in pruned]
        assert torch.equal(full[rows], pruned)
        return {"rows": rows}
    rows = [find(pruned[i, 0], full)[0] for i in range(pruned.shape[0])]
    cols = [find(pruned[0, c], full[rows[0]])[0] for c in range(pruned.shape[1])]
    assert torch.equal(full[rows][:, cols], pruned)
    return {"rows": rows, "cols": cols}


def side_state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if "side" in k}


def run_configuration(reference_root, backbone_state, inputs, examples, spec, out_dir):
    from safetensors.torch import save_file

    input_ids, attention_mask, labels = inputs
    model = reference_model(reference_root, backbone_state, spec["r"], spec["keep"])
    set_side_weights(model, SEED + 10 + spec["r"])
    model.train()  # as the reference trains; dropout is 0
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, return_dict=True)
    out.loss.backward()

    os.makedirs(out_dir, exist_ok=True)
    weights = side_state(model)
    gradients, unused = {}, []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            unused.append(name)
        else:
            gradients[name] = p.grad.detach().clone().contiguous()
    # One metadata entry: safetensors writes several in no fixed order, and the files should be reproducible.
    meta = {"producer": f"tools/reference/lst_reference.py, configuration {spec['name']}"}
    save_file(weights, os.path.join(out_dir, "side_weights.safetensors"), metadata=meta)
    save_file(gradients, os.path.join(out_dir, "gradients.safetensors"), metadata=meta)
    save_file({"logits": out.logits.detach().contiguous(), "loss": out.loss.detach().reshape(1)},
              os.path.join(out_dir, "expected.safetensors"), metadata=meta)
    for init in ("magnitude", "fisher"):
        pruned, indices = pruned_side_init(reference_root, backbone_state, spec, init, examples)
        save_file(pruned, os.path.join(out_dir, f"init_{init}.safetensors"), metadata=meta)
        with open(os.path.join(out_dir, f"init_{init}_indices.json"), "w") as f:
            json.dump(indices, f, separators=(",", ":"))
            f.write("\n")
        ascending = sum(all(v == sorted(v) for v in i.values()) for i in indices.values())
        print(f"{spec['name']}: init {init}: {len(pruned)} tensors, {ascending} of {len(indices)} pruned ones "
              f"in ascending backbone order")
    print(f"{spec['name']}: r {spec['r']} keep {spec['keep']}: loss {out.loss.item():.6f}, "
          f"{len(weights)} side tensors, {len(gradients)} gradients, unused {unused}")
    return {"name": spec["name"], "r": spec["r"], "keep": spec["keep"] or [],
            "loss": out.loss.item(), "side_tensors": len(weights), "unused_parameters": unused}


# The published hyper-parameters of the original T5 checkpoints (T5 v1.0: ReLU feed-forward, tied embeddings,
# vocabulary 32128, 32 relative-attention buckets; the config.json of t5-small, t5-base and t5-large).
PUBLISHED_T5 = {
    "t5-small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8),
    "t5-base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12),
    "t5-large": dict(d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16),
}
# r and the kept side layers (encoder_side_layers = decoder_side_layers; None = every layer) that
# tests/unit/test_ladder_counts.cpp's parameterCount* cases use.
COUNT_SETTINGS = [
    {"model": "t5-small", "r": 8, "keep": None},
    {"model": "t5-base", "r": 8, "keep": [1, 2, 3, 5, 6, 7, 9, 10, 11]},
    {"model": "t5-large", "r": 8, "keep": list(range(1, 24, 2))},
]


def published_config(name):
    from transformers import T5Config

    return T5Config(vocab_size=32128, relative_attention_num_buckets=32, dropout_rate=0.1,
                    layer_norm_epsilon=1e-6, initializer_factor=1.0, feed_forward_proj="relu",
                    tie_word_embeddings=True, is_encoder_decoder=True, decoder_start_token_id=0, pad_token_id=0,
                    eos_token_id=1, **PUBLISHED_T5[name])


def reference_training_setup(reference_root):
    """The reference's modify_model_after_init (seq2seq/utils/utils.py: freezing, then the trainable count it
    logs) and its AdapterTrainingArguments, imported from the checkout. seq2seq/utils imports
    projections.intrinsic (run_seq2seq.py runs in seq2seq/), which loads a CUDA extension (fwh_cuda) that has
    to be compiled; its functions serve only intrinsic_model, which LST does not set, so a stand-in is used."""
    import types

    sys.path.insert(0, reference_root)
    if "projections.intrinsic" not in sys.modules:
        def unavailable(*args, **kwargs):
            raise RuntimeError("intrinsic-dimension training is not available here")

        intrinsic = types.ModuleType("projections.intrinsic")
        intrinsic.intrinsic_dimension = intrinsic.intrinsic_dimension_said = unavailable
        package = types.ModuleType("projections")
        package.intrinsic = intrinsic
        sys.modules["projections"] = package
        sys.modules["projections.intrinsic"] = intrinsic
    from seq2seq.training_args import AdapterTrainingArguments
    from seq2seq.utils import utils as reference_utils

    return reference_utils, AdapterTrainingArguments


def reference_parameter_counts(reference_root, spec):
    """Counts of the reference side T5 at a published shape (see the module docstring)."""
    import dataclasses
    import logging
    import types

    from transformers.models.t5.modeling_t5 import T5ForConditionalGeneration

    reference_utils, AdapterTrainingArguments = reference_training_setup(reference_root)
    # The adapter arguments of configs/side_transformers.json with the overrides of the LST scripts.
    with open(os.path.join(reference_root, "seq2seq", "configs", "side_transformers.json")) as f:
        arguments = json.load(f)
    arguments.update(use_gate="learnable", task_reduction_factor=spec["r"], add_bias_sampling=True,
                     create_side_lm=False, freeze_side_lm=False, add_residual_after=False,
                     encoder_side_layers=spec["keep"], decoder_side_layers=spec["keep"])
    names = {f.name for f in dataclasses.fields(AdapterTrainingArguments)}
    adapter_args = AdapterTrainingArguments(**{k: v for k, v in arguments.items() if k in names})
    assert adapter_args.train_side_transformer and not adapter_args.train_side_ladder

    config = published_config(spec["model"])
    with torch.device("meta"):  # shapes only: no storage, no initialisation cost
        backbone = T5ForConditionalGeneration(config)
        model = reference_model(reference_root, None, spec["r"], spec["keep"], base=config)
    model.config._name_or_path = spec["model"]  # as from_pretrained sets it; picks the percentage's base

    messages = []

    class Capture(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Capture(logging.INFO)
    reference_utils.logger.addHandler(handler)
    try:
        model, percent = reference_utils.modify_model_after_init(
            model, types.SimpleNamespace(print_num_parameters=True), adapter_args)
    finally:
        reference_utils.logger.removeHandler(handler)
    logged = [int(m.group(1)) for m in (re.fullmatch(r"\*+ Model Trainable Parameters (\d+) \*+", x)
                                        for x in messages) if m]
    if len(logged) != 1:
        raise RuntimeError(f"modify_model_after_init logged no trainable count: {messages[:3]}")
    trainable = logged[0]

    parameters, groups = {}, {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parameters[name] = list(p.shape)
        parts = name.split(".")
        group = ".".join(parts[:next(i for i, x in enumerate(parts) if "side" in x) + 1])
        groups[group] = groups.get(group, 0) + p.numel()
    frozen = sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad)
    if any("side" not in n for n in parameters) or any("side" in n for n, p in model.named_parameters()
                                                          if not p.requires_grad):
        raise RuntimeError("the reference's freezing is not: train exactly the parameters named side")
    if trainable != sum(groups.values()) or frozen != backbone.num_parameters():
        raise RuntimeError(f"counts disagree: logged {trainable}, side tensors {sum(groups.values())}, "
                           f"frozen {frozen}, backbone {backbone.num_parameters()}")
    keep = spec["keep"]
    depth = {"encoder": config.num_layers, "decoder": config.num_decoder_layers}
    unused = [f"{stack}.side_gate_params.{i}" for stack in ("encoder", "decoder")
              for i in range(depth[stack]) if keep is not None and i not in keep]
    base = 737639424 if spec["model"].startswith("t5-large") else 222882048  # modify_model_after_init's
    result = {
        "model": spec["model"],
        "config": {k: getattr(config, k) for k in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                                                   "num_decoder_layers", "num_heads",
                                                   "relative_attention_num_buckets", "feed_forward_proj",
                                                   "tie_word_embeddings")},
        "r": spec["r"],
        "encoder_side_layers": keep,
        "decoder_side_layers": keep,
        "backbone_parameters": backbone.num_parameters(),
        "trainable_parameters": trainable,
        "groups": groups,
        "unused_gates": unused,
        "updated_params_percent": percent,
        "updated_params_base": base,
        "parameters": parameters,
    }
    print(f"{spec['model']}: r {spec['r']} keep {keep}: backbone {result['backbone_parameters']}, trainable "
          f"{trainable} ({len(unused)} unused gates), updated_params {percent:.4f}%")
    return result


def write_counts(reference_root, path):
    import transformers

    command = ("/opt/ladderbench/reference-venv/bin/python tools/reference/lst_reference.py "
               "--reference /opt/ladderbench/Ladder-Side-Tuning --counts " + os.path.relpath(path))
    out = {
        "producer": "tools/reference/lst_reference.py --counts",
        "command": command,
        "reference": {"repository": "https://github.com/ylsung/Ladder-Side-Tuning",
                      "commit": reference_commit(reference_root),
                      "module": "seq2seq/third_party/models/t5/modeling_side_t5.py",
                      "freezing": "seq2seq/utils/utils.py modify_model_after_init (freeze_model_params, "
                                  "train_side_transformer: the parameters named side train)"},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "notes": ["backbone_parameters: transformers' T5ForConditionalGeneration(config).num_parameters() at "
                  "the published vocabulary 32128, the tied embedding counted once; equal to the reference "
                  "model's parameters without 'side' in their name",
                  "trainable_parameters: the count that modify_model_after_init logs ('Model Trainable "
                  "Parameters'), the gates of dropped layers (unused_gates) included",
                  "updated_params_percent: what run_seq2seq.py saves as updated_params: trainable / "
                  "updated_params_base * 100, a constant in modify_model_after_init (t5-base's for every "
                  "model but t5-large and t5-3b, so not meaningful for t5-small; the reference trains with "
                  "the embeddings resized to the tokenizer's 32100 rows)"],
        "models": [reference_parameter_counts(reference_root, spec) for spec in COUNT_SETTINGS],
    }
    text = json.dumps(out, indent=2)
    # Lists of numbers (shapes, layers) on one line.
    text = re.sub(r"\[\s+([0-9]+(?:,\s+[0-9]+)*)\s+\]",
                  lambda m: "[" + ", ".join(re.findall(r"[0-9]+", m.group(1))) + "]", text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def reference_commit(root):
    try:
        return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True,
                        help="checkout of github.com/ylsung/Ladder-Side-Tuning (the folder holding seq2seq/)")
    parser.add_argument("--out", help="output folder, e.g. tests/data/reference-lst")
    parser.add_argument("--counts", metavar="FILE",
                        help="write parameter counts at the published T5 shapes, e.g. "
                             "tests/data/reference-lst/param-counts.json")
    args = parser.parse_args()
    if not args.out and not args.counts:
        parser.error("give --out, --counts or both")
    reference_root = os.path.abspath(args.reference)
    if not os.path.isfile(os.path.join(reference_root, "seq2seq", "third_party", "models", "t5",
                                       "modeling_side_t5.py")):
        sys.exit(f"{reference_root}: no seq2seq/third_party/models/t5/modeling_side_t5.py (see --help)")

    import transformers

    torch.set_num_threads(1)
    if args.counts:
        write_counts(reference_root, args.counts)
        if not args.out:
            return
    os.makedirs(args.out, exist_ok=True)
    backbone_state = make_backbone(os.path.join(args.out, "backbone"))
    inputs = make_inputs(os.path.join(args.out, "inputs.json"))
    examples = fisher_examples(os.path.join(args.out, "fisher_examples.json"))
    configurations = [run_configuration(reference_root, backbone_state, inputs, examples, spec,
                                        os.path.join(args.out, spec["name"])) for spec in CONFIGURATIONS]
    manifest = {
        "producer": "tools/reference/lst_reference.py",
        "reference": {"repository": "https://github.com/ylsung/Ladder-Side-Tuning",
                      "commit": reference_commit(reference_root),
                      "module": "seq2seq/third_party/models/t5/modeling_side_t5.py"},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "seed": SEED,
        "fisher_samples": FISHER_EXAMPLES,
        "options": {"use_gate": "learnable", "gate_T": 0.1, "gate_alpha": 0.0, "add_bias_sampling": True,
                    "add_residual_after": False, "merge_last": False, "dropout_rate": 0.0},
        "configurations": configurations,
        "initialisation": initialisation_statistics(reference_root),
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
