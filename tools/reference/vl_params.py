#!/usr/bin/env python3
"""Trainable-parameter percentages of the LST paper's vision-and-language table (issue #22), re-derived.

The LST paper (Table 3, CLIP-T5 = frozen CLIP ResNet-101 features -> visual projection -> T5-base, VL-Adapter's
multi-task setting: tasks vqa,gqa,nlvr,caption with text task prompts) reports "Update Param. (%)":
Adapters 7.98, LoRA 7.54, BitFit 0.83, Prompt-tuning 1.26, LST 7.46, full fine-tuning 100. They are the
reference implementation's own printout (github.com/ylsung/Ladder-Side-Tuning, commit 1798e82,
VL-T5/src/trainer_base.py:244-264):

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total     = sum(p.numel() for p in model.parameters())        # the whole VLT5 model as built

so the denominator holds every module the method adds (adapters, LoRA matrices, BitFit's new biases, prompt
MLP, side network) and the visual embedding, and counts each shared tensor once (the tied embedding /
lm_head / obj_order_embedding, and the per-task ModuleDict/ParameterDict entries that --use_single_* makes
point at one module). No CLIP weights: the scripts use precomputed RN101 features (--feature RN101, not
raw_*), so no vis_encoder is attached (multitask.py:113).

This script enumerates, without torch, every parameter tensor the reference builds for each script's flags
(VL-T5/scripts/image/{adapter,lora,bitfit,prompt_tuning,LST,full_finetuning}.sh), under the reference's own
state_dict names, marks which ones the reference's freeze_whole_model() + unfreeze_parameters() leave
trainable, and writes tests/data/vl-params/reference.json (per method: trainable, total, percent,
paper_percent, breakdown by module group) and prints a table. docs/VL.md explains each count.

    python3 tools/reference/vl_params.py

--verify SRC builds each model with the reference's own classes (SRC = a checkout's VL-T5/src), applies
its own TrainerBase.create_config / freeze_whole_model / unfreeze_parameters /
print_trainable_params_percentage, and checks that its named_parameters() (name, numel, requires_grad)
equal this script's enumeration tensor by tensor. Needs transformers 4.2.1 (the reference's
requirements.txt) and torch; set-up used (Python 3.11, torch 2.11 from LadderBench's venv, ~1 GB RAM,
~1 minute on a CPU; weights are randomly initialised, nothing is downloaded):

    git clone https://github.com/ylsung/Ladder-Side-Tuning /tmp/lst   # commit 1798e82
    /opt/ladderbench/venv/bin/python -m venv /tmp/vlref-venv
    echo /opt/ladderbench/venv/lib/python3.11/site-packages \\
        > /tmp/vlref-venv/lib/python3.11/site-packages/ladderbench-torch.pth
    /tmp/vlref-venv/bin/pip install --no-deps transformers==4.2.1
    /tmp/vlref-venv/bin/pip install "numpy<2" packaging regex requests sacremoses tqdm pyyaml
    /tmp/vlref-venv/bin/python tools/reference/vl_params.py --verify /tmp/lst/VL-T5/src --no-write

In --verify mode modules the model never contains are stubbed so trainer_base.py imports (wandb; vis_encoder's
CLIPResNetEncoder and clip.model's VisualAdapter, which only matter with raw images), T5Config.from_pretrained
returns t5-base's published hyper-parameters instead of downloading, and the token embeddings are resized to
32200 as multitask.py:99-100 does with the VLT5 tokenizer's vocab_size (32000 sentencepiece pieces + 100
<extra_id_*> + 100 <vis_extra_id_*>, tokenization.py:59-60 / 99-110) without loading the tokenizer.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "vl-params", "reference.json")

REFERENCE = {"repository": "github.com/ylsung/Ladder-Side-Tuning", "commit": "1798e82e52f2f071084e6a10126c3da359176238"}

# T5-base (T5 v1.0: ReLU FF, tied embeddings, no biases), as the reference loads it.
T5_BASE = dict(d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12,
               relative_attention_num_buckets=32, hub_vocab=32128)
VLT5_VOCAB = 32000 + 100 + 100  # VLT5TokenizerFast.vocab_size, the size multitask.py:99-100 resizes to
FEAT_DIM = 2048                 # multitask.py feat_dim_dict["RN101"]
POS_DIM = 4                     # param.py --pos_dim; the box gets its area appended -> 5 inputs
N_IMAGES = 2                    # trainer_base.py create_config: config.n_images = 2
N_BOXES = 36                    # --n_boxes 36 --downsample: 7x7 CLIP grid max-pooled to 6x6 (no parameters)
TASKS = ["vqa", "gqa", "nlvr", "caption"]

# The paper's Table 3 "Update Param. (%)" (CLIP-T5, T5-base).
PAPER = OrderedDict([("full_finetuning", 100.0), ("adapter", 7.98), ("lora", 7.54), ("bitfit", 0.83),
                     ("prompt_tuning", 1.26), ("lst", 7.46)])

# Each script's method flags (the rest, shared by all six, do not change parameters:
# --use_tasks_prompts --tasks vqa,gqa,nlvr,caption --feature RN101 --n_boxes 36 --downsample).
SCRIPTS = OrderedDict([
    ("full_finetuning", ("full_finetuning.sh", ["--unfreeze_language_model"])),
    ("adapter", ("adapter.sh", ["--use_adapter", "--unfreeze_layer_norms", "--reduction_factor", "4",
                                "--use_single_adapter"])),
    ("lora", ("lora.sh", ["--use_lora", "--lora_dim", "150", "--use_single_lora"])),
    ("bitfit", ("bitfit.sh", ["--use_bitfit"])),
    ("prompt_tuning", ("prompt_tuning.sh", ["--encoder_prompt_len", "40", "--mid_dim", "800",
                                            "--use_single_prompt"])),
    ("lst", ("LST.sh", ["--use_side_transformers", "--side_reduction_factor", "4",
                        "--load_side_pretrained_weights", "fisher-v2"])),
])
COMMON_FLAGS = ["--backbone", "t5-base", "--use_tasks_prompts", "--tasks", "vqa,gqa,nlvr,caption",
                "--feature", "RN101", "--n_boxes", "36", "--downsample"]


class Options:
    """What each method's flags mean for the model the reference builds (defaults from param.py)."""

    def __init__(self, method):
        self.method = method
        self.adapter = method == "adapter"
        self.reduction_factor = 4          # adapter.sh --reduction_factor 4 -> hidden 768 // 4 = 192
        self.add_adapter_cross_attn = True  # param.py:169 default True, not overridden by adapter.sh
        self.lora = method == "lora"
        self.lora_dim = 150
        self.bitfit = method == "bitfit"
        self.encoder_prompt_len = 40 if method == "prompt_tuning" else 0
        self.decoder_prompt_len = 0        # param.py:142 default; prompt_tuning.sh sets only the encoder's
        self.mid_dim = 800
        self.side = method == "lst"
        self.side_reduction_factor = 4
        self.full = method == "full_finetuning"


