#!/usr/bin/env python3
"""The GPU kit's measurements, run by tools/gpu/check.sh (which sets up the binaries and the environment).

Standard library only: it runs under the GPU machine's python3 as it is. Steps, in priority order, each
skipped (and recorded as skipped) when the time budget left is below its estimate:

  gpu_tests   ctest -L gpu: CUDA equals the CPU for every method, the peak statistic equals PyTorch's,
              the trainer on CUDA (follows the CPU, cancel, NaN, out-of-memory, the run after), data
              parallel's NCCL path (rank 0 of a world of 1 trains as one process; s/step with and without)
  table1      the paper's Table 1 shape: `ladder bench memory` per method and dtype, one process each
              (peak allocated, ratio to full, estimate and its error, s/step, inference peak and throughput)
  hf_peft     bench/hf_peft_compare.py: HF full + PEFT LoRA beside LadderBench full, LoRA and LST
  demo_dtype  the demo task trained in fp32 and in bf16 (full and LST): test accuracy, peak, wall time
  decoder_7b  issue 21: `ladder bench memory --shape llama2-7b` (Llama 2 7B's config, random weights) in bf16
              mixed precision, batch 4, source 192 + target 65 (256 joined columns): LoRA, QLoRA (int4 g64),
              LST and LST over int4, one process each; full fine-tuning from the estimate only (~110 GB of
              fp32 weights, gradients and AdamW state do not fit one GPU)

Everything goes to OUT/gpu-kit.json (tools/gpu/report.py turns it into docs/GPU.md's tables) and
OUT/gpu-kit.log. --dry-run uses the CPU and tiny shapes: the same code paths, minutes not GPU time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Issue 18's rows after the paper's: QLoRA (LoRA over an int4 backbone) and LST with every memory option.
LST_MEMORY = "ladder:side_checkpoint:side_attention=sdpa:ladder_dtype=bf16:backbone_dtype=int4"
METHODS = ["full", "adapter", "lora", "bitfit", "prompt", "ladder", "qlora", LST_MEMORY]
# The paper's Table 1 (T5-base, GLUE, batch 100, source 128): training memory in GB, and its Table 1 note
# of 0.86 / 0.88 GB inference memory for full fine-tuning and LST.
PAPER_TABLE1_GB = {"full": 17.6, "adapter": 13.0, "lora": 12.6, "bitfit": 10.7, "prompt": 22.2, "ladder": 5.5}
# The side layers the paper keeps for T5-base (its appendix: 1,2,3,5,6,7,9,10,11, three dropped per stack).
PAPER_KEEP_T5_BASE = "1,2,3,5,6,7,9,10,11"

PLANS = {
    "device": dict(
        device="cuda", shape="t5-base", batch=100, src_len=128, tgt_len=4, steps=3, dtypes=["fp32", "bf16"],
        keep=PAPER_KEEP_T5_BASE, hf_shape="t5-base", hf_batches=[32, 100], hf_steps=5,
        demo_steps=1000, demo_eval_every=250, decoder_shape="llama2-7b", decoder_batch=4, decoder_src=192,
        decoder_tgt=65),
    "dry-run": dict(
        device="cpu", shape="t5-small", batch=4, src_len=32, tgt_len=4, steps=2, dtypes=["fp32", "bf16"],
        keep="1,2,3,5", hf_shape="t5-small", hf_batches=[4], hf_steps=2, demo_steps=20, demo_eval_every=10,
        decoder_shape="llama-1b", decoder_batch=1, decoder_src=16, decoder_tgt=5),
}
# Rough seconds each step takes on the H200 (measured runs replace these in docs/GPU.md); used to skip a
# step that cannot finish inside the budget rather than be killed half-way.
ESTIMATES = {"gpu_tests": 190, "table1": 100, "hf_peft": 150, "demo_dtype": 90, "export_predict": 60,
             "decoder_7b": 150}
# issue 21's decoder rows: LoRA, QLoRA, LST (r 8, every layer) and LST over an int4 backbone.
DECODER_METHODS = [("lora", []), ("qlora", []), ("ladder", []), ("ladder", ["--backbone-dtype", "int4"])]


class Kit:
    def __init__(self, args):
        self.args = args
        self.mode = "dry-run" if args.dry_run else "device"
        self.plan = PLANS[self.mode]
        self.t0 = time.time()
        os.makedirs(args.out, exist_ok=True)
        self.log_file = open(os.path.join(args.out, "gpu-kit.log"), "a", buffering=1)
        self.result = {"kit": {"mode": self.mode, "started": utc_now(), "budget_seconds": args.budget,
                               "commit": git_commit(), "plan": self.plan},
                       "steps": {}}

    # ---- plumbing -------------------------------------------------------------------------------
    def log(self, line):
        stamp = f"[{time.time() - self.t0:7.1f}s] "
        print(stamp + line, flush=True)
        self.log_file.write(stamp + line + "\n")

    def left(self):
        return self.args.budget - (time.time() - self.t0)

    def run(self, cmd, timeout=None, env=None, check=True):
        """Runs cmd, logging it and its output; returns (rc, stdout, stderr)."""
        self.log("$ " + " ".join(cmd))
        t = time.time()
        timeout = max(5, min(timeout or 600, self.left() + 30))
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.log(f"  timed out after {timeout:.0f} s")
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, out, "timed out"
        for line in (p.stderr or "").strip().splitlines()[-15:]:
            self.log("  ! " + line)
        self.log(f"  exit {p.returncode} in {time.time() - t:.1f} s")
        if check and p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed ({p.returncode}): "
                               f"{(p.stderr or '').strip()[-500:]}")
        return p.returncode, p.stdout, p.stderr

    def save(self):
        self.result["kit"]["wall_seconds"] = round(time.time() - self.t0, 1)
        path = os.path.join(self.args.out, "gpu-kit.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.result, f, indent=1)
        os.replace(path + ".tmp", path)

    def step(self, name, fn):
        if self.args.only and name not in self.args.only:
            return
        if self.left() < ESTIMATES[name] * (0.3 if self.mode == "dry-run" else 1.0):
            self.log(f"== {name}: SKIPPED, {self.left():.0f} s of budget left, needs about {ESTIMATES[name]} s")
            self.result["steps"][name] = {"status": "skipped", "why": "time budget"}
            self.save()
            return
        self.log(f"== {name}")
        t = time.time()
        try:
            data = fn()
            self.result["steps"][name] = {"status": "done", "seconds": round(time.time() - t, 1), **data}
        except Exception as e:  # one step's failure must not cost the others their device time
            self.log(f"  step {name} FAILED: {e}")
            self.result["steps"][name] = {"status": "failed", "error": str(e)[-2000:],
                                          "seconds": round(time.time() - t, 1)}
        self.save()

    # ---- machine --------------------------------------------------------------------------------
    def machine(self):
        m = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
        if shutil.which("nvidia-smi"):
            rc, out, _ = self.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                   "--format=csv,noheader"], check=False, timeout=60)
            m["nvidia_smi"] = out.strip()
        rc, out, _ = self.run([self.args.ladder, "devices", "--json"], check=False, timeout=120)
        if rc == 0:
            m["ladder_devices"] = json.loads(out)
        rc, out, _ = self.run([self.args.ladder, "--version"], check=False, timeout=60)
        m["ladder_version"] = out.strip()
        rc, out, _ = self.run([self.args.python, "-c", "import torch, sys; sys.stdout.write(torch.__version__ + ' cuda ' "
                               "+ str(torch.version.cuda))"], check=False, timeout=120)
        m["python_torch"] = out.strip()
        self.result["machine"] = m
        self.save()

    # ---- step 1: the gpu tests ------------------------------------------------------------------
    def gpu_tests(self):
        junit = os.path.join(tempfile.mkdtemp(prefix="ladder-kit-"), "gpu.xml")
        env = dict(os.environ)
        if self.mode == "dry-run":
            env["LADDER_GPU_TEST_DEVICE"] = "cpu"
        rc, out, err = self.run(["ctest", "--test-dir", self.args.ctest_dir, "-L", "gpu", "-V", "--timeout", "600",
                                 "--output-junit", junit], env=env, check=False, timeout=900)
        with open(os.path.join(self.args.out, "gpu-tests.log"), "w") as f:
            f.write(out + err)
        results = [json.loads(m) for m in re.findall(r"GPU-RESULT (\{.*\})", out)]
        tests = []
        if os.path.exists(junit):
            for case in ET.parse(junit).getroot().iter("testcase"):
                status = case.get("status") or ("fail" if case.find("failure") is not None else "run")
                status = {"run": "passed", "fail": "failed", "notrun": "skipped", "disabled": "skipped"}.get(status, status)
                tests.append({"name": case.get("name"), "status": status, "seconds": float(case.get("time", 0))})
        summary = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", out)
        counts = {s: sum(1 for t in tests if t["status"] == s) for s in ("passed", "failed", "skipped")}
        self.log(summary.group(0) if summary else "ctest printed no summary")
        for t in tests:
            self.log(f"  {t['name']:<24} {t['status']:<8} {t['seconds']:.1f} s")
        # gtest cases skipped inside a passing process (GTEST_SKIP: no python reference, the dry run's CPU)
        for x in results:
            if x.get("test") == "dataparallel":
                self.log(f"  data parallel {x['method']:<6} {x['backend']}, rank 0 of 1: {x['steps']} steps, losses "
                         f"{x['max_loss_rel_diff']:.1e} relative to one process; s/step {x['seconds_per_step_world1']:.4f}"
                         f" against {x['seconds_per_step_single']:.4f}; {x['allreduce_mb_per_step']:.3f} MB "
                         f"all-reduced a step in {x['buckets']} buckets")
        skipped_cases = re.findall(r"\[  SKIPPED ] (\w+[./]\S+)", out)
        return {"exit_code": rc, "summary": summary.group(0) if summary else None, "tests": tests,
                "counts": counts, "skipped_cases": sorted(set(skipped_cases)), "results": results}

    # ---- step 2: Table 1 ------------------------------------------------------------------------
    def bench_memory(self, method, dtype, extra=()):
        p = self.plan
        cmd = [self.args.ladder, "bench", "memory", "--device", p["device"], "--shape", p["shape"], "--batch",
               str(p["batch"]), "--src-len", str(p["src_len"]), "--tgt-len", str(p["tgt_len"]), "--steps",
               str(p["steps"]), "--dtype", dtype, "--methods", method, "--json", *extra]
        rc, out, _ = self.run(cmd, timeout=300)
        return json.loads(out)[method]

    def table1(self):
        p = self.plan
        rows = []
        for dtype in p["dtypes"]:
            for method in METHODS:
                if self.left() < 15:
                    self.log("  out of budget: the remaining Table 1 rows are not measured")
                    break
                extra = ["--keep", p["keep"]] if method.startswith("ladder") else []
                r = self.bench_memory(method, dtype, extra)
                r.update(method=method, dtype=dtype, paper_gb=PAPER_TABLE1_GB.get(method))
                rows.append(r)
                self.log(f"  {method[:8] if method != LST_MEMORY else 'lst-mem':<8}{dtype:<6} peak {r['peak_bytes'] / 1e9:7.3f} GB  est "
                         f"{r['estimated_bytes'] / 1e9:7.3f} GB ({100 * r['estimate_error']:+.1f}%)  "
                         f"{r['seconds_per_step']:.3f} s/step  inference {r['inference_peak_bytes'] / 1e9:.3f} GB "
                         f"{r['inference_examples_per_second']:.0f} ex/s")
            full = next((r for r in rows if r["method"] == "full" and r["dtype"] == dtype), None)
            for r in rows:
                if r["dtype"] == dtype and full:
                    r["ratio_to_full"] = r["peak_bytes"] / full["peak_bytes"]
                    r["step_ratio_to_full"] = r["seconds_per_step"] / full["seconds_per_step"]
        return {"shape": p["shape"], "batch": p["batch"], "src_len": p["src_len"], "tgt_len": p["tgt_len"],
                "steps": p["steps"], "device": p["device"], "keep": p["keep"], "rows": rows}

    # ---- issue 21: a 7B decoder in bf16 ----------------------------------------------------------
    def decoder_7b(self):
        p = self.plan
        base = ["--shape", p["decoder_shape"], "--batch", str(p["decoder_batch"]), "--src-len",
                str(p["decoder_src"]), "--tgt-len", str(p["decoder_tgt"])]
        rows = []
        for method, extra in DECODER_METHODS:
            if self.left() < 30:
                self.log("  out of budget: the remaining decoder rows are not measured")
                break
            cmd = [self.args.ladder, "bench", "memory", "--device", p["device"], *base, "--steps", "2",
                   "--inference-repeats", "1", "--dtype", "bf16", "--methods", method, "--json", *extra]
            rc, out, _ = self.run(cmd, timeout=600, check=False)
            if rc != 0:
                rows.append({"method": method, "extra": extra, "error": f"exit {rc}"})
                continue
            r = json.loads(out)[method]
            r.update(method=method, extra=extra)
            rows.append(r)
            self.log(f"  {method:<7}{' '.join(extra):<22} peak {r['peak_bytes'] / 1e9:7.3f} GB  est "
                     f"{r['estimated_bytes'] / 1e9:7.3f} GB ({100 * r['estimate_error']:+.1f}%)  "
                     f"{r['seconds_per_step']:.3f} s/step")
        rc, out, _ = self.run([self.args.ladder, "estimate", *base, "--method", "full", "--dtype", "bf16",
                               "--device", p["device"], "--json"], timeout=60, check=False)
        full = json.loads(out)["estimated_bytes"] if rc == 0 else None
        qlora = next((r for r in rows if r["method"] == "qlora" and "peak_bytes" in r), None)
        for r in rows:
            if "peak_bytes" in r and qlora:
                r["ratio_to_qlora"] = r["peak_bytes"] / qlora["peak_bytes"]
        return {"shape": p["decoder_shape"], "batch": p["decoder_batch"], "src_len": p["decoder_src"],
                "tgt_len": p["decoder_tgt"], "dtype": "bf16", "device": p["device"],
                "full_estimated_bytes": full, "rows": rows}

    # ---- step 3: HF + PEFT ----------------------------------------------------------------------
    def hf_peft(self):
        p = self.plan
        runs = []
        for batch in p["hf_batches"]:
            for dtype in p["dtypes"]:
                if self.left() < 40:
                    self.log(f"  out of budget: batch {batch} {dtype} not measured")
                    continue
                cmd = [self.args.python, os.path.join(ROOT, "bench", "hf_peft_compare.py"), "--ladder",
                       self.args.ladder, "--python", self.args.hf_python or self.args.python, "--device",
                       p["device"], "--shape", p["hf_shape"], "--batch", str(batch), "--src-len", str(p["src_len"]),
                       "--tgt-len", str(p["tgt_len"]), "--steps", str(p["hf_steps"]), "--dtype", dtype,
                       "--ladder-keep", p["keep"] if p["hf_shape"] == p["shape"] else "", "--json"]
                rc, out, _ = self.run(cmd, timeout=600, check=False)
                if rc != 0:
                    runs.append({"batch": batch, "dtype": dtype, "error": f"exit {rc}"})
                    continue
                r = json.loads(out)
                runs.append(r)
                for row in r["rows"]:
                    mem = row.get("peak_allocated_bytes") or row.get("peak_rss_bytes")
                    self.log(f"  b{batch} {dtype:<5} {row['label']:<20} {row['seconds_per_step']:.4f} s/step "
                             f"x{row['step_ratio']:.2f}  {mem / 1e9:.3f} GB x{row['memory_ratio']:.2f}")
        return {"runs": runs}

    # ---- step 4: the demo task in fp32 and bf16 -------------------------------------------------
    def demo_dtype(self):
        p = self.plan
        demo = os.environ.get("LADDER_DEMO_DIR", "")
        if not os.path.exists(os.path.join(demo, "backbone", "config.json")):
            raise RuntimeError(f"no demo at LADDER_DEMO_DIR={demo!r} (tools/gpu/prepare.sh carries one)")
        tmp = tempfile.mkdtemp(prefix="ladder-kit-demo-")
        store = os.path.join(tmp, "demo.sqlite")
        self.demo_store = store
        rows = []
        for method, lr in (("ladder", 3e-3), ("full", 1e-3)):
            for dtype in p["dtypes"]:
                if self.left() < 20:
                    self.log(f"  out of budget: {method} {dtype} not trained")
                    continue
                spec = {"name": f"kit-{method}-{dtype}", "backbone": "demo",
                        "task": {"type": "demo", "name": "supersense"},
                        "method": {"method": method, "r": 8} if method == "ladder" else {"method": method},
                        "training": {"max_steps": p["demo_steps"], "batch_size": 32, "warmup_steps": 60,
                                     "eval_every_steps": p["demo_eval_every"], "max_source_length": 64,
                                     "learning_rate": lr, "dtype": dtype},
                        "device": p["device"] if p["device"] != "cuda" else "cuda:0", "seed": 0}
                path = os.path.join(tmp, f"{method}-{dtype}.json")
                json.dump(spec, open(path, "w"))
                t = time.time()
                rc, _, _ = self.run([self.args.ladder, "train", "--config", path, "--store", store], timeout=600,
                                    check=False)
                con = sqlite3.connect(store)
                r = con.execute("SELECT status, best_validation_metric, test_metric, peak_allocated_bytes, "
                                "wall_seconds, error_message FROM runs ORDER BY id DESC LIMIT 1").fetchone()
                con.close()
                rows.append({"method": method, "dtype": dtype, "exit_code": rc, "status": r[0],
                             "best_validation": r[1], "test_accuracy": r[2], "peak_allocated_bytes": r[3],
                             "wall_seconds": r[4], "error": r[5], "steps": p["demo_steps"]})
                self.log(f"  {method:<7}{dtype:<5} {r[0]} val {r[1]} test {r[2]} peak {r[3]} in {time.time() - t:.0f} s")
        for method in ("ladder", "full"):
            by = {r["dtype"]: r for r in rows if r["method"] == method}
            if "fp32" in by and "bf16" in by and by["fp32"]["test_accuracy"] is not None \
                    and by["bf16"]["test_accuracy"] is not None:
                gap = 100 * (by["bf16"]["test_accuracy"] - by["fp32"]["test_accuracy"])
                by["bf16"]["points_vs_fp32"] = gap
                self.log(f"  {method}: bf16 - fp32 = {gap:+.1f} points (target: within 1)")
        return {"rows": rows}


    def export_predict(self):
        """The export and predict paths on the device (issue 20): the demo step's fp32 LST run as a ladder bundle,
        `ladder predict` over 64 validation examples on the device and on the CPU (predictions equal, scores
        within 1e-3), and its full fp32 run as an HF folder that this machine's transformers loads on the
        device, greedy outputs equal to ladder predict's."""
        store = getattr(self, "demo_store", None)
        if not store or not os.path.exists(store):
            raise RuntimeError("no demo store (the demo_dtype step trains the runs this step exports)")
        con = sqlite3.connect(store)
        runs = {name[len("kit-"):-len("-fp32")]: run_id for name, run_id in con.execute(
            "SELECT name, max(id) FROM runs WHERE status = 'finished' AND name IN ('kit-ladder-fp32', "
            "'kit-full-fp32') GROUP BY name").fetchall()}
        con.close()
        if "ladder" not in runs:
            raise RuntimeError(f"no finished fp32 LST run in {store} (finished: {sorted(runs)})")
        tmp = tempfile.mkdtemp(prefix="ladder-kit-export-")
        demo = os.environ.get("LADDER_DEMO_DIR", "")
        inputs = os.path.join(tmp, "inputs.jsonl")
        with open(os.path.join(demo, "tasks", "supersense", "validation.jsonl")) as src, open(inputs, "w") as out:
            for i, line in enumerate(src):
                if i == 64:
                    break
                out.write(line)
        device = self.plan["device"] if self.plan["device"] != "cuda" else "cuda:0"
        bundle = os.path.join(tmp, "lst-bundle")
        self.run([self.args.ladder, "export", "--run", str(runs["ladder"]), "--store", store, "--format", "ladder",
                  "--out", bundle], timeout=120)
        lines = {}
        for dev in (device, "cpu"):
            out = os.path.join(tmp, f"predict-{dev.replace(':', '')}.jsonl")
            t = time.time()
            self.run([self.args.ladder, "predict", "--bundle", bundle, "--inputs", inputs, "--out", out,
                      "--batch", "32", "--device", dev], timeout=180)
            lines[dev] = [json.loads(x) for x in open(out)]
            self.log(f"  predict on {dev}: {len(lines[dev])} lines in {time.time() - t:.1f} s")
        same = sum(a["prediction"] == b["prediction"] for a, b in zip(lines[device], lines["cpu"]))
        score_diff = max(abs(a["score"] - b["score"]) for a, b in zip(lines[device], lines["cpu"]))
        self.log(f"  LST bundle: {same}/{len(lines['cpu'])} predictions equal on {device} and cpu, "
                 f"max score difference {score_diff:.2e}")
        result = {"lst_predictions_equal": same, "lst_examples": len(lines["cpu"]),
                  "lst_max_score_difference": score_diff}
        if "full" in runs:
            folder = os.path.join(tmp, "full-hf")
            self.run([self.args.ladder, "export", "--run", str(runs["full"]), "--store", store, "--format", "hf",
                      "--out", folder], timeout=120)
            out = os.path.join(tmp, "predict-full.jsonl")
            self.run([self.args.ladder, "predict", "--run", str(runs["full"]), "--store", store, "--inputs", inputs,
                      "--out", out, "--batch", "32", "--device", device], timeout=180)
            ours = [json.loads(x) for x in open(out)]
            script = (
                "import json, sys, torch\n"
                "from transformers import AutoTokenizer, T5ForConditionalGeneration\n"
                "folder, path, device = sys.argv[1:4]\n"
                "tok = AutoTokenizer.from_pretrained(folder)\n"
                "model = T5ForConditionalGeneration.from_pretrained(folder).to(device).eval()\n"
                "rows = [json.loads(l) for l in open(path)]\n"
                "outs = []\n"
                "for i in range(0, len(rows), 32):\n"
                "    batch = tok([r['input'] for r in rows[i:i + 32]], return_tensors='pt', padding=True).to(device)\n"
                "    with torch.no_grad():\n"
                "        ids = model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=16)\n"
                "    outs += tok.batch_decode(ids, skip_special_tokens=True)\n"
                "print(json.dumps(outs))\n")
            hf_python = self.args.hf_python or self.args.python
            rc, stdout, _ = self.run([hf_python, "-c", script, folder, out, device], timeout=180)
            theirs = json.loads(stdout.strip().splitlines()[-1])
            agree = sum(a["prediction"] == b for a, b in zip(ours, theirs))
            self.log(f"  full run as an HF folder: transformers on {device} agrees with ladder predict on "
                     f"{agree}/{len(ours)} greedy outputs")
            result.update({"hf_greedy_equal": agree, "hf_examples": len(ours)})
        return result


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_commit():
    manifest = os.path.join(ROOT, ".gpukit", "manifest.json")
    if os.path.exists(manifest):
        return json.load(open(manifest)).get("commit")
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--out", required=True)
    a.add_argument("--ladder", required=True, help="the ladder CLI to measure")
    a.add_argument("--ctest-dir", required=True, help="the CTest tree holding the gpu tests")
    a.add_argument("--python", default=sys.executable, help="python with PyTorch (for the references)")
    a.add_argument("--hf-python", default="", help="python with torch, transformers and peft (default --python)")
    a.add_argument("--dry-run", action="store_true")
    a.add_argument("--budget", type=float, default=500, help="seconds for all steps")
    a.add_argument("--only", nargs="*", default=[], help="run only these steps")
    args = a.parse_args()
    kit = Kit(args)
    kit.log(f"LadderBench GPU kit ({kit.mode}), commit {kit.result['kit']['commit']}, budget {args.budget:.0f} s")
    kit.machine()
    kit.step("gpu_tests", kit.gpu_tests)
    kit.step("table1", kit.table1)
    kit.step("hf_peft", kit.hf_peft)
    kit.step("demo_dtype", kit.demo_dtype)
    kit.step("export_predict", kit.export_predict)
    kit.step("decoder_7b", kit.decoder_7b)
    kit.save()
    failed = [n for n, s in kit.result["steps"].items() if s.get("status") == "failed"]
    tests = kit.result["steps"].get("gpu_tests", {})
    kit.log(f"done in {time.time() - kit.t0:.0f} s; steps failed: {failed or 'none'}; gpu tests: "
            f"{tests.get('summary')}")
    return 1 if failed or tests.get("exit_code") not in (0, None) else 0


if __name__ == "__main__":
    sys.exit(main())
