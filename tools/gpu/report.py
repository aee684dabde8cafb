#!/usr/bin/env python3
"""Turns the GPU kit's gpu-kit.json into the Markdown tables of docs/GPU.md (printed to stdout).

  python3 tools/gpu/report.py OUT/gpu-kit.json [--device-seconds S] >> docs/GPU.md   (then edit the prose)

Standard library only. Every figure printed is read from the JSON; nothing is computed that the kit did
not measure, except ratios and MB conversions, which are labelled.
"""
import argparse
import json
import sys

MB = 1e6
GB = 1e9


def fmt(v, spec=".3f", none="-"):
    return none if v is None else format(v, spec)


def header(cols):
    return ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]


def section_machine(r):
    k, m = r["kit"], r.get("machine", {})
    out = [f"Run of {k.get('started')} ({k.get('mode')}), commit `{k.get('commit')}`, kit wall time "
           f"{fmt(k.get('wall_seconds'), '.0f')} s of a {fmt(k.get('budget_seconds'), '.0f')} s budget.", ""]
    if m.get("nvidia_smi"):
        out.append(f"- GPU (nvidia-smi: name, driver, memory, max SM clock): {m['nvidia_smi']}")
    if m.get("ladder_version"):
        out.append(f"- {m['ladder_version']}; reference python: {m.get('python_torch')} (Python {m.get('python')})")
    out.append(f"- {m.get('cpus')} CPUs, {m.get('platform')}")
    return out


def section_tests(s):
    counts = s.get("counts", {})
    out = [f"`ctest -L gpu`: {s.get('summary') or 'no summary'} (exit {s.get('exit_code')}); "
           f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped"
           + (f"; test cases skipped inside them: {', '.join(s['skipped_cases'])}" if s.get("skipped_cases") else ""),
           ""]
    out += header(["test", "status", "seconds"])
    for t in s.get("tests", []):
        out.append(f"| {t['name']} | {t['status']} | {t['seconds']:.1f} |")
    methods = [x for x in s.get("results", []) if x.get("test") == "methods"]
    if methods:
        out += ["", "CUDA against the CPU, one forward and backward, fp32, dropout 0 (relative errors):", ""]
        out += header(["method", "FFN", "loss CPU", "loss rel. error", "gradients", "largest gradient rel. error",
                       "at"])
        for x in methods:
            out.append(f"| {x['method']} | {'gated-gelu' if x['gated'] else 'relu'} | {x['loss_cpu']:.6f} | "
                       f"{x['loss_rel_error']:.1e} | {x['tensors']} | {x['worst_grad_rel_error']:.1e} | "
                       f"`{x['worst_grad']}` |")
    peaks = [x for x in s.get("results", []) if x.get("test") == "peak"]
    if peaks:
        out += ["", "Peak statistic against `torch.cuda.max_memory_allocated()` (same ops, bytes):", ""]
        out += header(["window", "LadderBench allocated", "PyTorch allocated", "LadderBench peak", "PyTorch peak"])
        for x in peaks:
            out.append(f"| {x['window']} | {x['ladder_allocated']:,} | {x['torch_allocated']:,} | "
                       f"{x['ladder_peak']:,} | {x['torch_peak']:,} |")
    dp = [x for x in s.get("results", []) if x.get("test") == "dataparallel"]
    if dp:
        out += ["", "Data parallel, world size 1: `ladder train` as rank 0 of 1 (RANK=0 WORLD_SIZE=1 LOCAL_RANK=0, "
                    "rendezvous on 127.0.0.1) against the same spec in one process; the demo task, batch 32, "
                    "s/step from the stored elapsed times from the third step on (ratio: world 1 / one process):",
                ""]
        out += header(["method", "device", "backend", "steps", "largest loss rel. diff", "one process again",
                       "s/step world 1", "s/step one process", "ratio", "MB all-reduced a step", "buckets",
                       "peak MB world 1", "peak MB one process", "test metric (both)"])
        for x in dp:
            ps, pw = x.get("peak_allocated_single"), x.get("peak_allocated_world1")
            same = x.get("test_metric_world1") == x.get("test_metric_single")
            ratio = (x["seconds_per_step_world1"] / x["seconds_per_step_single"]
                     if x.get("seconds_per_step_single", 0) > 0 and x.get("seconds_per_step_world1", 0) > 0 else None)
            out.append(f"| {x['method']} | {x['device']} | {x['backend']} | {x['steps']} | {x['max_loss_rel_diff']:.1e} | "
                       f"{fmt(x.get('single_repeat_rel_diff'), '.1e', 'not run')} | {x['seconds_per_step_world1']:.4f} | "
                       f"{x['seconds_per_step_single']:.4f} | {fmt(ratio, '.2f')} | {x['allreduce_mb_per_step']:.3f} | "
                       f"{x['buckets']} | {fmt(pw / MB if pw else None, '.1f')} | {fmt(ps / MB if ps else None, '.1f')} | "
                       f"{fmt(x.get('test_metric_world1'))}{'' if same else ' vs ' + fmt(x.get('test_metric_single'))} |")
        groups = sorted({x.get("process_group") for x in dp if x.get("process_group")})
        out += [""] + [f"- `{g}`" for g in groups]
    trainer = [x for x in s.get("results", []) if x.get("test") == "trainer"]
    if trainer:
        out += ["", "Trainer on the device:", ""]
        for x in trainer:
            fields = {k: v for k, v in x.items() if k not in ("test",)}
            out.append(f"- `{json.dumps(fields)}`")
    return out


