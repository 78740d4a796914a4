"""Which few-shot prompt makes the teacher answer best? Chosen on rows of the pool, never on test rows.

    python benchmarks/teacher_answers.py                     # TREC, SST-2, AG News; seed 0; 100 pool rows
    python benchmarks/teacher_answers.py --tasks trec --rows 50

For each task: the seeds a run of its config (seed 0) draws, then `--rows` rows of its pool that are
neither seeds nor test rows; the embedded teacher answers each under each prompt shape
(psilm.stages.evaluate.teacher: `turns`, `listing`), greedy and held to the labels. Writes
benchmarks/results/teacher-answers/prompt.json (+ .md): accuracy and seconds per row per shape.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = {"trec": "configs/trec.yaml", "sst2": "configs/sst2.yaml", "agnews": "configs/agnews.yaml"}
SHAPES = ("turns", "listing")


def main() -> None:
    from psilm import data as data_mod
    from psilm.config import load_config
    from psilm.durable import JsonlLog
    from psilm.llm import load_backend
    from psilm.llm.calls import ModelCaller
    from psilm.llm.settings import default_teacher
    from psilm.stages.evaluate.teacher import teacher_predictions
    from psilm.tasks import load_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(CONFIGS))
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "teacher-answers")
    ap.add_argument("--result", type=Path, default=ROOT / "benchmarks/results/teacher-answers/prompt.json")
    args = ap.parse_args()
    teacher_cfg = default_teacher()
    result: dict = {"date": time.strftime("%Y-%m-%d"), "teacher": teacher_cfg.model, "rows": args.rows}
    result["tasks"] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.tasks.split(","):
        cfg = load_config(ROOT / CONFIGS[name], ["seed=0"])
        task = load_task(cfg.task)
        test = data_mod.load_examples(task, cfg.data.test)
        pool = data_mod.without(data_mod.load_examples(task, cfg.data.train), test)
        seeds = data_mod.draw_seeds(task, pool, cfg.data.n_seeds, 0)
        taken = {x.input for x in seeds}
        rows = random.Random("teacher-answers").sample([x for x in pool if x.input not in taken], args.rows)
        result["tasks"][name] = {}
        for shape in SHAPES:
            log = JsonlLog(args.out / f"{name}-{shape}.jsonl")
            caller = ModelCaller("teacher", teacher_cfg.model, lambda: load_backend(teacher_cfg), log,
                                 json_constrained=teacher_cfg.json_constrained)  # fmt: skip
            preds, _, seconds = teacher_predictions(task, seeds, rows, caller, shape, 16, 0)
            caller.close()
            correct = sum(p == x.answer for p, x in zip(preds, rows, strict=True))
            result["tasks"][name][shape] = {
                "accuracy": round(correct / len(rows), 4),
                "unread": sum(p is None for p in preds),
                "s_per_row": round(seconds / len(rows), 3) if caller.new_calls else None,
            }
            print(name, shape, result["tasks"][name][shape], flush=True)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    head = f"{result['date']}, teacher {result['teacher']}, {args.rows} pool rows a task (not seeds or test)."
    lines = [head, "",
             "| task | " + " | ".join(f"{s} accuracy | {s} s/row" for s in SHAPES) + " |",
             "| --- " * (1 + 2 * len(SHAPES)) + "|"]  # fmt: skip
    for name, r in result["tasks"].items():
        cells = [f"{100 * r[s]['accuracy']:.1f} | {r[s]['s_per_row']}" for s in SHAPES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    args.result.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
