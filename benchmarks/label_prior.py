"""Does a student's label prior explain an arm's seed-to-seed swing? Each saved student of the
suite's folders scores the test rows, the run's seeds, its own training inputs and three
content-free inputs ("N/A", "", "[MASK]"); its accuracy is then read again with each label's
probability divided by that label's mean probability over one of those sets (calibration, as in
Zhao et al. 2021, "Calibrate before use"). The test rows' own mean is transductive: shown, not
usable. Every option's log-probability is kept, so a reading can be added without scoring again.

    python benchmarks/label_prior.py --tasks trec --seeds 0,1,2 --suite runs/suite

Writes benchmarks/results/label-prior/label-prior.json (+ .md): per task, seed and arm the raw
accuracy, each calibrated one, and the share of test rows given the most given label.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import save  # noqa: E402

from psilm.stages.evaluate import probabilities  # noqa: E402

ARMS = ["direct", "psi", "teacher", "human"]
NAMES = {"psi": "psi_teacher"}
PRIORS = ["seeds", "train", "content_free", "test"]  # test: transductive, for comparison only
CONTENT_FREE = ["N/A", "", "[MASK]"]


def score_arm(folder: Path, arm: str) -> dict:
    """Every option's log-probability for the test rows, the seeds, the arm's training inputs and
    the content-free inputs, as the arm's student gives them."""
    from psilm.run.folder import load_run_config
    from psilm.run.open import peek
    from psilm.stages.evaluate import predict_examples
    from psilm.tasks.base import Example

    cfg = load_run_config(folder)
    run = peek(cfg, folder, lambda m: None)
    task, seeds = run.task, run.seeds
    rows_file = folder / "arms" / arm / "train.jsonl"  # the human arm trains on pool rows: none here
    rows = [json.loads(line) for line in rows_file.open()] if rows_file.exists() else []
    train = [Example(r["input"], r["output"], r["answer"], r.get("category")) for r in rows]
    first = seeds[0]
    free = [Example(x, first.output, first.answer, first.category) for x in CONTENT_FREE]
    model = str(folder / "arms" / arm / "model" / "merged")
    out = {}
    for name, examples in (("test", run.test), ("seeds", seeds), ("train", train), ("content_free", free)):
        if examples:
            p = predict_examples(task, model, examples, cfg.evaluate, cfg.models.student.device,
                                 dtype=cfg.models.student.dtype)  # fmt: skip
            out[name] = {"scores": p.scores, "gold": [e.answer for e in examples],
                         "options": task.answer_options(examples[0])}  # fmt: skip
    return out


def _prior(block: dict) -> list[float]:
    ps = [probabilities(s) for s in block["scores"]]
    return [statistics.fmean(p[i] for p in ps) for i in range(len(ps[0]))]


def readings(scored: dict) -> dict:
    """Accuracy % on the test rows raw and under each prior the arm has, and the top label's share."""
    test, options = scored["test"], scored["test"]["options"]

    def answers(prior: list[float] | None) -> list[str]:
        prior = prior or [1.0] * len(options)  # raw: every label's probability as it is
        out = []
        for s in test["scores"]:
            lp = [math.log(p / q) for p, q in zip(probabilities(s), prior, strict=True)]
            out.append(options[max(range(len(lp)), key=lp.__getitem__)])
        return out

    def acc(preds: list[str]) -> float:
        return round(100 * sum(p == g for p, g in zip(preds, test["gold"], strict=True)) / len(preds), 1)

    raw = answers(None)
    top = max(set(raw), key=raw.count)
    out = {"raw": acc(raw), "top_label": top, "top_share": round(raw.count(top) / len(raw), 3)}
    for name in PRIORS:
        if name in scored:
            out[name] = acc(answers(_prior(scored[name])))
    return out


def summarize(points: dict) -> dict:
    """task -> arm -> reading -> mean over seeds."""
    out: dict = {}
    for key, arms in points.items():
        task = key.split("|")[0]
        for arm, r in arms.items():
            for name, v in r.items():
                if isinstance(v, float) and name != "top_share":
                    out.setdefault(task, {}).setdefault(arm, {}).setdefault(name, []).append(v)
    return {t: {a: {k: round(statistics.fmean(v), 1) for k, v in r.items()} for a, r in arms.items()}
            for t, arms in out.items()}  # fmt: skip


def markdown(result: dict) -> str:
    cols = ["raw", *PRIORS]
    lines = [f"{result['date']}, {result['machine']}; test accuracy %, raw and calibrated by each set's "
             "mean label probability (test: transductive, for comparison only).", ""]  # fmt: skip
    for task, arms in result["table"].items():
        lines += [f"**{task}** (mean over seeds)", "", "| arm | " + " | ".join(cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]  # fmt: skip
        lines += [f"| {a} | " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for a, r in arms.items()]
        lines.append("")
    lines += ["| task, seed | arm | " + " | ".join(cols) + " | most given label (share) |",
              "|---" * (len(cols) + 3) + "|"]  # fmt: skip
    for key, arms in result["points"].items():
        for a, r in arms.items():
            cells = " | ".join(str(r.get(c, "")) for c in cols)
            name = key.replace("|", " seed ")
            lines.append(f"| {name} | {a} | {cells} | {r['top_label']} ({100 * r['top_share']:.0f}%) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="trec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--suite", type=Path, default=ROOT / "runs" / "suite", help="The suite's folders.")
    ap.add_argument(
        "--scores", type=Path, default=ROOT / "runs" / "label-prior", help="Kept log-probabilities."
    )
    ap.add_argument(
        "--result", type=Path, default=ROOT / "benchmarks" / "results" / "label-prior" / "label-prior.json"
    )
    ap.add_argument("--kept-only", action="store_true", help="Only read the kept scores; run no model.")
    args = ap.parse_args()
    from evidence import machine

    result = json.loads(args.result.read_text()) if args.result.exists() else {"points": {}}
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = args.suite / task / f"seed{seed}"
            kept = args.scores / f"{task}-seed{seed}.json"
            scored = json.loads(kept.read_text()) if kept.exists() else {}
            for arm in ARMS:
                if arm not in scored and not args.kept_only and (folder / "arms" / arm / "model").exists():
                    started = time.perf_counter()
                    scored[arm] = score_arm(folder, arm)
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_text(json.dumps(scored))
                    print(f"{task} seed {seed} {arm}: {time.perf_counter() - started:.0f} s", flush=True)
            point = {NAMES.get(a, a): readings(s) for a, s in scored.items()}
            result["points"][f"{task}|{seed}"] = point
    result.update(date=time.strftime("%Y-%m-%d"), machine=machine()["cpu"], table=summarize(result["points"]))
    save(args.result, result, markdown(result))


if __name__ == "__main__":
    main()
