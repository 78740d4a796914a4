"""Would a likelihood check raise the label agreement of generated TREC rows, and at what cost?

A "channel" check asks a language model which label's list header makes a generated question most
likely: for each label, the log-probability of the question as item 1 of the list psilm's list
prompt starts (the task's description, the label and its description, 'Questions labelled "x":').
A row passes if its own label's header scores within --margin nats of the best one. The model is
not told the answer type, so the check is independent of the first-words rule that scores it.

The script scores (1) real TREC test rows, the check's own accuracy as a classifier (argmax), and
(2) the rows each evidence arm trained on (benchmarks/evidence.py folders), and reports for each
margin how many rows pass and how often the rule of benchmarks/trec_labels.py agrees with their
label. It measures the filter generate.label_check + filter.label_margin, with psilm's own scorer.

    python benchmarks/label_check.py --runs runs/evidence/trec [--model gemma3-270m] [--real 150]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from trec_labels import arm_rows, rule_label  # noqa: E402

from psilm.llm import load_backend  # noqa: E402
from psilm.llm.settings import ModelConfig  # noqa: E402
from psilm.tasks import load_task  # noqa: E402

MARGINS = [0.0, 1.0, 2.0, 4.0]


def score(backend, task, texts: list[str]) -> np.ndarray:
    """[len(texts), labels]: log-probability of each text after each label's list header, from
    psilm's own scorer (Backend.score, the one generate.label_check uses)."""
    prompts = [task.label_check_prompt(label) for label in task.labels for _ in texts]
    items = [task.label_check_text(text) for _ in task.labels for text in texts]
    scored = backend.score(prompts, items)
    return np.array([s.logprob for s in scored]).reshape(len(task.labels), len(texts)).T


def passes(scores: np.ndarray, own: list[int], margin: float) -> list[bool]:
    """Rows whose own label scores within `margin` of the best label."""
    best = scores.max(axis=1)
    return [bool(scores[i, j] >= best[i] - margin) for i, j in enumerate(own)]


def check(rows: list[tuple[str, str]], scores: np.ndarray, labels: list[str]) -> dict:
    own = [labels.index(lbl) for _, lbl in rows]
    agree = [rule_label(q) == lbl for q, lbl in rows]
    out = {"n": len(rows), "agree": round(float(np.mean(agree)), 4) if rows else None, "margins": {}}
    for m in MARGINS:
        ok = passes(scores, own, m)
        kept = [a for a, k in zip(agree, ok, strict=True) if k]
        out["margins"][str(m)] = {
            "kept": len(kept),
            "agree_kept": round(float(np.mean(kept)), 4) if kept else None,
            "agree_dropped": round(float(np.mean([a for a, k in zip(agree, ok, strict=True) if not k])), 4)
            if len(kept) < len(rows)
            else None,
            "kept_per_label": dict(Counter(lbl for (_, lbl), k in zip(rows, ok, strict=True) if k)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "evidence" / "trec")
    ap.add_argument(
        "--folders", default="seed0/base,seed1/base,seed2/base", help="comma-separated, under --runs"
    )
    ap.add_argument("--arms", default="psi,direct")
    ap.add_argument("--model", default="gemma3-270m", help="a GGUF alias or path (llama.cpp)")
    ap.add_argument("--real", type=int, default=150, help="real TREC test rows to score (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "label-check" / "trec.json")
    args = ap.parse_args()

    task = load_task("trec")
    llm = load_backend(ModelConfig(backend="llamacpp", model=args.model, n_ctx=512, n_threads=args.threads))
    doc: dict = {
        "model": args.model,
        "header_example": task.label_check_prompt(task.labels[0]),
        "margins_nats": MARGINS,
    }
    if args.real:
        real = [
            json.loads(x)
            for x in (ROOT / "data" / "trec" / "test.jsonl").read_text().splitlines()[: args.real]
        ]
        start = time.perf_counter()
        s = score(llm, task, [r["text"] for r in real])
        picks = [task.labels[int(j)] for j in s.argmax(axis=1)]
        doc["real_test_rows"] = {
            "n": len(real),
            "argmax_accuracy": round(
                float(np.mean([p == r["label_name"] for p, r in zip(picks, real, strict=True)])), 4
            ),
            "majority_share": round(
                Counter(r["label_name"] for r in real).most_common(1)[0][1] / len(real), 4
            ),
            "s_per_row": round((time.perf_counter() - start) / len(real), 3),
        }
        print("real", doc["real_test_rows"], flush=True)
    doc["arms"] = {}
    for arm in args.arms.split(","):
        rows = [r for f in args.folders.split(",") for r in arm_rows(args.runs / f, arm)]
        rows = [(q, lbl) for q, lbl in rows if lbl in task.labels]
        if not rows:
            continue
        doc["arms"][arm] = check(rows, score(llm, task, [q for q, _ in rows]), list(task.labels))
        print(arm, json.dumps(doc["arms"][arm]), flush=True)
    doc["folders"] = [str(args.runs / f) for f in args.folders.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
