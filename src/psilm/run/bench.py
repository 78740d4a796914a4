"""`psilm bench`: one config over several seeds, so a difference between arms can be told from noise.

At a small student's size, one seed moves an arm's accuracy far more than most methods do
(docs/evidence.md), so a single run says little about whether principles helped.
`bench` runs the config once per seed, each in its own resumable run folder (`OUT/seed{K}`), then
reports per arm the mean accuracy with a 95 percent t interval over seeds, and paired differences with
two intervals: over seeds (what another seed would do) and a bootstrap over the shared test rows
(what another test set would do; it ignores seed-to-seed variance). The differences are each arm
against its baseline in arms.py (`psi - direct`, `direct - seed_only`, ...), or with `compare`
one arm against every other.
The statistics here are also what `benchmarks/evidence.py` reports.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psilm import arms as arms_table
from psilm.config import load_config
from psilm.durable import atomic_write_text
from psilm.errors import ConfigError
from psilm.ledger import build_ledger
from psilm.numbers import CI
from psilm.readback import read_yaml_mapping
from psilm.run import prepare, run_all
from psilm.run.folder import SAVED_SECTIONS, Layout, RunDir
from psilm.stages.evaluate import wilson_interval

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# --- statistics -------------------------------------------------------------------------------------
def t_interval(values: list[float], lo: float = 0.0, hi: float = 1.0) -> list[float] | None:
    """The 95 percent t interval of the mean, clipped to [lo, hi]; None with fewer than two values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return [round(max(lo, mean - half), 4), round(min(hi, mean + half), 4)]


def wilson(k: int, n: int) -> list[float]:

    lo, hi = wilson_interval(k, n)
    return [round(lo, 4), round(hi, 4)]


def summarize_arm(runs: dict[int, dict]) -> dict[str, Any]:
    """runs: seed -> read_run's entry for one arm. One seed: the Wilson interval over test rows."""
    seeds = sorted(runs)
    accs = [runs[s]["accuracy"] for s in seeds]
    ci = t_interval(accs)
    if ci is None:
        only = runs[seeds[0]]
        ci = wilson(sum(only["correct"]), only["n"])
    tokens: dict[str, dict[str, float]] = {}
    for s in seeds:
        for role, counts in runs[s]["tokens"].items():
            for k, v in counts.items():
                tokens.setdefault(role, {}).setdefault(k, 0)
                tokens[role][k] += v / len(seeds)
    mean = lambda key: statistics.fmean(runs[s][key] or 0 for s in seeds)  # noqa: E731
    n_train = [runs[s]["n_train"] for s in seeds if runs[s]["n_train"] is not None]
    out = {
        "mean": round(statistics.fmean(accs), 4),
        "ci95": ci,
        "seeds": {str(s): round(runs[s]["accuracy"], 4) for s in seeds},
        "n_test": runs[seeds[0]]["n"],
        "n_train": round(statistics.fmean(n_train), 1) if n_train else None,
        "co2_kg": mean("co2_kg"),
        "energy_kwh": mean("energy_kwh"),
        "duration_s": round(mean("duration_s"), 1),
        "tokens": {r: {k: round(v) for k, v in c.items()} for r, c in tokens.items()},
    }
    if per_class := _per_class([runs[s].get("per_class") or {} for s in seeds]):
        out["per_class"] = per_class  # test accuracy per class, mean over seeds
    return out


