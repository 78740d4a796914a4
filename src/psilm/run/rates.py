"""What a step costs on this machine, per unit of its work, so that `psilm plan` can say beforehand
how long a run will take.

Every step that runs whole records (stage, model) -> seconds and units of work ($PSILM_CACHE/
rates.json; a cache that cannot be written is a note, and plan then has fewer rates). A step's
units (instances written, rows trained times epochs, labels scored) come from the config, as
Stage.workload says, and a rate is kept per unit, so that a unit's change never mixes two kinds; an
estimate is the machine's own seconds per unit times the units planned, the latest steps weighing
most (a machine's load and psilm's own speed change; a step timed on a busy machine fades).
A task not run here yet is estimated at the median task's rate, with the range over the tasks measured.
A fresh machine has no rates yet and says so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from psilm.durable import write_cache
from psilm.llm.registry import cache_dir

FADE = 0.7  # what the steps before weigh when one more is recorded: the last few set the rate


def _path() -> Path:
    return cache_dir() / "rates.json"


def _load() -> dict[str, dict[str, float]]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: rates are made again as steps run
        return {}
    if not isinstance(data, dict):
        return {}
    # an entry of another shape is dropped, not trusted: it is measured again as steps run
    return {k: v for k, v in data.items() if isinstance(v, dict) and _numbers(v)}


def _numbers(entry: dict) -> bool:
    values = [entry.get(k, 0) for k in ("units", "seconds", "steps")]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _key(stage: str, model: str, unit: str, task: str | None = None) -> str:
    return f"{stage}|{model}|{unit}" + (f"|{task}" if task else "")


def record(stage: str, model: str, units: float, unit: str, seconds: float, task: str | None = None) -> None:
    """Add one finished step's time to what this machine has measured for (stage, model), over
    every task and for this task alone."""
    if units <= 0 or seconds <= 0:
        return
    rates = _load()
    for key in [_key(stage, model, unit)] + ([_key(stage, model, unit, task)] if task else []):
        got = rates.setdefault(key, {"units": 0.0, "seconds": 0.0, "steps": 0})
        got["units"] = got["units"] * FADE + units
        got["seconds"] = got["seconds"] * FADE + seconds
        got["steps"] = got.get("steps", 0) + 1
    write_cache(_path(), json.dumps(rates, indent=1, sort_keys=True), "psilm plan has no estimate for it")


def estimate(stage: str, model: str, units: float, unit: str, task: str | None = None) -> float | None:
    """Seconds this machine would take for `units` of (stage, model), or None: never measured here."""
    return forecast(stage, model, units, unit, task)[0]


def forecast(
    stage: str, model: str, units: float, unit: str, task: str | None = None
) -> tuple[float | None, tuple[float, float] | None]:
    """(seconds, (fastest, slowest) or None) for `units` of (stage, model). The task's own rate where
    it has one (its rows' length sets a row's cost), with no range; else the median of the tasks
    measured (not the task run most often), with the range over them where two or more were: a row's
    length moves a rate several times over from one task to another; else every step's."""
    rates = _load()
    own = rates.get(_key(stage, model, unit, task)) if task else None
    if own and own.get("units"):
        return units * own["seconds"] / own["units"], None
    if per := _per_task(rates, stage, model, units, unit):
        return statistics.median(per), ((min(per), max(per)) if len(per) > 1 else None)
    got = rates.get(_key(stage, model, unit))
    return (units * got["seconds"] / got["units"] if got and got.get("units") else None), None


def _per_task(rates: dict, stage: str, model: str, units: float, unit: str) -> list[float]:
    head = _key(stage, model, unit) + "|"
    return [
        units * v["seconds"] / v["units"] for k, v in rates.items() if k.startswith(head) and v.get("units")
    ]
