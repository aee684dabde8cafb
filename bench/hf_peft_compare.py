#!/usr/bin/env python3
"""LadderBench side by side with HuggingFace transformers + PEFT, from one invocation.

Trains the same T5 shape (random weights), batch and lengths with
  - HF transformers full fine-tuning and PEFT LoRA (q, v; rank/alpha as given; no biases), and
  - LadderBench's full, LoRA (BitFit biases off, to match PEFT) and LST, through `ladder bench memory --json`,
and prints step time and peak memory of each, with ratios to HF full fine-tuning.

Every configuration runs in its own fresh process (one at a time), so peaks do not mix:
  - step time: mean wall time of AdamW steps 2..N on one fixed random batch (step 1 allocates AdamW state);
    the same protocol in both frameworks.
  - memory on CUDA: torch.cuda.max_memory_allocated() (HF) and LadderBench's CUDA allocator peak (the same
    statistic); on the CPU: the peak resident set size of the process (ru_maxrss from wait4), the only figure
    both sides can be measured by alike; LadderBench's own tracked tensor peak is shown beside it.

The product never needs Python: this script (standard library only) builds its own virtual environment
(default /opt/ladderbench/bench-venv, `python3 -m venv`, then `pip install torch transformers peft` from PyPI)
and runs the HF configurations with that environment's python. Usage:

  python3 bench/hf_peft_compare.py --ladder build/release/bin/ladder --shape t5-small --batch 16 \
      --src-len 128 --tgt-len 4 --steps 4 [--device cuda] [--threads 1] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_VENV = "/opt/ladderbench/bench-venv"
PACKAGES = ["torch", "transformers", "peft"]

# The published T5 v1.0 shapes (the same presets as `ladder bench memory --shape`).
SHAPES = {
    "t5-small": dict(d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6),
    "t5-base": dict(d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12),
    "t5-large": dict(d_model=1024, d_ff=4096, d_kv=64, num_heads=16, num_layers=24),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ladder", default="build/release/bin/ladder", help="the built ladder CLI")
    p.add_argument("--shape", default="t5-small", choices=sorted(SHAPES))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--src-len", type=int, default=128)
    p.add_argument("--tgt-len", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="AdamW steps per configuration (>= 2; steps 2.. are timed)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for every configuration (0: default)")
    p.add_argument("--lora-rank", type=int, default=32)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--ladder-r", type=int, default=8)
    p.add_argument("--ladder-keep", default="", help="LST side layers kept, comma list (default all)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: mixed precision on both sides (bf16 autocast, fp32 weights and AdamW state)")
    p.add_argument("--venv", default=os.environ.get("LADDER_BENCH_VENV", DEFAULT_VENV))
    p.add_argument("--python", default="",
                   help="a python that already has torch, transformers and peft (the GPU kit's machine): no venv")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", choices=["hf-full", "hf-lora"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.steps < 2:
        p.error("--steps must be at least 2")
    return a


# ---- the virtual environment ---------------------------------------------------------------------
def ensure_venv(venv):
    """Creates `venv` with torch, transformers and peft when it lacks them; returns its python."""
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import torch, transformers, peft"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"setting up {venv}: python3 -m venv, pip install {' '.join(PACKAGES)} (PyPI; torch is large)",
          file=sys.stderr)
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet"] + PACKAGES, check=True)
    if subprocess.run(check, capture_output=True).returncode != 0:
        sys.exit(f"{venv}: torch, transformers and peft still do not import after installing them")
    return python


# ---- one HF configuration (runs inside the venv, in its own process) ------------------------------
def hf_worker(a):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    torch.manual_seed(0)
    config = T5Config(vocab_size=32128, dropout_rate=0.1, feed_forward_proj="relu", tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      num_decoder_layers=SHAPES[a.shape]["num_layers"], **SHAPES[a.shape])
    # Built on the device itself (as from_pretrained with device_map does), not on the CPU and moved.
    with torch.device(device):
        model = T5ForConditionalGeneration(config)
    if a.worker == "hf-lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=a.lora_rank, lora_alpha=a.lora_alpha,
                          lora_dropout=0.0, target_modules=["q", "v"], bias="none")
        model = get_peft_model(model, lora)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, config.vocab_size, (a.batch, a.src_len), generator=g).to(device)
    mask = torch.ones_like(ids)
    labels = torch.randint(2, config.vocab_size, (a.batch, a.tgt_len), generator=g).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        # HF Trainer's --bf16: autocast around the forward, fp32 weights, gradients and AdamW state.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        value = loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - t0)
        if value != value:
            sys.exit(f"{a.worker}: the loss is NaN")
    out = {"seconds_per_step": sum(times) / len(times), "trainable_params": trainable,
           "threads": torch.get_num_threads(), "versions": {"torch": torch.__version__}}
    import peft
    import transformers

    out["versions"].update(transformers=transformers.__version__, peft=peft.__version__)
    if device.type == "cuda":
        out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))


# ---- the parent: run every configuration in a child process ---------------------------------------
def run_measured(cmd, env):
    """Runs cmd in a child and returns (stdout, its peak RSS in bytes) via wait4."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.close(r)
        errfile = os.open(f"/tmp/hf_peft_compare.{os.getppid()}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(errfile, 2)
        try:
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        errpath = f"/tmp/hf_peft_compare.{os.getpid()}.err"
        err = open(errpath).read()[-2000:] if os.path.exists(errpath) else ""
        sys.exit(f"{' '.join(cmd)} failed with exit status {code}:\n{err}")
    return b"".join(chunks).decode(), usage.ru_maxrss * 1024  # Linux: kilobytes


def main(argv):
    a = parse_args(argv)
    if a.worker:
        hf_worker(a)
        return
    if a.python:
        python = a.python
        check = subprocess.run([python, "-c", "import torch, transformers, peft"], capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit(f"--python {python}: cannot import torch, transformers and peft:\n{check.stderr[-1000:]}")
    else:
        python = ensure_venv(a.venv)
    if not os.path.exists(a.ladder):
        sys.exit(f"--ladder {a.ladder}: not found (build it first: cmake --build build/release --target ladder)")
    env = dict(os.environ)
    if a.threads > 0:
        env["OMP_NUM_THREADS"] = str(a.threads)
    me = os.path.abspath(__file__)
    common = ["--shape", a.shape, "--batch", str(a.batch), "--src-len", str(a.src_len), "--tgt-len", str(a.tgt_len),
              "--steps", str(a.steps), "--device", a.device, "--dtype", a.dtype]
    rows = []
    for worker, label in [("hf-full", "HF full"), ("hf-lora", "HF + PEFT LoRA")]:
        print(f"running {label} ...", file=sys.stderr)
        out, rss = run_measured([python, me, "--worker", worker, "--threads", str(a.threads), "--python", python,
                                 "--lora-rank", str(a.lora_rank), "--lora-alpha", str(a.lora_alpha)] + common, env)
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(dict(label=label, framework="hf", method=worker[3:], seconds_per_step=r["seconds_per_step"],
                         trainable_params=r["trainable_params"], peak_rss_bytes=rss,
                         peak_allocated_bytes=r.get("peak_allocated_bytes"), versions=r["versions"]))
    ladder_methods = [("full", "LadderBench full", []),
                      ("lora", "LadderBench LoRA", ["--rank", str(a.lora_rank), "--alpha", str(a.lora_alpha),
                                                    "--bitfit", "false"]),
                      ("ladder", "LadderBench LST", ["--r", str(a.ladder_r)] +
                       (["--keep", a.ladder_keep] if a.ladder_keep else []))]
    for method, label, extra in ladder_methods:
        print(f"running {label} ...", file=sys.stderr)
        out, rss = run_measured([a.ladder, "bench", "memory", "--methods", method, "--json"] + common + extra, env)
        r = json.loads(out)[method]
        rows.append(dict(label=label, framework="ladderbench", method=method, seconds_per_step=r["seconds_per_step"],
                         trainable_params=r["trainable_params"], peak_rss_bytes=rss,
                         peak_allocated_bytes=r["peak_bytes"] if a.device.startswith("cuda") else None,
                         tracked_peak_bytes=r["peak_bytes"]))

    base = rows[0]
    cuda = a.device.startswith("cuda")
    for r in rows:
        r["step_ratio"] = r["seconds_per_step"] / base["seconds_per_step"]
        key = "peak_allocated_bytes" if cuda else "peak_rss_bytes"
        r["memory_ratio"] = r[key] / base[key]
    if a.json:
        print(json.dumps(dict(shape=a.shape, batch=a.batch, src_len=a.src_len, tgt_len=a.tgt_len, steps=a.steps,
                              device=a.device, dtype=a.dtype, threads=a.threads, rows=rows), indent=2))
        return
    measure = "peak allocated (CUDA allocator)" if cuda else "peak RSS of the process"
    print(f"{a.shape} (random weights), batch {a.batch}, source {a.src_len}, target {a.tgt_len}, AdamW, "
          f"{a.steps} steps (2..{a.steps} timed), {a.device}, {a.dtype}, threads {a.threads or 'default'}")
    print(f"versions: {rows[0]['versions']}")
    print(f"memory: {measure}; ratios to HF full fine-tuning\n")
    head = f"{'configuration':<20}{'s/step':>9}{'ratio':>8}{'memory MB':>11}{'ratio':>8}{'trainable':>13}"
    if not cuda:
        head += f"{'LB tracked MB':>15}"
    print(head)
    for r in rows:
        mem = r["peak_allocated_bytes"] if cuda else r["peak_rss_bytes"]
        line = (f"{r['label']:<20}{r['seconds_per_step']:>9.3f}{r['step_ratio']:>8.2f}{mem / 1e6:>11.1f}"
                f"{r['memory_ratio']:>8.2f}{r['trainable_params']:>13,}")
        if not cuda:
            line += f"{(r['tracked_peak_bytes'] / 1e6 if r.get('tracked_peak_bytes') else float('nan')):>15.1f}"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
