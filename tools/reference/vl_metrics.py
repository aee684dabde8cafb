#!/usr/bin/env python3
"""Reference values for core/data/VlMetrics (issue 22): VQA accuracy, GQA exact match, BLEU-4 and CIDEr-D.

Reads tests/data/vl-metrics/cases.json and writes tests/data/vl-metrics/expected.json with what the real
implementations compute:

  VQA   the official evaluation, GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py, taken from a
        clone of that repository with `git show`. The file is Python 2; the only change made to it before it is
        run is its `print "..."` statements turned into print(...) calls. VQAEval.evaluate() runs on stand-in
        VQA objects (one question per case, answer ids 1..n), and each question's unrounded accuracy is taken
        from its setEvalQA call. The normalised answers are processDigitArticle(processPunctuation(text)) of
        the text after evaluate's \\n/\\t/strip step.
  GQA   prediction.strip().lower() == answer.strip().lower() (what VlMetrics documents; VL-T5 compares the
        stripped generated text with the label).
  COCO  pycocoevalcap (PyPI, 1.2): every caption through its PTBTokenizer (Stanford CoreNLP 3.4.1, needs
        `java`), then Bleu(4).compute_score and Cider().compute_score on the tokenized strings, exactly as
        COCOEvalCap.evaluate does. The token lists are recorded too: the C++ test feeds them to bleu4/ciderD and
        checks that tokenizeCaption (the C++ stand-in for PTBTokenizer) makes the same tokens of every caption
        and of the extra tokenizer probes.

How it was run (Debian 12, OpenJDK 17):

  python3 -m venv /tmp/coco-venv && /tmp/coco-venv/bin/pip install pycocoevalcap
  /tmp/coco-venv/bin/python tools/reference/vl_metrics.py --vqa-repo <bare or working clone of
      GT-Vision-Lab/VQA> tests/data/vl-metrics

Versions and the VQA commit are recorded in expected.json.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import types
import warnings

VQA_EVAL_PATH = "PythonEvaluationTools/vqaEvaluation/vqaEval.py"


def load_vqa_eval(repo):
    """Returns (the VQAEval class, the commit it was read at)."""
    commit = subprocess.check_output(["git", "--git-dir", git_dir(repo), "rev-parse", "HEAD"], text=True).strip()
    source = subprocess.check_output(["git", "--git-dir", git_dir(repo), "show", "HEAD:" + VQA_EVAL_PATH], text=True)
    # Python 2 print statements -> print() calls; nothing else is touched.
    source = re.sub(r"^(\s*)print (.+)$", r"\1print(\2)", source, flags=re.MULTILINE)
    module = types.ModuleType("vqaEval")
    exec(compile(source, VQA_EVAL_PATH, "exec"), module.__dict__)
    return module.VQAEval, commit


def git_dir(repo):
    dotgit = os.path.join(repo, ".git")
    return dotgit if os.path.isdir(dotgit) else repo


class StandInVqa:
    """What VQAEval reads of a VQA object: .qa and getQuesIds()."""

    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa.keys())


def vqa_reference(VQAEval, cases):
    gts = {}
    res = {}
    for qid, case in enumerate(cases):
        gts[qid] = {
            "answers": [
                {"answer": a, "answer_id": i + 1, "answer_confidence": "yes"} for i, a in enumerate(case["answers"])
            ],
            "question_type": "none of the above",
            "answer_type": "other",
        }
        res[qid] = {"answer": case["prediction"]}
    evaluator = VQAEval(StandInVqa(gts), StandInVqa(res), n=2)
    raw = {}
    evaluator.setEvalQA = lambda qid, acc: raw.__setitem__(qid, acc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # re.sub's positional count (re.UNICODE)
        stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")  # its progress bar
        try:
            evaluator.evaluate()
        finally:
            sys.stdout.close()
            sys.stdout = stdout

    def normalise(text):
        text = text.replace("\n", " ").replace("\t", " ").strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return evaluator.processDigitArticle(evaluator.processPunctuation(text))

    out = []
    for qid, case in enumerate(cases):
        out.append(
            {
                "name": case["name"],
                "prediction": case["prediction"],
                "answers": case["answers"],
                "normalized_prediction": normalise(case["prediction"]),
                "normalized_answers": [normalise(a) for a in case["answers"]],
                "accuracy": raw[qid],
            }
        )
    return out


def gqa_reference(cases):
    return [
        {
            "prediction": c["prediction"],
            "answer": c["answer"],
            "match": 1.0 if c["prediction"].strip().lower() == c["answer"].strip().lower() else 0.0,
        }
        for c in cases
    ]


def ptb_tokenize(captions):
    """pycocoevalcap's PTBTokenizer on a list of captions: the tokens of each."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [tokenized[i][0].split() for i in range(len(captions))]


def caption_reference(caption_sets):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = []
    for caption_set in caption_sets:
        images = caption_set["images"]
        gts = {i: [{"caption": r} for r in image["references"]] for i, image in enumerate(images)}
        res = {i: [{"caption": image["candidate"]}] for i, image in enumerate(images)}
        # As COCOEvalCap.evaluate: references and candidates tokenized in two calls.
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize(gts)
        res = tokenizer.tokenize(res)
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        cider, cider_per_image = Cider().compute_score(gts, res)
        out.append(
            {
                "name": caption_set["name"],
                "candidate_tokens": [res[i][0].split() for i in range(len(images))],
                "reference_tokens": [[r.split() for r in gts[i]] for i in range(len(images))],
                "bleu": [float(b) for b in bleu],
                "bleu4": float(bleu[3]),
                "cider": float(cider),
                "cider_per_image": [float(s) for s in cider_per_image],
            }
        )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="tests/data/vl-metrics: reads cases.json, writes expected.json")
    parser.add_argument("--vqa-repo", required=True, help="a clone (or bare git dir) of GT-Vision-Lab/VQA")
    args = parser.parse_args()

    with open(os.path.join(args.folder, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    VQAEval, vqa_commit = load_vqa_eval(args.vqa_repo)
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]

    expected = {
        "generated_by": "tools/reference/vl_metrics.py",
        "versions": {
            "python": platform.python_version(),
            "pycocoevalcap": importlib.metadata.version("pycocoevalcap"),
            "numpy": importlib.metadata.version("numpy"),
            "java": java,
            "ptb_tokenizer": "stanford-corenlp-3.4.1.jar (in pycocoevalcap)",
            "vqa_eval": "GT-Vision-Lab/VQA@" + vqa_commit + ":" + VQA_EVAL_PATH,
        },
        "vqa": vqa_reference(VQAEval, cases["vqa"]),
        "gqa": gqa_reference(cases["gqa"]),
        "captions": caption_reference(cases["captions"]),
        "tokenizer": [{"text": t, "tokens": tokens} for t, tokens in zip(cases["tokenizer"], ptb_tokenize(cases["tokenizer"]))],
    }
    with open(os.path.join(args.folder, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