def _per_class(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Class -> mean over the seeds of its value, for the classes every seed has (read_run's
    per_class; an entry built without one has none)."""
    classes = sorted(set.intersection(*map(set, per_seed))) if per_seed else []
    return {c: round(statistics.fmean(d[c] for d in per_seed), 4) for c in classes}


def paired(a: dict[int, dict], b: dict[int, dict], boot: int = 2000) -> dict[str, Any] | None:
    """a - b over the seeds both have, on the same test rows."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s]["accuracy"] - b[s]["accuracy"] for s in seeds]
    rng = random.Random(0)
    row_diffs = [
        [int(x) - int(y) for x, y in zip(a[s]["correct"], b[s]["correct"], strict=True)] for s in seeds
    ]
    means = []
    for _ in range(boot):
        total = 0.0
        for rows in row_diffs:
            total += sum(rows[rng.randrange(len(rows))] for _ in range(len(rows))) / max(1, len(rows))
        means.append(total / len(row_diffs))
    means.sort()
    per_class = _per_class([_class_diff(a[s], b[s]) for s in seeds])
    return {
        "mean": round(statistics.fmean(diffs), 4),
        "ci95": t_interval(diffs, -1.0, 1.0),
        "ci95_rows": [round(means[int(0.025 * boot)], 4), round(means[int(0.975 * boot) - 1], 4)],
        "seeds": {str(s): round(d, 4) for s, d in zip(seeds, diffs, strict=True)},
        # per class, a's test accuracy minus b's, mean over seeds: a class that falls shows
        **({"per_class": per_class, "largest_class_fall": min(per_class.values())} if per_class else {}),
    }


def _class_diff(a: dict, b: dict) -> dict[str, float]:
    pa, pb = a.get("per_class") or {}, b.get("per_class") or {}
    return {c: pa[c] - pb[c] for c in pa if c in pb}


# --- reading finished runs ------------------------------------------------------------------------
def read_run(folder: Path, names: dict[str, str] | None = None) -> dict[str, dict]:
    """Arm (renamed by `names`) -> accuracy, per-row correctness, n_train and the ledger's cost."""

    run = RunDir(folder, read_only=True)
    manifest = run.manifest
    config = read_yaml_mapping(run.config, SAVED_SECTIONS, run.fix(run.config))
    names = names or {}
    arm_metrics = {}
    for arm in config["arms"]:
        path = run.arm_metrics(arm)
        if path.exists():
            arm_metrics[arm] = run.read(path)
    ledger = build_ledger(manifest, config, arm_metrics)
    out: dict[str, dict] = {}
    for arm, m in arm_metrics.items():
        cost = ledger["arms"][arm]
        out[names.get(arm, arm)] = {
            "accuracy": m["accuracy"],
            "n": m["n"],
            "correct": [bool(p["correct"]) for p in m["predictions"]],
            "n_train": manifest["stages"].get(f"train/{arm}", {}).get("n_train"),
            "co2_kg": cost["co2_kg"],
            "energy_kwh": cost["energy_kwh"],
            "duration_s": cost["duration_s"],
            "tokens": cost["tokens"],
            "per_class": {c: v["accuracy"] for c, v in (m.get("per_class") or {}).items()},
        }
    return out


def pairs(arms: list[str], compare: str | None = None) -> list[tuple[str, str]]:
    """(a, b) for each paired difference a - b: `compare` against every other arm, or by default
    each arm against its baseline in the arms table."""
    if compare is None:
        return arms_table.baselines(arms)
    return [(compare, other) for other in arms if other != compare] if compare in arms else []


def summarize(out: Path, seeds: list[int], compare: str | None = None) -> dict[str, Any]:
    """bench.json's content from the finished seed folders under `out`."""
    per_arm: dict[str, dict[int, dict]] = {}
    task = None
    for seed in seeds:
        run = out / f"seed{seed}"
        if (metrics := Layout(run).metrics).exists():
            task = task or RunDir(run, read_only=True).read(metrics).get("task")
            for arm, entry in read_run(run).items():
                per_arm.setdefault(arm, {})[seed] = entry
    arms = {arm: summarize_arm(runs) for arm, runs in per_arm.items()}
    diffs = {}
    for a, b in pairs(list(per_arm), compare):
        if d := paired(per_arm[a], per_arm[b]):
            diffs[f"{a} - {b}"] = d
    done = sorted({s for runs in per_arm.values() for s in runs})
    return {"task": task, "seeds": seeds, "finished_seeds": done, "arms": arms, "paired": diffs}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def interval(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{pct(ci[0])} - {pct(ci[1])}"


def arm_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Markdown rows for (arm name, summarize_arm entry)."""
    out = [f"| arm | mean accuracy % | {CI} | per seed | trained on | g CO2eq | min |"]
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for name, a in rows:
        seeds = ", ".join(pct(v) for v in a["seeds"].values())
        co2 = f"{1000 * a['co2_kg']:.2f}" if a["co2_kg"] else "-"
        out.append(
            f"| {name} | {pct(a['mean'])} | {interval(a['ci95'])} | {seeds} | {a['n_train'] or '-'} "
            f"| {co2} | {a['duration_s'] / 60:.1f} |"
        )
    return out


def paired_table(diffs: dict[str, dict]) -> list[str]:
    """Markdown rows for {"a - b": paired entry}; nothing when there are none."""
    if not diffs:
        return []
    out = ["", f"| paired difference (points) | mean | {CI} over seeds | {CI} over test rows |"]
    out.append("| --- | --- | --- | --- |")
    for name, d in diffs.items():
        out.append(f"| {name} | {pct(d['mean'])} | {interval(d['ci95'])} | {interval(d['ci95_rows'])} |")
    return out


def markdown(result: dict) -> str:
    done = result["finished_seeds"]
    head = f"**{result['task']}**, {len(done)} seed{'s' * (len(done) != 1)} ({', '.join(map(str, done))})"
    out = [head, "", *arm_table(list(result["arms"].items())), *paired_table(result["paired"])]
    return "\n".join(out) + "\n"


# --- running ----------------------------------------------------------------------------------------
def bench(
    config: Path | str,
    out: Path,
    seeds: list[int],
    overrides: list[str] | None = None,
    log: Callable[[str], Any] = print,
    compare: str | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Run `config` once per seed under out/seed{K} (resuming finished stages), then write
    out/bench.json and out/bench.md. `wrap(ctx)` is a context manager around each run (progress)."""
    from contextlib import nullcontext

    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"bench: seeds must be distinct and at least one, got {seeds}")
    cfgs = {s: load_config(config, [*(overrides or []), f"seed={s}"]) for s in seeds}  # validate all first
    out.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        log(f"[bench] seed {s}: {out / f'seed{s}'}")
        ctx = prepare(cfgs[s], out / f"seed{s}", log)
        with wrap(ctx) if wrap else nullcontext():
            run_all(ctx)
    result = summarize(out, seeds, compare)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "bench.md", markdown(result))
    return result
