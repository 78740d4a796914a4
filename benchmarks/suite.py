"""Principles for any task: the teacher's principles against plain small-model data, over tasks of
different shapes, each from a config written as a new user writes one (`psilm init`, a few edits).

    python benchmarks/suite.py                        # every task, seeds 0,1,2: hours on 2 cores; resumable
    python benchmarks/suite.py --tasks agnews --seeds 0
    python benchmarks/suite.py --aggregate-only       # re-read the finished folders

One psilm run folder per (task, seed) under --out, arms direct, psi (the embedded teacher's
principles at the defaults, reported as psi_teacher), teacher (the teacher writes every row, under
the same principles) and human (real rows of the pool, as many as the generated arms kept).
Finished stages are skipped, so a killed suite resumes; a stage whose version, settings or inputs
changed since runs again. After each finished folder the result is
written again (`"complete": false` until all are done): per task the arms, the paired differences
(intervals over seeds and over test rows), which labels kept fewer than per_category category
principles and why, the task rules dropped, and whether the error level ran; then the mean over
tasks of psi_teacher - direct, with a t interval over tasks and a bootstrap over test rows.

The profile (96 instances, 2 epochs, 500 test rows) is the evidence benchmark's: the settings the
TREC figures in docs/evidence.md were measured with. Everything else is the config's, so psilm's
defaults. `--n default` leaves generate.n out instead (the config's own n too), so each data arm
writes psilm's default number a label; give it its own --out and --result.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evidence import machine, plot  # noqa: E402

from psilm.run import bench  # noqa: E402
from psilm.run.bench import interval, paired, pct, summarize_arm, t_interval  # noqa: E402
from psilm.run.folder import Layout  # noqa: E402

# task -> its config and what the profile sets beyond the shared part (a task's rows' length)
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "trec": ("configs/trec.yaml", {"train": {"max_length": 128}}),  # short questions
    "sst2": ("configs/sst2.yaml", {"train": {"max_length": 128}}),  # one sentence
    "agnews": ("configs/agnews.yaml", {"train": {"max_length": 256}}),  # a headline and a paragraph
    "banking77": ("configs/banking77.yaml", {"train": {"max_length": 768}}),  # 77 labels in the prompt
    "snli": ("configs/snli.yaml", {"train": {"max_length": 256}}),  # a sentence pair
    "emotion": ("configs/emotion.yaml", {"train": {"max_length": 128}}),  # short personal messages
}
PROFILE = {
    "data": {"n_test": 500},
    "generate": {"n": 96},
    "train": {"epochs": 2},
    "principles": {"file": None},  # the embedded teacher writes them, at every default level
    # the teacher named, so that a task's config cannot put another model in its place
    "models": {
        "teacher": {"backend": "llamacpp", "model": "qwen2.5-coder-1.5b"},
        "generator": {"backend": "llamacpp", "model": "smollm2-135m"},
    },
    "arms": ["direct", "psi", "teacher", "human"],
}
NAMES = {"psi": "psi_teacher"}
PAIRS = [
    ("psi_teacher", "direct"),
    ("psi_teacher", "teacher"),
    ("psi_teacher", "human"),
    ("teacher", "direct"),
]
ORDER = ["direct", "psi_teacher", "teacher", "human"]


def save(path: Path, result: dict, markdown: str, plot=None) -> None:
    """A benchmark's result: the JSON, the Markdown beside it and, given `plot(path)`, a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown)
    if plot is not None:
        plot(path.with_suffix(".png"))


def merge(base: dict, over: dict) -> dict:
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) and v else v
    return out


def run_config(task: str, seed: int, n: int | None = PROFILE["generate"]["n"]) -> dict:
    """The task's config under the profile; n None: generate.n left out, psilm's default a label."""
    import yaml

    path, over = TASKS[task]
    cfg = yaml.safe_load((ROOT / path).read_text())
    for key in ("train", "test", "dev"):  # the config's paths are relative to its folder
        if isinstance(cfg.get("data", {}).get(key), str):
            cfg["data"][key] = str((ROOT / path).parent / cfg["data"][key])
    if isinstance(cfg.get("task"), dict):
        cfg["task"].pop("principles", None)
    cfg = merge(merge(cfg, PROFILE), over)
    cfg.update(name=f"suite-{task}-s{seed}", seed=seed)
    if n is None:
        cfg["generate"].pop("n", None)
    else:
        cfg["generate"]["n"] = n
    return cfg


def folder(args, task: str, seed: int) -> Path:
    return args.out / task / f"seed{seed}"


def finished(path: Path) -> bool:
    run = Layout(path)
    if not (run.metrics.exists() and run.manifest_path.exists()):
        return False
    stages = json.loads(run.manifest_path.read_text())["stages"].values()
    return all(st.get("status") == "done" for st in stages)


