#!/usr/bin/env python3
"""HuggingFace Trainer's optimizer steps and learning rates, as the reference for LadderBench's trainer.

For each (examples, batch size, gradient accumulation, epochs, warm-up) combination this runs the real
`transformers.Trainer` (linear schedule with warm-up, `get_linear_schedule_with_warmup`) on a dummy model
and records the learning rate every optimizer step uses and how many steps it plans and takes. The
learning rate is 1.0, so the recorded values are the schedule's multipliers. Writes JSON that
tests/unit/test_trainer.cpp (hfScheduleAndAccumulation) compares LadderBench's trainer with.

  python tools/reference/hf_schedule.py tests/data/hf-schedule.json

Needs torch, transformers and accelerate (for example the set-up's venv:
`/opt/ladderbench/venv/bin/python -m pip install transformers accelerate`). Versions are recorded in the
output.
"""
import json
import sys

import accelerate
import torch
import transformers
from torch.utils.data import Dataset

# (examples, batch size, accumulation, epochs, warm-up steps). The first is the case the trainer got wrong:
# 5 batches per epoch with accumulation 2.
COMBINATIONS = [
    (48, 10, 2, 3, 2),
    (48, 8, 4, 2, 3),
    (48, 16, 1, 4, 0),
    (48, 20, 5, 3, 1),
    (48, 7, 3, 2, 4),
    (48, 12, 2, 5, 6),
]


class Ones(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.tensor([1.0]), "labels": torch.tensor([0.0])}


class Dummy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x, labels):
        return {"loss": ((x * self.w - labels) ** 2).mean()}


class RecordingAdamW(torch.optim.AdamW):
    """AdamW that records the learning rate each of its steps uses."""

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.rates = []

    def step(self, closure=None):
        self.rates.append(self.param_groups[0]["lr"])
        return super().step(closure)


def run(examples, batch, accumulation, epochs, warmup, out_dir):
    model = Dummy()
    optimizer = RecordingAdamW(model.parameters(), lr=1.0, weight_decay=0.0)
    args = transformers.TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        num_train_epochs=epochs, warmup_steps=warmup, learning_rate=1.0, lr_scheduler_type="linear",
        max_grad_norm=0.0, logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
        use_cpu=True, dataloader_drop_last=False, seed=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Ones(examples),
                                   optimizers=(optimizer, None))
    trainer.train()
    return {"examples": examples, "batch_size": batch, "gradient_accumulation": accumulation, "epochs": epochs,
            "warmup_steps": warmup, "batches_per_epoch": -(-examples // batch),
            "planned_steps": trainer.state.max_steps, "steps": len(optimizer.rates),
            "learning_rates": optimizer.rates}


def main(path):
    import tempfile

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for combo in COMBINATIONS:
            cases.append(run(*combo, tmp))
            c = cases[-1]
            print(f"{combo}: {c['batches_per_epoch']} batches/epoch, planned {c['planned_steps']}, "
                  f"took {c['steps']} steps", file=sys.stderr)
    out = {"generator": "tools/reference/hf_schedule.py",
           "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                        "accelerate": accelerate.__version__},
           "cases": cases}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
