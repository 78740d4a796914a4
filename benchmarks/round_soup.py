"""Would averaging a round's student with the one before it keep the round's gain without a class falling?

Rounds on TREC add accuracy over three seeds, but in each round some class falls by more than 10
points on average (numeric in round 2, entity in round 3): the new student predicts a class far less
often than the one before. A student whose weights are the mean of the two (a "soup" of the merged
models: both are the same base plus a LoRA delta, so the mean is the base plus the mean delta) is one
model again, needs no labels, and may keep what each learnt. This measures it after the fact on the
finished rounds runs: for each seed and round r >= 2, the soup of round r-1's and round r's merged
students, scored on the same test rows; the rounds themselves are read from their metrics.json.

    python benchmarks/round_soup.py [--runs runs/evidence/trec] [--variant teacher_rounds]
        [--out benchmarks/results/evolve/trec-round-soup.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from psilm import bench
from psilm.config import load_config
from psilm.stages.evaluate import evaluate_model
from psilm.tasks import Example
from psilm.tasks.kinds import load_task

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["psi", "psi_round2", "psi_round3"]  # rounds 1, 2, 3 of the psi arm


def soup(a: Path, b: Path, out: Path) -> None:
    """out: the merged model folder a with every floating tensor the mean of a's and b's."""
    shutil.copytree(a, out)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    mean = {
        k: ((v.float() + wb[k].float()) / 2).to(v.dtype) if v.is_floating_point() else v
        for k, v in wa.items()
    }
    save_file(mean, out / "model.safetensors", metadata={"format": "pt"})


def entry(metrics: dict) -> dict:
    """What bench.paired reads of one student's metrics (as bench.read_run gives it): accuracy,
    per-row correctness, per-class accuracy (evaluate_model's own per_class)."""
    return {
        "accuracy": metrics["accuracy"],
        "correct": [bool(p["correct"]) for p in metrics["predictions"]],
        "per_class": {c: v["accuracy"] for c, v in metrics["per_class"].items()},
    }


def soup_metrics(folder: Path, r: int, cache: Path) -> dict:
    """metrics of the soup of round r-1's and round r's students (cached: the run resumes)."""
    out = cache / f"round{r}.json"
    if out.exists():
        return json.loads(out.read_text())
    cfg = load_config(folder / "config.yaml")
    task = load_task(cfg.task)
    first = json.loads((folder / "arms" / ARMS[0] / "metrics.json").read_text())
    test = [Example(p["input"], p["gold"], p["gold"]) for p in first["predictions"]]
    a, b = (folder / "arms" / ARMS[k] / "model" / "merged" for k in (r - 2, r - 1))
    with tempfile.TemporaryDirectory() as tmp:
        soup(a, b, Path(tmp) / "soup")
        res = evaluate_model(task, str(Path(tmp) / "soup"), test, cfg.evaluate, "cpu", "float32")
    res["model"] = f"mean of {a} and {b}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res) + "\n")
    return res


def pct(d: dict | None) -> dict | None:
    """bench.paired's fractions as points."""
    if d is None:
        return None
    keep = ("mean", "ci95", "ci95_rows", "seeds", "per_class", "largest_class_fall")
    scale = lambda v: [round(100 * x, 1) for x in v] if isinstance(v, list) else round(100 * v, 1)  # noqa: E731
    return {
        k: ({s: scale(x) for s, x in d[k].items()} if isinstance(d[k], dict) else scale(d[k]))
        for k in keep
        if k in d and d[k] is not None
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "evidence" / "trec")
    ap.add_argument("--variant", default="teacher_rounds")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--cache", type=Path, default=ROOT / "runs" / "round-soup", help="Soup metrics, per seed."
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "evolve" / "trec-round-soup.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    start, seeds = time.time(), [int(s) for s in args.seeds.split(",")]
    students: dict[str, dict[int, dict]] = {}  # "r1".."r3" (the rounds' own), "soup2", "soup3"
    for seed in seeds:
        folder = args.runs / f"seed{seed}" / args.variant
        for k, arm in enumerate(ARMS, start=1):
            students.setdefault(f"r{k}", {})[seed] = entry(
                json.loads((folder / "arms" / arm / "metrics.json").read_text())
            )
        for r in range(2, len(ARMS) + 1):
            res = soup_metrics(folder, r, args.cache / args.variant / f"seed{seed}")
            students.setdefault(f"soup{r}", {})[seed] = entry(res)
            acc = [
                students[f"r{r - 1}"][seed]["accuracy"],
                students[f"r{r}"][seed]["accuracy"],
                res["accuracy"],
            ]
            print(
                f"seed {seed} round {r}: previous, round, soup " + ", ".join(f"{x:.3f}" for x in acc),
                flush=True,
            )
    mean = {
        name: round(100 * sum(x["accuracy"] for x in d.values()) / len(d), 2) for name, d in students.items()
    }
    per_seed = {
        name: {str(s): round(100 * x["accuracy"], 1) for s, x in d.items()} for name, d in students.items()
    }
    comparisons = {  # a - b, paired on the same test rows
        "r2 - r1": ("r2", "r1"),
        "soup2 - r1": ("soup2", "r1"),  # round 2 as a pipeline that keeps the soup would give it
        "soup2 - r2": ("soup2", "r2"),
        "r3 - r2": ("r3", "r2"),
        "soup3 - r2": ("soup3", "r2"),  # after the fact: r3 was built on r2, not on soup2
        "soup3 - soup2": ("soup3", "soup2"),
    }
    paired = {name: pct(bench.paired(students[a], students[b])) for name, (a, b) in comparisons.items()}
    out = {
        "question": "round r's student averaged with round r-1's (weights): gain kept, no class falling?",
        "runs": str(args.runs.relative_to(ROOT) if args.runs.is_relative_to(ROOT) else args.runs),
        "variant": args.variant,
        "seeds": seeds,
        "students": "r1..r3: the rounds' own students (their metrics.json); "
        "soupR: the weight mean of rR-1's and rR's",
        "mean_accuracy": mean,
        "per_seed": per_seed,
        "paired_points": paired,
        "wall_s": round(time.time() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"mean_accuracy": mean, "paired_points": paired}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
