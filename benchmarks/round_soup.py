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


def per_class(res: dict) -> dict[str, float]:
    got: dict[str, list[int]] = {}
    for p in res["predictions"]:
        got.setdefault(p["gold"], []).append(int(p["correct"]))
    return {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(got.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "evidence" / "trec")
    ap.add_argument("--variant", default="teacher_rounds")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "evolve" / "trec-round-soup.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    start, seeds = time.time(), [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        folder = args.runs / f"seed{seed}" / args.variant
        cfg = load_config(folder / "config.yaml")
        task = load_task(cfg.task)
        metrics = [json.loads((folder / "arms" / arm / "metrics.json").read_text()) for arm in ARMS]
        test = [Example(p["input"], p["gold"], p["gold"]) for p in metrics[0]["predictions"]]
        for r in range(2, len(ARMS) + 1):
            a, b = (folder / "arms" / ARMS[k] / "model" / "merged" for k in (r - 2, r - 1))
            with tempfile.TemporaryDirectory() as tmp:
                soup(a, b, Path(tmp) / "soup")
                res = evaluate_model(task, str(Path(tmp) / "soup"), test, cfg.evaluate, "cpu", "float32")
            prev, cur = metrics[r - 2], metrics[r - 1]
            row = {
                "seed": seed,
                "round": r,
                "previous": round(100 * prev["accuracy"], 1),
                "round_student": round(100 * cur["accuracy"], 1),
                "soup": round(100 * res["accuracy"], 1),
                "per_class": {
                    "previous": per_class(prev),
                    "round_student": per_class(cur),
                    "soup": per_class(res),
                },
            }
            rows.append(row)
            print(
                json.dumps({k: row[k] for k in ("seed", "round", "previous", "round_student", "soup")}),
                flush=True,
            )
    summary = {}
    for r in sorted({x["round"] for x in rows}):
        mine = [x for x in rows if x["round"] == r]
        mean = {
            k: round(sum(x[k] for x in mine) / len(mine), 2) for k in ("previous", "round_student", "soup")
        }
        classes = mine[0]["per_class"]["previous"].keys()
        falls = {}
        for who in (
            "round_student",
            "soup",
        ):  # per class, mean over seeds, against the previous round's student
            falls[who] = {
                c: round(
                    sum(x["per_class"][who][c] - x["per_class"]["previous"][c] for x in mine) / len(mine), 1
                )
                for c in classes
            }
        summary[f"round{r}"] = {"mean": mean, "class_change_vs_previous": falls}
    out = {
        "question": "round r's student averaged with round r-1's (weights): gain kept, no class falling?",
        "runs": str(args.runs.relative_to(ROOT) if args.runs.is_relative_to(ROOT) else args.runs),
        "variant": args.variant,
        "seeds": seeds,
        "rows": rows,
        "summary": summary,
        "wall_s": round(time.time() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