def linear(params, name, fan_in, fan_out, bias):
    params[name + ".weight"] = fan_in * fan_out
    if bias:
        params[name + ".bias"] = fan_out


def layer_norm(params, name, dim, bitfit):
    # my_transformers/modeling_t5.py:241-251: T5LayerNorm has a weight; BitFit adds a bias to it.
    params[name + ".weight"] = dim
    if bitfit:
        params[name + ".bias"] = dim


def attention(params, name, d_model, inner, heads, buckets, relative, opt):
    bias = opt.bitfit  # my_transformers/modeling_t5.py:358-361: q,k,v,o get biases only with BitFit
    for proj in ("q", "k", "v", "o"):
        fan_in, fan_out = (inner, d_model) if proj == "o" else (d_model, inner)
        linear(params, f"{name}.{proj}", fan_in, fan_out, bias)
        if opt.lora and proj in ("q", "v"):
            # lora/controller.py:75-80 with use_single_lora: one A (r, in) and one B (out, r), stored under
            # every task's key; named_parameters()/parameters() yield them once, under the first task.
            params[f"{name}.{proj}.lora_As.{TASKS[0]}"] = opt.lora_dim * fan_in
            params[f"{name}.{proj}.lora_Bs.{TASKS[0]}"] = fan_out * opt.lora_dim
    if relative:
        params[f"{name}.relative_attention_bias.weight"] = buckets * heads


