"""At what n does psi's teacher cost fall below a fifth of the teacher arm's? One run at that n.

psi pays the teacher for the principles only; the teacher arm (the teacher writes every row from the
same principles) pays the principles plus its rows. docs/evidence.md projects the n where psi's
share falls below 1/5 from the cost per row measured at n = 96; this runs the teacher arm's
generation at a larger n (default 480) in the evidence profile's settings and measures it:

    python benchmarks/teacher_cost.py [--task trec] [--seed 1] [--n 480]
        [--out runs/teacher-cost] [--result benchmarks/results/evidence/teacher-cost-trec.json]

Only the principles and the teacher arm's generate stage run (no training: the question is cost).
The run folder resumes. Each stage's time, energy (CodeCarbon, this machine) and teacher tokens come
from the run's ledger; psi's teacher share = principles / (principles + the teacher's rows), by
energy and by tokens (read + written), with the n where it would cross 1/5 from this run's cost
per row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from evidence import ROOT, machine, run_config  # benchmarks/ is this script's folder

from psilm.config import load_config
from psilm.ledger import build_ledger
from psilm.run import prepare, run_stage
from psilm.run.folder import RunDir
from psilm.shell import console


def teacher_side(row: dict) -> dict:
    tokens = row["tokens"].get("teacher") or {}
    return {
        "duration_s": round(row["duration_s"] or 0.0, 1),
        "energy_wh": round(1000 * (row["energy_kwh"] or 0.0), 4),
        "teacher_tokens_read": tokens.get("prompt", 0),
        "teacher_tokens_written": tokens.get("completion", 0),
    }


def share(p: float, r: float) -> float:
    return round(p / (p + r), 4) if p + r else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="trec")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=480)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "teacher-cost")
    ap.add_argument("--result", type=Path, default=None)
    args = ap.parse_args()
    args.result = (
        args.result or ROOT / "benchmarks" / "results" / "evidence" / f"teacher-cost-{args.task}.json"
    )
    console.configure(verbose=False)

    spec = argparse.Namespace(teacher_url=None, teacher_model=None, teacher_key_env=None)
    data = run_config(args.task, "full", "teacher_all", args.seed, spec)
    data["generate"]["n"] = args.n
    data["name"] = f"teacher-cost-{args.task}-n{args.n}-s{args.seed}"
    folder = args.out / args.task / f"seed{args.seed}-n{args.n}"
    started = time.time()
    ctx = prepare(load_config(data=data), folder, lambda m: None)
    run_stage(ctx, "generate", "teacher")

    run = RunDir(folder, read_only=True)
    ledger = build_ledger(run.manifest, yaml.safe_load(run.config.read_text()))
    rows = {r["stage"]: r for r in ledger["stages"]}
    principles, written = teacher_side(rows["principles"]), teacher_side(rows["generate/teacher"])
    kept = sum(1 for _ in run.candidates("teacher").open())
    tokens = lambda x: x["teacher_tokens_read"] + x["teacher_tokens_written"]  # noqa: E731
    per_row_wh = written["energy_wh"] / args.n
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": f"python benchmarks/teacher_cost.py --task {args.task} --seed {args.seed} --n {args.n}",
        "teacher": ctx.cfg.models.teacher.model,
        "n": args.n,
        "candidates": kept,
        "principles": principles,
        "teacher_rows": written,
        "per_row": {
            "duration_s": round(written["duration_s"] / args.n, 3),
            "energy_mwh": round(1000 * per_row_wh, 3),
            "teacher_tokens": round(tokens(written) / args.n, 1),
        },
        # psi's teacher cost over the teacher arm's, both at this n
        "psi_teacher_share": {
            "energy": share(principles["energy_wh"], written["energy_wh"]),
            "tokens": share(tokens(principles), tokens(written)),
        },
        # the n at which the rows cost four times the principles (share 1/5), from this run's rates
        "n_at_one_fifth": {
            "energy": round(4 * principles["energy_wh"] / per_row_wh) if per_row_wh else None,
            "tokens": round(4 * tokens(principles) / (tokens(written) / args.n)) if tokens(written) else None,
        },
        "wall_s": round(time.time() - started, 1),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
