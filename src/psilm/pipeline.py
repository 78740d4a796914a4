"""Opens a run folder and runs the plan's steps over it, skipping what is done and resuming the rest.

The plan (plan.py) is the ordered list of (stage, arm) steps of a config; each step (steps.py,
rounds.py) reads its inputs from the folder and returns a Job, which run_stage (context.py) skips,
resumes or runs. A step's key hashes its settings and its inputs' hashes; the same key means its
outputs are reused, a changed key moves the old outputs aside and runs it again. Only the step
modules and store.py touch the folder; RunDir spells its paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psilm import arms, rounds, steps
from psilm import data as data_mod
from psilm.config import RunConfig
from psilm.context import Context, Job, equal_count, run_stage
from psilm.durable import atomic_write_json, atomic_write_text, text_hash
from psilm.errors import ConfigError, DamagedError, DataError
from psilm.plan import Step, plan, plan_for
from psilm.store import Layout, RunDir, check_root
from psilm.tasks import Example, Task, load_task


# --- opening a run ------------------------------------------------------------------------------
def prepare(cfg: RunConfig, out: str | Path, log: Callable[[str], None] = print) -> Context:
    """Validate every input, then create or reopen the run folder. Nothing is written on error."""
    task, seeds, test, weights = _inputs(cfg, log)
    run = RunDir(out)
    atomic_write_text(run.config, cfg.to_yaml())
    seeds_text = _seeds_text(seeds)
    if not _holds(run.seeds, seeds_text):  # the config's seeds, written again where they differ
        atomic_write_text(run.seeds, seeds_text)
    run.save_manifest()
    return Context(cfg, run, task, seeds, test, weights, log)


def peek(cfg: RunConfig, out: str | Path | None, log: Callable[[str], None] = print) -> Context | None:
    """The run folder `out` as a run of `cfg` would find it, only read (psilm plan); None where it
    is no run folder (yet). The inputs are validated as prepare does."""
    task, seeds, test, weights = _inputs(cfg, log)
    if out is not None:
        check_root(out)
    if out is None or not Layout(out).manifest_path.exists():
        return None
    ctx = Context(cfg, RunDir(out, read_only=True), task, seeds, test, weights, log)
    seeds_text = _seeds_text(seeds)
    if not _holds(ctx.run.seeds, seeds_text):
        ctx.new_seeds_hash = text_hash(seeds_text)  # what prepare would write there
    return ctx


def _holds(path: Path, text: str) -> bool:
    """Whether the file holds exactly `text` (a missing or unreadable one does not)."""
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _inputs(
    cfg: RunConfig, log: Callable[[str], None]
) -> tuple[Task, list[Example], list[Example] | None, Any]:
    """(task, seeds, test rows or None, category weights) of a config, each checked."""
    task = load_task(cfg.task)
    test = None
    if cfg.data.test is not None:
        test = data_mod.test_slice(data_mod.load_examples(task, cfg.data.test), cfg.data.n_test)
    elif any(a for a in cfg.arms):
        log("note: data.test is not set; the evaluate stage will be skipped")
    # public splits share a few rows (TREC: 'What does NASA stand for ?'): never use those
    pool, weights = None, cfg.generate.category_weights
    if cfg.data.train is not None and (cfg.data.seeds is None or weights == "train"):
        pool = data_mod.without(data_mod.load_examples(task, cfg.data.train), test or [])
    if cfg.data.seeds is not None:
        seeds = data_mod.load_examples(task, cfg.data.seeds)
        seeds_where = str(cfg.data.seeds)
    else:
        seeds = data_mod.draw_seeds(task, pool, cfg.data.n_seeds, cfg.seed)
        seeds_where = f"{cfg.data.train} (drawn {cfg.data.n_seeds} seeds)"
    if weights == "train":  # the config keeps `train`; the generate stage records the shares used
        weights = _train_shares(cfg, task, pool)
    data_mod.check_seeds(task, seeds, seeds_where)
    if test is not None:
        data_mod.check_overlap(seeds, test, cfg.data.test)
    if cfg.principles.file is not None:  # a malformed principles file fails here, not mid-run
        from psilm.stages.principles_file import load_principles_file

        load_principles_file(cfg.principles.file, task, cfg.principles.levels)
    if cfg.evolve.rounds > 1:
        from psilm.stages.evolve import check_task

        check_task(task, cfg.evolve, len(seeds))
        if cfg.evolve.error_principles == "file" and cfg.evolve.principles_file is not None:
            from psilm.stages.principles_file import load_principles_file

            load_principles_file(cfg.evolve.principles_file, task)
    return task, seeds, test, weights


def _train_shares(cfg: RunConfig, task: Task, pool: list[Example] | None) -> dict[str, float]:
    if task.kind != "classification":
        raise ConfigError(
            f"generate.category_weights: 'train' needs a classification task; {cfg.task.name} is "
            f"{task.kind}: give the weights per category instead"
        )
    if pool is None:
        raise ConfigError("generate.category_weights: 'train' needs data.train (a labelled pool)")
    shares = data_mod.label_shares(task, pool)
    missing = [lbl for lbl in task.labels if lbl not in shares]
    if missing:
        raise DataError(
            f"{cfg.data.train}: no rows labelled {missing}, so category_weights 'train' would never "
            "draw them; give the weights per label instead"
        )
    return shares


def _seeds_text(seeds: list[Example]) -> str:
    return "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in seeds)


# --- the steps --------------------------------------------------------------------------------------
JOBS: dict[str, Callable[[Context, Any], Job]] = {
    "generate": steps.generate_job,
    "filter": steps.filter_job,
    "train": steps.train_job,
    "evaluate": steps.evaluate_job,
    "judge": rounds.judge_job,
    "check": rounds.check_job,
}


def job(ctx: Context, step: Step) -> Job:
    """A planned step, built from the run folder as it is now."""
    if step.stage == "principles":
        return steps.principles_job(ctx) if step.arm is None else rounds.round_principles_job(ctx, step.arm)
    return JOBS[step.stage](ctx, step.arm)


def run_steps(ctx: Context, planned: list[Step]) -> None:
    """Each step in order, each built only when the ones before it are done."""
    for step in planned:
        run_stage(ctx, job(ctx, step))


def status(ctx: Context | None, planned: list[Step]) -> list[tuple[Step, str, str]]:
    """(step, 'skip' or 'run', why) for each step, as a run of the folder would find it; writes nothing."""
    out: list[tuple[Step, str, str]] = []
    runs: set[str] = set()
    for step in planned:
        if ctx is None:
            mode, why = "run", "no run folder yet"
        elif again := [n for n in step.needs if n in runs]:
            mode, why = "run", f"after {again[0]}"
        else:
            try:
                j = job(ctx, step)
            except DamagedError:
                raise  # a run would stop there too: say so now
            except DataError:
                mode, why = "run", "its inputs are not there yet"
            else:
                st = ctx.run.manifest["stages"].get(step.name, {})
                if ctx.run.done(step.name, j.key, j.outputs):
                    mode, why = "skip", "done, inputs and settings unchanged"
                elif not st:
                    mode, why = "run", "not run yet"
                elif st.get("key") == j.key:
                    mode, why = "run", f"resumes ({st.get('status')})"
                else:
                    mode, why = "run", "inputs or settings changed"
        if mode == "run":
            runs.add(step.name)
        out.append((step, mode, why))
    return out


# --- the stage commands: one step, after the steps that prepare its inputs (plan_for) ----------------
def stage_principles(ctx: Context) -> list[dict]:
    run_steps(ctx, plan_for(ctx.cfg, "principles"))
    return ctx.run.read(ctx.run.principles)["principles"]


def stage_generate(ctx: Context, arm: str) -> None:
    run_steps(ctx, plan_for(ctx.cfg, "generate", arm))


def stage_filter(ctx: Context, arm: str) -> None:
    run_steps(ctx, plan_for(ctx.cfg, "filter", arm))


def stage_train(ctx: Context, arm: str) -> None:
    run_steps(ctx, plan_for(ctx.cfg, "train", arm))


def stage_evaluate(ctx: Context, arm: str) -> dict | None:
    if ctx.test is None:
        return None
    run_steps(ctx, plan_for(ctx.cfg, "evaluate", arm))
    return ctx.run.read(ctx.run.arm_metrics(arm))


# --- the whole run ------------------------------------------------------------------------------
def run_all(ctx: Context) -> dict:
    """Every planned step in order (plan.py), then metrics.json and each arm's totals.

    Round 1 is every arm as it always was; round r (evolve.rounds) builds on round r-1's students,
    so a run stopped in round r keeps the scores of the rounds before.
    """
    planned = plan(ctx.cfg)
    run_steps(ctx, planned)
    results = {}
    for step in planned:
        if step.stage == "evaluate":
            res = ctx.run.read(ctx.run.arm_metrics(step.arm))
            results[step.arm] = {k: v for k, v in res.items() if k != "predictions"}
    specs = [arms.ARMS[a] for a in ctx.cfg.arms]
    round_numbers = sorted({s.round for s in specs})
    metrics = {
        "task": ctx.task.name,
        "arms": results,
        "n_test": len(ctx.test or []),
        "train_count": equal_count(ctx) if any(s.equal_count for s in specs) else None,
    }
    if len(round_numbers) > 1:
        metrics["train_count_per_round"] = {str(r): equal_count(ctx, r) for r in round_numbers}
        stages = ctx.run.manifest["stages"]  # which judge each round arm's mix came from
        judged = {a: stages[f"judge/{a}"].get("judge") for a in ctx.cfg.arms if f"judge/{a}" in stages}
        if any(judged.values()):
            metrics["judge"] = judged
    if results:
        atomic_write_json(ctx.run.metrics, metrics)
    store_arm_ledger(ctx, results)
    return metrics


def store_arm_ledger(ctx: Context, results: dict[str, dict]) -> None:
    """Sum each arm's stages (its own, plus principles for psi) into manifest.json under `arms`."""
    from psilm.ledger import build_ledger

    ledger = build_ledger(ctx.run.manifest, ctx.cfg.model_dump(mode="json"), results)
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
    ctx.run.manifest["arms"] = {arm: {k: totals[k] for k in keep} for arm, totals in ledger["arms"].items()}
    if any(arms.ARMS[a].round > 1 for a in ctx.cfg.arms):  # evolve.rounds: the curve, per round
        from psilm.ledger import round_curve

        ctx.run.manifest["rounds"] = round_curve(ledger, ctx.run.manifest["stages"], results, ctx.cfg.arms)
    ctx.run.save_manifest()