def adapter(params, name, d_model, opt):
    # adapters/adapter_controller.py:49-58 (use_single_adapter: one Adapter under every task's key) and
    # adapters/adapter_modeling.py:36-48 (Linear(d, d // reduction_factor) -> gelu_new -> Linear back, biases).
    # No LayerNorm: trainer_base.py:166-167 copies --add_layer_norm_before/after_adapter (both False).
    hidden = d_model // opt.reduction_factor
    linear(params, f"{name}.adapters.{TASKS[0]}.down_sampler", d_model, hidden, True)
    linear(params, f"{name}.adapters.{TASKS[0]}.up_sampler", hidden, d_model, True)


def block(params, name, dims, decoder, relative, opt, with_adapters):
    d, ff, inner, heads, buckets = dims
    attention(params, f"{name}.layer.0.SelfAttention", d, inner, heads, buckets, relative, opt)
    layer_norm(params, f"{name}.layer.0.layer_norm", d, opt.bitfit)
    if with_adapters:
        adapter(params, f"{name}.layer.0.attn_adapter", d, opt)
    ff_index = 1
    if decoder:
        # T5LayerCrossAttention: EncDecAttention never has a relative bias (modeling_t5.py:623-633).
        attention(params, f"{name}.layer.1.EncDecAttention", d, inner, heads, buckets, False, opt)
        layer_norm(params, f"{name}.layer.1.layer_norm", d, opt.bitfit)
        if with_adapters and opt.add_adapter_cross_attn:
            adapter(params, f"{name}.layer.1.enc_attn_adapter", d, opt)
        ff_index = 2
    linear(params, f"{name}.layer.{ff_index}.DenseReluDense.wi", d, ff, opt.bitfit)
    linear(params, f"{name}.layer.{ff_index}.DenseReluDense.wo", ff, d, opt.bitfit)
    layer_norm(params, f"{name}.layer.{ff_index}.layer_norm", d, opt.bitfit)
    if with_adapters:
        adapter(params, f"{name}.layer.{ff_index}.ff_adapter", d, opt)


def side_network(params, stack, layers, opt):
    """T5Stack's side modules (my_transformers/modeling_t5.py:896-964) with SideConfig's defaults
    (side_transformers/config.py: every layer, add_bias_sampling, use_gate learnable, no pooling)."""
    c = T5_BASE
    r = opt.side_reduction_factor
    side_d, side_ff, side_kv = c["d_model"] // r, c["d_ff"] // r, c["d_kv"] // r
    heads = c["num_heads"]  # num_heads is not reduced: 12 heads of d_kv 16 -> inner 192
    dims = (side_d, side_ff, heads * side_kv, heads, c["relative_attention_num_buckets"])
    side_opt = Options("none")  # the side blocks' config is a copy of the model's: no adapters/LoRA/BitFit
    for i in range(layers):
        block(params, f"{stack}.side_block.{i}", dims, stack == "decoder", i == 0, side_opt, False)
    linear(params, f"{stack}.side_first_downsample", c["d_model"], side_d, True)
    for i in range(layers):
        linear(params, f"{stack}.side_downsamples.{i}", c["d_model"], side_d, True)
    for i in range(layers):
        params[f"{stack}.side_gate_params.{i}"] = 1
    layer_norm(params, f"{stack}.final_side_layer_norm", side_d, False)


