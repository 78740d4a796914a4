"""How much data pays: direct, psi (the embedded teacher's principles) and human at growing n.

    python benchmarks/curve.py                           # TREC and AG News; hours on 2 cores; resumable
    python benchmarks/curve.py --tasks trec --ns 384 --seeds 0

One run folder per (task, seed) under --out, run again at each n in turn (`generate.n`): the
principles are the same at every n (their key holds no n), so they are written once, and the
generator's first answers are its saved ones. Each finished (task, seed, n) is recorded in the
result file before the next n supersedes the folder's outputs, so a killed curve resumes. The
first point (n = 96) is the suite's own folders where they are there (benchmarks/suite.py, the
same settings plus the teacher arm), else run here. Per arm and n: accuracy (mean over seeds,
with its interval), rows trained on, and the arm's wall time and energy; a plot beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import run_config, save  # noqa: E402

from psilm.run import bench  # noqa: E402
from psilm.run.bench import t_interval  # noqa: E402

ARMS = ["direct", "psi", "human"]
NAMES = {"psi": "psi_teacher"}


def run_one(args, task: str, seed: int, n: int) -> dict:
    from psilm.config import load_config
    from psilm.run import prepare, run_all

    cfg = run_config(task, seed, n)
    cfg["arms"] = ARMS
    folder = args.out / task / f"seed{seed}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"seed{seed}.log").open("a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} n={n}\n")
        run = prepare(load_config(data=cfg), folder, lambda m: (log.write(m + "\n"), log.flush()))
        run_all(run)
    return _entries(folder)


def _entries(folder: Path) -> dict:
    got = bench.read_run(folder, NAMES)
    return {a: {k: v for k, v in e.items() if k != "correct"} for a, e in got.items()}


def summarize(points: dict) -> dict:
    """task -> arm -> n -> mean accuracy, interval over seeds, rows, minutes and Wh (means over seeds)."""
    out: dict = {}
    for key, arms in points.items():
        task, seed, n = key.split("|")
        for arm, e in arms.items():
            out.setdefault(task, {}).setdefault(arm, {}).setdefault(n, []).append((int(seed), e))
    table: dict = {}
    for task, arms in out.items():
        for arm, by_n in arms.items():
            for n, runs in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                accs = [e["accuracy"] for _, e in runs]
                table.setdefault(task, {}).setdefault(arm, {})[n] = {
                    "seeds": {str(s): round(e["accuracy"], 4) for s, e in sorted(runs)},
                    "mean": round(statistics.fmean(accs), 4),
                    "ci95": t_interval(accs),
                    "n_train": statistics.fmean(e["n_train"] or 0 for _, e in runs),
                    "minutes": round(statistics.fmean(e["duration_s"] for _, e in runs) / 60, 1),
                    "wh": round(1000 * statistics.fmean(e["energy_kwh"] or 0 for _, e in runs), 3),
                }
    return table


def markdown(result: dict) -> str:
    out = [
        f"{result['date']}, {result['machine']}; accuracy % (mean over seeds), minutes and Wh per arm.",
        "",
    ]
    for task, arms in result["table"].items():
        ns = sorted({int(n) for a in arms.values() for n in a}, key=int)
        out += [
            f"**{task}**",
            "",
            "| arm | " + " | ".join(f"n={n}" for n in ns) + " |",
            "| --- " * (len(ns) + 1) + "|",
        ]
        for arm, by_n in arms.items():
            cells = []
            for n in ns:
                p = by_n.get(str(n))
                cells.append(
                    f"{100 * p['mean']:.1f} ({len(p['seeds'])} seed{'s' * (len(p['seeds']) > 1)}; "
                    f"{p['minutes']} min, {p['wh']} Wh)"
                    if p
                    else "-"
                )
            out.append(f"| {arm} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["table"])
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for arm, by_n in result["table"][task].items():
            ns = sorted(by_n, key=int)
            means = [100 * by_n[n]["mean"] for n in ns]
            spans = [[100 * x for x in (by_n[n]["ci95"] or [by_n[n]["mean"]] * 2)] for n in ns]
            pairs = list(zip(means, spans, strict=True))
            yerr = [[m - lo for m, (lo, _) in pairs], [hi - m for m, (_, hi) in pairs]]
            ax.errorbar([int(n) for n in ns], means, yerr=yerr, marker="o", label=arm, capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("generate.n (instances written per arm)")
        ax.set_ylabel("accuracy %")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="trec,agnews")
    ap.add_argument("--ns", default="96,384,1536")
    ap.add_argument("--seeds", default="0,1,2", help="Seeds for every n but the largest.")
    ap.add_argument("--largest-seeds", default="0", help="Seeds at the largest n (empty: none).")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "curve")
    ap.add_argument("--suite", type=Path, default=ROOT / "runs" / "suite", help="The suite's folders (n=96).")
    ap.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "curve" / "curve.json")
    args = ap.parse_args()
    from evidence import machine

    from psilm.shell import console

    console.configure(verbose=False)
    ns = [int(n) for n in args.ns.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    result = json.loads(args.result.read_text()) if args.result.exists() else {"points": {}}
    top = [int(s) for s in args.largest_seeds.split(",") if s]
    jobs = [(t, s, n) for n in ns for t in args.tasks.split(",") for s in (seeds if n < max(ns) else top)]
    for task, seed, n in jobs:
        key = f"{task}|{seed}|{n}"
        if key in result["points"]:
            continue
        suite = args.suite / task / f"seed{seed}"
        if n == 96 and (suite / "metrics.json").exists():
            got = {a: e for a, e in _entries(suite).items() if a in ("direct", "psi_teacher", "human")}
        else:
            print(f"{task} seed {seed} n={n} ...", flush=True)
            got = run_one(args, task, seed, n)
        result["points"][key] = got
        result.update(
            date=time.strftime("%Y-%m-%d"), machine=machine()["cpu"], table=summarize(result["points"])
        )
        save(args.result, result, markdown(result), lambda png: plot(result, png))


if __name__ == "__main__":
    main()