def run_one(args, task: str, seed: int) -> None:
    from psilm.config import load_config
    from psilm.run import prepare, run_all

    out = folder(args, task, seed)
    cfg = load_config(data=run_config(task, seed, args.n))
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / f"seed{seed}.log").open("a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        ctx = prepare(cfg, out, lambda m: (log.write(m + "\n"), log.flush()))
        run_all(ctx)


# --- reading finished folders ---------------------------------------------------------------------
def principles_facts(path: Path) -> dict[str, Any]:
    """From principles.json: labels left short (and why), task rules dropped, the error level."""
    written = json.loads(Layout(path).principles.read_text())
    coverage = written.get("coverage") or {}
    err = written.get("error") or {}
    return {
        "teacher": written.get("teacher"),
        "warning": written.get("warning"),
        "n_principles": len(written["principles"]),
        "per_level": {
            lv: sum(p["level"] == lv for p in written["principles"]) for lv in ("task", "category", "error")
        },
        "labels": len(coverage),
        "short": {c: v for c, v in coverage.items() if v.get("short")},
        "rules_dropped": written.get("rules_dropped", []),
        "error": {k: err.get(k) for k in ("seeds", "unread", "mistakes", "mistakes_sent", "skipped")},
        "dropped": written.get("dropped", {}),
    }


def aggregate(args, done: set[tuple[str, int]]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    rows_by_task: dict[str, dict[int, dict]] = {}
    for task in args.tasks:
        per_arm: dict[str, dict[int, dict]] = {}
        facts = {}
        for seed in args.seeds:
            if (task, seed) not in done:
                continue
            for name, entry in bench.read_run(folder(args, task, seed), NAMES).items():
                per_arm.setdefault(name, {})[seed] = entry
            facts[str(seed)] = principles_facts(folder(args, task, seed))
        if not per_arm:
            continue
        arms = {n: summarize_arm(per_arm[n]) for n in ORDER if n in per_arm}
        diffs = {
            f"{a} - {b}": d
            for a, b in PAIRS
            if a in per_arm and b in per_arm and (d := paired(per_arm[a], per_arm[b]))
        }
        tasks[task] = {"arms": arms, "paired": diffs, "principles": facts}
        if "psi_teacher" in per_arm and "direct" in per_arm:
            rows_by_task[task] = {
                s: per_arm["psi_teacher"][s] for s in per_arm["psi_teacher"] if s in per_arm["direct"]
            }
            rows_by_task[task] = {
                s: (per_arm["psi_teacher"][s], per_arm["direct"][s]) for s in rows_by_task[task]
            }
    missing = [f"{t}/seed{s}" for t in args.tasks for s in args.seeds if (t, s) not in done]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "complete": not missing,
        "missing": missing,
        "machine": machine(),
        "commit": CODE_COMMIT,
        "setup": {
            "generator": "smollm2-135m (embedded GGUF) via llama.cpp",
            "student": "smollm2-135m, LoRA, CPU fp32",
            "teacher": "qwen2.5-coder-1.5b (psilm's default teacher, llamacpp)",
            "seeds": args.seeds,
            "profile": {**PROFILE, "generate": {"n": args.n or "default (a number a label)"}},
            "tasks": {t: {"config": TASKS[t][0], **TASKS[t][1]} for t in args.tasks},
        },
        "tasks": tasks,
        "over_tasks": over_tasks(rows_by_task),
    }


def _commit() -> str | None:
    import subprocess

    try:
        return (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


CODE_COMMIT = _commit()  # the code this process runs: HEAD as it started, not as a long suite ends


def over_tasks(
    rows_by_task: dict[str, dict[int, tuple[dict, dict]]], boot: int = 2000
) -> dict[str, Any] | None:
    """psi_teacher - direct averaged over tasks (each task: its mean over seeds): a t interval over
    tasks, and a bootstrap over each task's test rows (seeds and tasks as they are)."""
    if not rows_by_task:
        return None
    means = {}
    rows: dict[str, list[list[int]]] = {}
    for task, seeds in rows_by_task.items():
        diffs = [a["accuracy"] - b["accuracy"] for a, b in seeds.values()]
        means[task] = statistics.fmean(diffs)
        rows[task] = [
            [int(x) - int(y) for x, y in zip(a["correct"], b["correct"], strict=True)]
            for a, b in seeds.values()
        ]
    rng = random.Random(0)
    draws = []
    for _ in range(boot):
        total = 0.0
        for per_seed in rows.values():
            task_mean = 0.0
            for r in per_seed:
                task_mean += sum(r[rng.randrange(len(r))] for _ in range(len(r))) / len(r)
            total += task_mean / len(per_seed)
        draws.append(total / len(rows))
    draws.sort()
    return {
        "pair": "psi_teacher - direct",
        "tasks": len(means),
        "mean": round(statistics.fmean(means.values()), 4),
        "per_task": {t: round(m, 4) for t, m in means.items()},
        "ci95_tasks": t_interval(list(means.values()), -1.0, 1.0),
        "ci95_rows": [round(draws[int(0.025 * boot)], 4), round(draws[int(0.975 * boot) - 1], 4)],
        "lowest_task": min(means.values()),
    }


def markdown(result: dict) -> str:
    status = "complete" if result["complete"] else f"partial: {len(result['missing'])} folders not done yet"
    m = result["machine"]
    out = [f"{result['date']}, {m['cores']}-core {m['cpu']} ({status}).", ""]
    if (o := result["over_tasks"]) is not None:
        out += [
            f"**{o['pair']}, mean over {o['tasks']} tasks: {pct(o['mean'])} points** "
            f"(95% over tasks {interval(o['ci95_tasks'])}; over test rows {interval(o['ci95_rows'])}); "
            f"lowest task {pct(o['lowest_task'])}.",
            "",
            "| task | "
            + " | ".join(ORDER)
            + " | psi_teacher - direct (rows) | labels short | rules dropped | error level |",
            "| --- " * (len(ORDER) + 5) + "|",
        ]
        for task, r in result["tasks"].items():
            cells = [pct(r["arms"][n]["mean"]) if n in r["arms"] else "-" for n in ORDER]
            d = r["paired"].get("psi_teacher - direct")
            diff = f"{pct(d['mean'])} ({interval(d['ci95_rows'])})" if d else "-"
            facts = r["principles"].values()
            short = "; ".join(f"s{s}: {', '.join(f['short']) or '-'}" for s, f in r["principles"].items())
            rules = sum(len(f["rules_dropped"]) for f in facts)
            err = ", ".join(
                "skipped"
                if f["error"].get("skipped")
                else f"{f['error'].get('mistakes')} of {f['error'].get('seeds')}"
                for f in facts
            )
            out.append(f"| {task} | " + " | ".join(cells) + f" | {diff} | {short} | {rules} | {err} |")
        out.append("")
    for task, r in result["tasks"].items():
        rows = [(n, r["arms"][n]) for n in ORDER if n in r["arms"]]
        out += [f"**{task}**", "", *bench.arm_table(rows), *bench.paired_table(r["paired"]), ""]
        for seed, f in r["principles"].items():
            out.append(f"- seed {seed}: principles by {f.get('teacher')}")
            if f.get("warning") and not f["short"]:  # a short label's warning is the line below
                out.append(f"- seed {seed}: warning: {f['warning']}")
            for c, v in f["short"].items():
                why = ", ".join(f"{n} {k}" for k, n in v["dropped"].items()) or "none written"
                out.append(f"- seed {seed}: {c} kept {v['kept']} category principles (dropped: {why})")
            for rule in f["rules_dropped"]:
                out.append(f'- seed {seed}: task rule dropped ({rule["reason"]}): "{rule["rule"]}"')
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"Comma-separated subset of {list(TASKS)}.")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "suite")
    ap.add_argument(
        "--result", type=Path, default=ROOT / "benchmarks" / "results" / "any-task" / "suite.json"
    )
    ap.add_argument("--aggregate-only", action="store_true", help="Only re-read the finished folders.")
    ap.add_argument(
        "--n",
        default=str(PROFILE["generate"]["n"]),
        help="Instances per data arm, or 'default': psilm's number a label.",
    )
    args = ap.parse_args()
    args.n = None if args.n == "default" else int(args.n)
    args.tasks = args.tasks.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if unknown := [t for t in args.tasks if t not in TASKS]:
        sys.exit(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")

    from psilm.shell import console

    console.configure(verbose=False)  # library output off the console, as the CLI does
    started = time.time()

    def write(done: set) -> None:
        result = aggregate(args, done)
        result["wall_s"] = round(time.time() - started, 1)
        shown = {t: {**r, "ablations": {}} for t, r in result["tasks"].items()}
        save(
            args.result,
            result,
            markdown(result),
            lambda png: plot({**result, "profile": "suite", "tasks": shown}, png),
        )

    done = {(t, s) for t in args.tasks for s in args.seeds if finished(folder(args, t, s))}
    if not args.aggregate_only:
        jobs = [(t, s) for s in args.seeds for t in args.tasks]  # every task's seed 0 first
        for i, (task, seed) in enumerate(jobs, start=1):
            # every folder is opened: psilm skips the steps that are up to date and runs again those
            # whose stage, settings or inputs changed since (a finished folder is not necessarily current)
            t0 = time.time()
            print(f"[{i}/{len(jobs)}] {task} seed {seed} ...", flush=True)
            run_one(args, task, seed)
            done.add((task, seed))
            print(f"[{i}/{len(jobs)}] {task} seed {seed}: {time.time() - t0:.0f} s", flush=True)
            write(done)
    write(done)
    print(f"wrote {args.result} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