def build(method, vocab=VLT5_VOCAB):
    """OrderedDict name -> numel of model.parameters() (shared tensors once) for one method."""
    opt = Options(method)
    c = T5_BASE
    d = c["d_model"]
    dims = (d, c["d_ff"], c["num_heads"] * c["d_kv"], c["num_heads"], c["relative_attention_num_buckets"])
    params = OrderedDict()
    # The tied token embedding: shared == encoder.embed_tokens == decoder.embed_tokens == lm_head.weight ==
    # encoder.visual_embedding.obj_order_embedding (modeling_t5.py:81, 186, 206-208, 574; HF ties lm_head).
    params["shared.weight"] = vocab * d
    # JointEncoder (modeling_t5.py:179-204): the T5 stack, then its visual embedding and prompt.
    for i in range(c["num_layers"]):
        block(params, f"encoder.block.{i}", dims, False, i == 0, opt, opt.adapter)
    if opt.side:
        side_network(params, "encoder", c["num_layers"], opt)
    layer_norm(params, "encoder.final_layer_norm", d, opt.bitfit)
    # VisualEmbedding (modeling_t5.py:46-82) with individual_vis_layer_norm and use_vis_layer_norm True
    # (param.py:100-101): Linear(2048, 768) + T5LayerNorm; Linear(5, 768) + T5LayerNorm; Embedding(2, 768).
    linear(params, "encoder.visual_embedding.feat_embedding.0", FEAT_DIM, d, True)
    layer_norm(params, "encoder.visual_embedding.feat_embedding.1", d, opt.bitfit)
    linear(params, "encoder.visual_embedding.absolute_vis_pos_embedding.0", POS_DIM + 1, d, True)
    layer_norm(params, "encoder.visual_embedding.absolute_vis_pos_embedding.1", d, opt.bitfit)
    params["encoder.visual_embedding.img_order_embedding.weight"] = N_IMAGES * d
    if opt.encoder_prompt_len:
        # prompt/prompt_modeling.py:13-18 (Embedding(40, 768) -> Linear(768, 800) -> Tanh -> Linear(800, 768));
        # use_single_prompt: one InputPrompts under every task (prompt_controller.py:30-35).
        p = f"encoder.prompt_modules.prompts.{TASKS[0]}.prefix_embedding"
        params[f"{p}.0.weight"] = opt.encoder_prompt_len * d
        linear(params, f"{p}.1", d, opt.mid_dim, True)
        linear(params, f"{p}.3", opt.mid_dim, d, True)
    for i in range(c["num_decoder_layers"]):
        block(params, f"decoder.block.{i}", dims, True, i == 0, opt, opt.adapter)
    if opt.side:
        side_network(params, "decoder", c["num_decoder_layers"], opt)
    layer_norm(params, "decoder.final_layer_norm", d, opt.bitfit)
    if opt.side:
        linear(params, "side_final_upsample", d // opt.side_reduction_factor, d, True)  # modeling_t5.py:597-601
    if opt.bitfit:
        params["lm_head.bias"] = vocab  # modeling_t5.py:593-595 (weight tied to shared.weight)
    return params


def trainable(method, name):
    """Whether trainer_base.py:306-416 (after freeze_whole_model) leaves this parameter trainable."""
    if "visual_embedding" in name:  # :307-312, every method
        return True
    if method == "full_finetuning":  # :316-327: lm_head/shared and every parameter of T5Stack/JointEncoder
        return True
    if method == "adapter":
        # :400-404 AdapterController modules. :386-391 --unfreeze_layer_norms tests isinstance against
        # transformers' T5LayerNorm (imported at :22), but the model's norms are my_transformers' own class
        # (my_transformers/modeling_t5.py:241), and the adapters have no nn.LayerNorm: it unfreezes nothing.
        return "_adapter." in name
    if method == "lora":
        return "lora" in name or ".bias" in name  # :336-341 (no backbone biases without BitFit)
    if method == "bitfit":
        return ".bias" in name  # :343-348
    if method == "prompt_tuning":
        return "prompt_modules" in name  # :357-363 PromptController modules
    if method == "lst":
        return "side" in name  # :350-355
    raise ValueError(method)


def group(name):
    """Module group of a parameter, for the breakdown."""
    if "visual_embedding" in name:
        return "visual_embedding"
    if "_adapter." in name:
        return "adapters"
    if ".lora_" in name:
        return "lora"
    if "prompt_modules" in name:
        return "prompt"
    if name == "side_final_upsample.weight" or name == "side_final_upsample.bias":
        return "side_final_upsample"
    for stack in ("encoder", "decoder"):
        if name.startswith(f"{stack}.side_block."):
            if "relative_attention_bias" in name:
                return f"side_{stack}_relative_attention_bias"
            return f"side_{stack}_blocks"
        for part in ("side_first_downsample", "side_downsamples", "side_gate_params", "final_side_layer_norm"):
            if name.startswith(f"{stack}.{part}"):
                return f"{stack}.{part}"
    if name == "lm_head.bias":
        return "bitfit_lm_head_bias"
    if name.endswith(".bias"):
        return "bitfit_backbone_biases"
    return "t5_backbone"


def summarise(method, vocab=VLT5_VOCAB):
    params = build(method, vocab)
    total = sum(params.values())
    train = {n: v for n, v in params.items() if trainable(method, n)}
    breakdown = OrderedDict()
    for n, v in train.items():
        g = group(n)
        breakdown[g] = breakdown.get(g, 0) + v
    frozen = OrderedDict()
    for n, v in params.items():
        if n not in train:
            g = group(n)
            frozen[g] = frozen.get(g, 0) + v
    t = sum(train.values())
    return params, OrderedDict([
        ("script", "VL-T5/scripts/image/" + SCRIPTS[method][0]),
        ("flags", SCRIPTS[method][1]),
        ("trainable", t),
        ("total", total),
        ("percent", round(100.0 * t / total, 4)),
        ("percent_2dp", f"{100.0 * t / total:.2f}"),
        ("paper_percent", PAPER[method]),
        ("breakdown", breakdown),
        ("frozen", frozen),
    ])


FULL_MODEL = sum(build("full_finetuning").values())


def verify(src):
    """Build each method with the reference's own classes and compare tensor by tensor."""
    import contextlib
    import io
    import types

    sys.path.insert(0, src)
    sys.modules["wandb"] = types.ModuleType("wandb")
    vis = types.ModuleType("vis_encoder")
    vis.CLIPResNetEncoder = type("CLIPResNetEncoder", (), {})
    vis.get_vis_encoder = None
    sys.modules["vis_encoder"] = vis
    clip = types.ModuleType("clip")
    clip_model = types.ModuleType("clip.model")
    clip_model.VisualAdapter = type("VisualAdapter", (), {})
    clip.model = clip_model
    sys.modules["clip"], sys.modules["clip.model"] = clip, clip_model

    import torch
    import transformers
    from transformers import T5Config

    c = T5_BASE

    def from_pretrained(cls, name, **kwargs):
        assert name == "t5-base", name
        return cls(vocab_size=c["hub_vocab"], d_model=c["d_model"], d_kv=c["d_kv"], d_ff=c["d_ff"],
                   num_layers=c["num_layers"], num_decoder_layers=c["num_decoder_layers"], num_heads=c["num_heads"],
                   relative_attention_num_buckets=c["relative_attention_num_buckets"], dropout_rate=0.1,
                   layer_norm_epsilon=1e-6, initializer_factor=1.0, feed_forward_proj="relu",
                   is_encoder_decoder=True, tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0)

    T5Config.from_pretrained = classmethod(from_pretrained)
    import param
    import trainer_base
    from multitask_model import VLT5MultiTask

    print(f"verifying against {src} (transformers {transformers.__version__}, torch {torch.__version__})")
    ok = True
    for method, (script, flags) in SCRIPTS.items():
        saved = sys.argv
        sys.argv = ["multitask.py"] + COMMON_FLAGS + flags
        args = param.parse_args(parse=True)
        sys.argv = saved
        assert args.feature_type == "RN101"  # "--feature" is argparse's abbreviation of --feature_type
        args.feat_dim = FEAT_DIM  # multitask.py main_worker for RN101
        args.gpu = 0
        trainer = trainer_base.TrainerBase.__new__(trainer_base.TrainerBase)
        trainer.args = args
        config = trainer.create_config()
        torch.manual_seed(0)
        model = VLT5MultiTask(config)
        model.resize_token_embeddings(VLT5_VOCAB)
        trainer.model = model
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.freeze_whole_model()
            trainer.unfreeze_parameters()
        printout = io.StringIO()
        with contextlib.redirect_stdout(printout):
            trainer.print_trainable_params_percentage(model)
        theirs = {n: (p.numel(), p.requires_grad) for n, p in model.named_parameters()}
        expected, summary = summarise(method)
        ours = {n: (v, trainable(method, n)) for n, v in expected.items()}
        same = theirs == ours
        ok &= same
        print(f"{method:16s} {'OK ' if same else 'MISMATCH'} reference printout: {printout.getvalue().strip()}"
              f"   ours: {summary['percent_2dp']}% ({summary['trainable']}/{summary['total']})")
        if not same:
            for n in sorted(set(theirs) | set(ours)):
                if theirs.get(n) != ours.get(n):
                    print(f"    {n}: reference {theirs.get(n)} ours {ours.get(n)}")
        del model
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verify", metavar="SRC", help="a Ladder-Side-Tuning checkout's VL-T5/src to check against")
    ap.add_argument("--no-write", action="store_true", help="do not write " + os.path.relpath(OUT, ROOT))
    a = ap.parse_args()

    methods = OrderedDict()
    for method in SCRIPTS:
        _, s = summarise(method)
        # The same model with the hub's 32128-row embedding (what loading HF t5-base without the VLT5
        # tokenizer's 72 added <vis_extra_id_*> rows gives): 72 * 768 fewer total, BitFit 72 fewer trainable.
        _, alt = summarise(method, vocab=T5_BASE["hub_vocab"])
        s["vocab_32128"] = OrderedDict([("trainable", alt["trainable"]), ("total", alt["total"]),
                                        ("percent", alt["percent"])])
        # The same trainable count over the full fine-tuning model (T5 + visual embedding, no added modules).
        s["percent_of_full_model"] = round(100.0 * s["trainable"] / FULL_MODEL, 4)
        methods[method] = s

    # adapter.sh passes --unfreeze_layer_norms, which is a no-op in the reference (see trainable()); had it
    # unfrozen the backbone's T5LayerNorm weights, the printout would have read 8.00, not the paper's 7.98.
    ad = methods["adapter"]
    norms = sum(v for n, v in build("adapter").items()
                if "layer_norm" in n and "visual_embedding" not in n and "side" not in n)
    ad["if_layer_norms_trained"] = OrderedDict([
        ("backbone_layer_norm_parameters", norms), ("trainable", ad["trainable"] + norms),
        ("percent", round(100.0 * (ad["trainable"] + norms) / ad["total"], 4))])

    t5 = build("full_finetuning")
    t5_backbone = sum(v for n, v in t5.items() if "visual_embedding" not in n)
    doc = OrderedDict([
        ("what", "Trainable-parameter percentages of the LST paper's CLIP-T5 (T5-base) table, as the reference "
                 "implementation prints them: trainable / sum of all model.parameters() (tied tensors once, "
                 "added modules and the visual embedding included, no CLIP). Written by "
                 "tools/reference/vl_params.py; explained in docs/VL.md."),
        ("reference", REFERENCE),
        ("model", OrderedDict([("backbone", "t5-base"), ("vocab", VLT5_VOCAB), ("feat_dim", FEAT_DIM),
                               ("n_boxes", N_BOXES), ("n_images", N_IMAGES), ("tasks", TASKS),
                               ("t5_parameters", t5_backbone),
                               ("t5_parameters_vocab_32128", t5_backbone - (VLT5_VOCAB - T5_BASE["hub_vocab"]) * 768),
                               ("visual_embedding_parameters", sum(v for n, v in t5.items() if "visual_embedding" in n))])),
        ("verified", "tensor-by-tensor equal (name, numel, requires_grad) to the reference's own VLT5MultiTask "
                     "after its freeze_whole_model/unfreeze_parameters, and its print_trainable_params_percentage "
                     "gives the same totals (transformers 4.2.1; run with --verify)"),
        ("methods", methods),
    ])

    print(f"{'method':16s} {'trainable':>11s} {'total':>12s} {'percent':>8s} {'paper':>7s}  (vocab 32128: percent)")
    for m, s in methods.items():
        print(f"{m:16s} {s['trainable']:11d} {s['total']:12d} {s['percent_2dp']:>8s} {s['paper_percent']:7.2f}"
              f"  ({s['vocab_32128']['percent']:.4f})")
        for g, v in s["breakdown"].items():
            print(f"    {g:40s} {v:11d}")

    mismatched = [m for m, s in methods.items() if float(s["percent_2dp"]) != s["paper_percent"]]
    if mismatched:
        print("differs from the paper:", ", ".join(mismatched))

    if not a.no_write:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print("wrote", os.path.relpath(OUT, ROOT))

    if a.verify:
        if not verify(a.verify):
            sys.exit(1)


if __name__ == "__main__":
    main()
