"""A whole run, and what `psilm plan` and the stage commands ask of one.

run_all runs every planned step in order (a finished one is skipped, an interrupted one resumed),
then writes metrics.json and each arm's totals (time, energy, CO2, tokens) into the manifest.
status says, without writing anything, which steps a run of the folder would skip, and why.
run_stage runs one stage command's step after the steps that prepare its inputs.
"""

from __future__ import annotations

from typing import Any

from psilm import arms
from psilm.durable import atomic_write_json
from psilm.errors import DamagedError, DataError
from psilm.ledger import build_ledger, round_curve
from psilm.run.plan import Step, plan, plan_for, stage
from psilm.run.runner import Run, changed, run_steps, step_key


def run_stage(run: Run, name: str, arm: str | None = None) -> dict[str, Any]:
    """A stage command: its step `name/arm`, after the steps that prepare its inputs; its manifest entry."""
    run_steps(run, plan_for(run.cfg, name, arm))
    return run.folder.stage(name if arm is None else f"{name}/{arm}")


def run_all(run: Run) -> dict:
    """Every planned step in order (plan.py), then metrics.json and each arm's totals.

    Round 1 is every arm as it always was; round r (evolve.rounds) builds on round r-1's students,
    so a run stopped in round r keeps the scores of the rounds before.
    """
    planned = plan(run.cfg)
    run_steps(run, planned)
    results = {}
    for step in planned:
        if step.stage == "evaluate":
            res = run.folder.read(run.folder.arm_metrics(step.arm))
            results[step.arm] = {k: v for k, v in res.items() if k != "predictions"}
    specs = [arms.ARMS[a] for a in run.cfg.arms]
    round_numbers = sorted({s.round for s in specs})
    metrics = {
        "task": run.task.name,
        "arms": results,
        "n_test": len(run.test or []),
        "train_count": run.train_count() if any(s.shares_count for s in specs) else None,
    }
    if len(round_numbers) > 1:
        metrics["train_count_per_round"] = {str(r): run.train_count(r) for r in round_numbers}
        stages = run.folder.manifest["stages"]  # which judge each round arm's mix came from
        judged = {a: stages[f"judge/{a}"].get("judge") for a in run.cfg.arms if f"judge/{a}" in stages}
        if any(judged.values()):
            metrics["judge"] = judged
    if results:
        atomic_write_json(run.folder.metrics, metrics)
    store_arm_ledger(run, results)
    return metrics


def store_arm_ledger(run: Run, results: dict[str, dict]) -> None:
    """Sum each arm's stages (its own, plus principles for psi) into manifest.json under `arms`."""
    ledger = build_ledger(run.folder.manifest, run.cfg.model_dump(mode="json"), results)
    keep = (
        "stages",
        "duration_s",
        "energy_kwh",
        "co2_kg",
        "estimated_co2_kg",
        "is_estimated",
        "tokens",
        "cost_usd",
    )
    run.folder.manifest["arms"] = {
        arm: {k: totals[k] for k in keep} for arm, totals in ledger["arms"].items()
    }
    if any(arms.ARMS[a].round > 1 for a in run.cfg.arms):  # evolve.rounds: the curve, per round
        run.folder.manifest["rounds"] = round_curve(
            ledger, run.folder.manifest["stages"], results, run.cfg.arms
        )
    run.folder.save_manifest()


def status(run: Run | None, planned: list[Step]) -> list[tuple[Step, str, str]]:
    """(step, 'skip' or 'run', why) for each step, as a run of the folder would find it; writes nothing."""
    out: list[tuple[Step, str, str]] = []
    runs: set[str] = set()
    for step in planned:
        if run is None:
            mode, why = "run", "no run folder yet"
        elif again := [n for n in step.needs if n in runs]:
            mode, why = "run", f"after {again[0]}"
        else:
            try:
                key, outs = step_key(run, step)
            except DamagedError:
                raise  # a run would stop there too: say so now
            except DataError:
                mode, why = "run", "its inputs are not there yet"
            else:
                st = run.folder.manifest["stages"].get(step.name, {})
                if run.folder.done(step.name, key, outs):
                    mode, why = "skip", "done, inputs and settings unchanged"
                elif not st:
                    mode, why = "run", "not run yet"
                elif st.get("key") == key:
                    mode, why = "run", f"resumes ({st.get('status')})"
                else:
                    mode, why = "run", changed(st, stage(step.stage, step.arm)).removeprefix("its ")
        if mode == "run":
            runs.add(step.name)
        out.append((step, mode, why))
    return out
