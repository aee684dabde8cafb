#!/usr/bin/env python3
"""Reference values from HF PEFT for LadderBench's methods on a decoder-only backbone (issue #21).

On tests/fixtures/decoder/{llama-gqa,qwen2-bias}: LoRA (all seven projections, rank 4, alpha 8, B random so
the path is not zero) and prompt tuning (5 virtual tokens) built by PEFT, their trainable-parameter counts,
their weights and HF's logits and loss on the fixture's inputs (row 0: no padding; prompt tuning's labels
get -100 over the virtual tokens, as PEFT does). Written to tests/data/decoder-peft/<fixture>.safetensors
(+ counts in decoder-peft/counts.json). Run:

    /opt/ladderbench/hf-venv/bin/python tools/reference/decoder_peft.py
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model
import peft
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "decoder")
OUT = os.path.join(ROOT, "tests", "data", "decoder-peft")

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run(name):
    folder = os.path.join(FIXTURES, name)
    expected = load_file(os.path.join(folder, "expected.safetensors"))
    ids = expected["input_ids"][:1]
    mask = expected["attention_mask"][:1]
    labels = expected["labels"][:1]
    out, counts = {}, {}

    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=targets, bias="none", init_lora_weights=False)).eval()
    counts["lora_all_r4"] = trainable(lora)
    for k, v in lora.named_parameters():
        if "lora_" in k:
            # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> LadderBench's name
            short = k.replace("base_model.model.", "", 1).replace(".default.weight", "")
            out["lora." + short] = v.detach().clone().contiguous()
    with torch.no_grad():
        o = lora(input_ids=ids, attention_mask=mask, labels=labels)
    out["lora.logits"] = o.logits.float().contiguous()
    out["lora.loss"] = o.loss.float().reshape(1)

    torch.manual_seed(8)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    qv = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16,
                                         target_modules=["q_proj", "v_proj"], bias="none"))
    counts["lora_qv_r8"] = trainable(qv)

    torch.manual_seed(9)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = get_peft_model(base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=5)).eval()
    counts["prompt_5"] = trainable(prompt)
    with torch.no_grad():
        table = prompt.prompt_encoder["default"].embedding.weight
        table.normal_(0.0, 0.5)
        out["prompt.prompt"] = table.detach().clone().contiguous()
        o = prompt(input_ids=ids, attention_mask=mask, labels=labels)
    out["prompt.logits"] = o.logits.float().contiguous()  # (1, 5 + length, vocab)
    out["prompt.loss"] = o.loss.float().reshape(1)

    counts["backbone"] = sum(p.numel() for p in base.parameters())
    save_file(out, os.path.join(OUT, name + ".safetensors"))
    return counts


def main():
    os.makedirs(OUT, exist_ok=True)
    counts = {name: run(name) for name in ("llama-gqa", "qwen2-bias")}
    counts["versions"] = {"transformers": transformers.__version__, "peft": peft.__version__,
                          "torch": torch.__version__}
    with open(os.path.join(OUT, "counts.json"), "w") as f:
        json.dump(counts, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(counts, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