def section_table1(s):
    meter = s["rows"][0].get("meter", "") if s.get("rows") else ""
    out = [f"{s['shape']}, batch {s['batch']}, source {s['src_len']}, target {s['tgt_len']}, {s['steps']} AdamW "
           f"steps on {s['device']}; LST keeps side layers {s['keep']}. Peak: {meter}, over the steps, weights "
           "included; est: `ladder estimate`'s prediction of it; bf16 is mixed precision (autocast).", ""]
    out += header(["method", "dtype", "peak GB", "ratio to full", "paper GB", "paper ratio", "est GB", "est err",
                   "s/step", "inference GB", "inference ex/s", "trainable"])
    paper_full = 17.6
    for x in s["rows"]:
        paper = x.get("paper_gb")
        out.append(f"| {x['method']} | {x['dtype']} | {x['peak_bytes'] / GB:.2f} | {fmt(x.get('ratio_to_full'), '.2f')} | "
                   f"{fmt(paper, '.1f')} | {fmt(paper / paper_full if paper else None, '.2f')} | "
                   f"{x['estimated_bytes'] / GB:.2f} | {100 * x['estimate_error']:+.1f}% | {x['seconds_per_step']:.3f} | "
                   f"{x['inference_peak_bytes'] / GB:.2f} | {x.get('inference_examples_per_second', 0):.0f} | "
                   f"{x['trainable_params']:,} |")
    return out


def section_hf(s):
    out = []
    for run in s.get("runs", []):
        if "error" in run:
            out.append(f"- batch {run['batch']} {run['dtype']}: failed ({run['error']})")
            continue
        out += ["", f"{run['shape']}, batch {run['batch']}, source {run['src_len']}, target {run['tgt_len']}, "
                    f"{run['dtype']}, {run['steps']} steps (2..{run['steps']} timed), {run['device']}; "
                    f"versions {run['rows'][0].get('versions')}", ""]
        out += header(["configuration", "s/step", "step ratio to HF full", "peak GB", "memory ratio to HF full",
                       "trainable"])
        for row in run["rows"]:
            mem = row.get("peak_allocated_bytes") or row.get("peak_rss_bytes")
            out.append(f"| {row['label']} | {row['seconds_per_step']:.4f} | {row['step_ratio']:.2f} | {mem / GB:.3f} | "
                       f"{row['memory_ratio']:.2f} | {row['trainable_params']:,} |")
    return out


def section_demo(s):
    out = header(["method", "dtype", "status", "steps", "best validation", "test accuracy", "bf16 - fp32 (points)",
                  "peak MB", "wall s"])
    for x in s.get("rows", []):
        out.append(f"| {x['method']} | {x['dtype']} | {x['status']} | {x['steps']} | {fmt(x['best_validation'])} | "
                   f"{fmt(x['test_accuracy'])} | {fmt(x.get('points_vs_fp32'), '+.1f')} | "
                   f"{fmt(x['peak_allocated_bytes'] / MB if x['peak_allocated_bytes'] else None, '.1f')} | "
                   f"{fmt(x['wall_seconds'], '.1f')} |")
    return out


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("json")
    a.add_argument("--device-seconds", type=float, default=None, help="device time the session spent (lease)")
    args = a.parse_args()
    r = json.load(open(args.json))
    lines = section_machine(r)
    if args.device_seconds is not None:
        lines.append(f"- device time spent, the machine's start included: {args.device_seconds:.0f} s")
    titles = {"gpu_tests": "GPU tests", "table1": "Table 1 shape: training memory per method",
              "hf_peft": "HF transformers + PEFT side by side", "demo_dtype": "bf16 against fp32 on the demo task"}
    makers = {"gpu_tests": section_tests, "table1": section_table1, "hf_peft": section_hf, "demo_dtype": section_demo}
    for name, title in titles.items():
        s = r["steps"].get(name)
        lines += ["", f"#### {title}", ""]
        if not s:
            lines.append("not run")
        elif s.get("status") != "done":
            lines.append(f"{s.get('status')}: {s.get('why') or s.get('error')}")
        else:
            lines += makers[name](s)
            lines.append("")
            lines.append(f"({s.get('seconds')} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
