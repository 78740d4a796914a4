"""Runs the stages in order over one run folder, skipping what is done and resuming the rest.

Each arm is a short list of stages. A stage's key hashes its settings and its inputs' hashes
(not batch sizes or verbosity); the same key means the stage's outputs are reused, a changed
key moves the old outputs aside and runs again. Only this module and store.py touch the folder.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psilm import data as data_mod
from psilm.config import RunConfig
from psilm.emissions import remote_estimate, track
from psilm.errors import DataError, PsilmError
from psilm.io import iter_jsonl
from psilm.llm import ModelConfig, load_backend
from psilm.llm.calls import ModelCaller
from psilm.store import (
    JsonlLog,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    file_hash,
    fingerprint,
    read_json,
    write_jsonl,
)
from psilm.tasks import Example, Task, load_task

DATA_ARMS = {"direct": "direct", "psi": "psi", "teacher": "psi"}  # arm -> generation mode
TRAINED_ARMS = ["seed_only", "direct", "psi", "teacher", "human"]


def arm_dir(arm: str) -> str:
    """The psi arm's files sit at the top of the run folder; other arms under arms/<arm>/."""
    return "" if arm == "psi" else f"arms/{arm}/"


def _model_key(m: ModelConfig) -> dict:
    """What about a model changes its output (not batch size, concurrency, retries)."""
    return {"backend": m.backend, "model": m.model, "base_url": m.base_url, "dtype": m.dtype}


@dataclass
class Context:
    cfg: RunConfig
    run: RunDir
    task: Task
    seeds: list[Example]
    test: list[Example] | None
    log: Callable[[str], None] = print
    progress: Any = None  # a started rich Progress, or None (quiet)
    callers: dict[str, list[ModelCaller]] = field(default_factory=dict)

    # --- inputs shared by many stages
    @property
    def seeds_hash(self) -> str:
        return file_hash(self.run.path("seeds.jsonl"))

    @property
    def test_hash(self) -> str | None:
        return fingerprint([e.to_dict() for e in self.test]) if self.test is not None else None

    def caller(self, role: str, stage: str, model: ModelConfig) -> ModelCaller:
        """A model caller for one role in one stage; its raw responses go to raw/<stage>-<role>.jsonl."""
        log = JsonlLog(self.run.path("raw", f"{stage.replace('/', '-')}-{role}.jsonl"))
        c = ModelCaller(
            role,
            model.model,
            lambda: load_backend(model),
            log,
            chunk=model.batch_size,
            remote=model.backend == "openai",
        )
        self.callers.setdefault(stage, []).append(c)
        if self.progress is not None:
            c.on_progress = self._bar(f"{stage} ({role})")
        return c

    def _bar(self, label: str) -> Callable[[int], Callable[[int], None]]:
        def start(total: int) -> Callable[[int], None]:
            task = self.progress.add_task(label, total=total)
            return lambda n: self.progress.advance(task, n)

        return start


# --- opening a run ------------------------------------------------------------------------------
def prepare(cfg: RunConfig, out: str | Path, log: Callable[[str], None] = print) -> Context:
    """Validate every input, then create or reopen the run folder. Nothing is written on error."""
    task = load_task(cfg.task)
    if cfg.data.seeds is not None:
        seeds = data_mod.load_examples(task, cfg.data.seeds)
        seeds_where = str(cfg.data.seeds)
    else:
        pool = data_mod.load_examples(task, cfg.data.train)
        seeds = data_mod.draw_seeds(task, pool, cfg.data.n_seeds, cfg.seed)
        seeds_where = f"{cfg.data.train} (drawn {cfg.data.n_seeds} seeds)"
    data_mod.check_seeds(task, seeds, seeds_where)
    test = None
    if cfg.data.test is not None:
        test = data_mod.test_slice(data_mod.load_examples(task, cfg.data.test), cfg.data.n_test)
        data_mod.check_overlap(seeds, test, cfg.data.test)
    elif any(a for a in cfg.arms):
        log("note: data.test is not set; the evaluate stage will be skipped")

    run = RunDir(out)
    previous = run.path("config.yaml")
    atomic_write_text(previous, cfg.to_yaml())
    seeds_path = run.path("seeds.jsonl")
    seeds_text = "".join(_jsonl_line(s.to_dict()) for s in seeds)
    if not seeds_path.exists() or seeds_path.read_text(encoding="utf-8") != seeds_text:
        atomic_write_text(seeds_path, seeds_text)
    run.manifest.setdefault("config_hash", fingerprint(cfg.model_dump(mode="json")))
    run.save_manifest()
    return Context(cfg, run, task, seeds, test, log)


def _jsonl_line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


# --- running a stage ------------------------------------------------------------------------------
def run_stage(
    ctx: Context, name: str, key_parts: dict, outputs: list[str], work: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """Skip, resume or run one stage; record status, key, duration and tokens in the manifest."""
    key = fingerprint(key_parts)
    mode = ctx.run.plan(name, key, outputs)
    if mode == "skip":
        ctx.log(f"[skip] {name}: inputs and settings unchanged")
        return ctx.run.stage(name)
    ctx.log(f"[{'resume' if mode == 'resume' else 'run'}] {name}")
    ctx.run.start(name, key, {k: v for k, v in key_parts.items() if isinstance(v, str)})
    try:
        with track(ctx.cfg.emissions, name) as ledger:
            info = work(mode)
    except PsilmError as e:
        ctx.run.fail(name, str(e))
        raise
    except KeyboardInterrupt:
        ctx.run.fail(name, "interrupted; rerun the same command to resume")
        raise
    finally:
        callers = ctx.callers.pop(name, [])
        for c in callers:
            c.close()
    info.update(ledger)
    tokens, calls, remote = {}, 0, []
    for c in callers:
        tokens[c.role] = dict(c.tokens)
        calls += c.new_calls
        if c.remote:
            remote.append(remote_estimate(ctx.cfg.emissions, c.tokens["prompt"] + c.tokens["completion"]))
    info.update(tokens=tokens, model_calls=calls)
    if remote:
        info["remote_energy"] = remote
    ctx.run.finish(name, **info)
    return ctx.run.stage(name)


# --- stages -------------------------------------------------------------------------------------
def stage_principles(ctx: Context) -> list[dict]:
    from psilm.stages import principles as P

    cfg, out = ctx.cfg, "principles.json"
    settings = cfg.principles
    parts: dict[str, Any] = {
        "settings": settings.model_dump(mode="json"),
        "task": cfg.task.model_dump(mode="json"),
        "seeds": ctx.seeds_hash,
        "seed": cfg.seed,
    }
    if settings.file is not None:
        parts["file"] = file_hash(settings.file)
    else:
        parts["teacher"] = _model_key(cfg.models.teacher)
        if "error" in settings.levels:
            parts["student"] = _model_key(cfg.models.student)

    st = ctx.run.manifest["stages"].get("principles", {})
    path = ctx.run.path(out)
    if (
        path.exists()
        and st.get("output_hash")
        and file_hash(path) != st["output_hash"]
        and st.get("key") == fingerprint(parts)
    ):
        ctx.log("[keep] principles: principles.json was edited by hand; using it as is")
        st["edited"] = True
        st["output_hash"] = file_hash(path)
        ctx.run.save_manifest()
        return read_json(path)["principles"]

    def work(mode: str) -> dict:
        if settings.file is not None:
            result = P.load_principles_file(settings.file, ctx.task)
        else:
            teacher = ctx.caller("teacher", "principles", cfg.models.teacher)
            student = None
            if "error" in settings.levels:
                student = ctx.caller("student", "principles", cfg.models.student)
            result = P.write_principles(ctx.task, ctx.seeds, teacher, settings, cfg.seed, student=student)
        atomic_write_json(path, result)
        levels = {}
        for p in result["principles"]:
            levels[p["level"]] = levels.get(p["level"], 0) + 1
        return {
            "n_principles": len(result["principles"]),
            "per_level": levels,
            "source": "file" if settings.file else "teacher",
            "output_hash": file_hash(path),
        }

    run_stage(ctx, "principles", parts, [out], work)
    return read_json(path)["principles"]


def stage_generate(ctx: Context, arm: str) -> None:
    from psilm.stages import generate as G

    cfg = ctx.cfg
    mode = DATA_ARMS[arm]
    settings = cfg.generate.model_copy(update={"mode": mode})
    generator = cfg.models.teacher if arm == "teacher" else cfg.models.generator
    principles: list[dict] = []
    parts: dict[str, Any] = {
        "settings": settings.model_dump(mode="json"),
        "generator": _model_key(generator),
        "task": cfg.task.model_dump(mode="json"),
        "seeds": ctx.seeds_hash,
        "seed": cfg.seed,
    }
    if mode == "psi":
        principles = stage_principles(ctx)
        parts["principles"] = file_hash(ctx.run.path("principles.json"))
    name, out = f"generate/{arm}", f"{arm_dir(arm)}candidates.jsonl"

    def work(run_mode: str) -> dict:
        caller = ctx.caller("generator" if arm != "teacher" else "teacher", name, generator)
        records, stats = G.generate_instances(ctx.task, ctx.seeds, principles, caller, settings, cfg.seed)
        write_jsonl(ctx.run.path(out), records)
        return {"n_candidates": len(records), **{k: v for k, v in stats.items() if k != "tokens"}}

    run_stage(ctx, name, parts, [out], work)


def stage_filter(ctx: Context, arm: str) -> None:
    from psilm.stages import filter as F

    cfg, d = ctx.cfg, arm_dir(arm)
    cand = f"{d}candidates.jsonl"
    parts = {
        "settings": cfg.filter.model_dump(mode="json"),
        "candidates": file_hash(ctx.run.path(cand)),
        "seeds": ctx.seeds_hash,
        "test": ctx.test_hash,
    }
    outputs = [f"{d}train.jsonl", f"{d}filter_report.json"]

    def work(mode: str) -> dict:
        candidates = _read_records(ctx, cand)
        kept, report = F.filter_instances(ctx.task, candidates, ctx.seeds, ctx.test, cfg.filter)
        write_jsonl(ctx.run.path(outputs[0]), kept)
        atomic_write_json(ctx.run.path(outputs[1]), report)
        if report.get("warning"):
            ctx.log(f"WARNING ({arm}): {report['warning']}")
        return {
            "n_in": report["n_in"],
            "n_kept": report["n_kept"],
            "dropped": report["dropped"],
            "warning": report.get("warning"),
        }

    run_stage(ctx, f"filter/{arm}", parts, outputs, work)


def training_examples(ctx: Context, arm: str) -> list[Example]:
    """What an arm trains on; data arms are cut to one common size so arms compare fairly."""
    cfg = ctx.cfg
    if arm == "seed_only":
        return list(ctx.seeds)
    n = equal_count(ctx)
    if arm == "human":
        if cfg.data.train is None:
            raise DataError("the human arm needs data.train (a pool of real labelled rows)")
        seed_inputs = {s.input for s in ctx.seeds}
        test_inputs = {t.input for t in ctx.test or []}
        pool = [
            e
            for e in data_mod.load_examples(ctx.task, cfg.data.train)
            if e.input not in seed_inputs and e.input not in test_inputs
        ]
        rows = random.Random(cfg.seed).sample(pool, min(n, len(pool)))
    else:
        recs = _read_records(ctx, f"{arm_dir(arm)}train.jsonl")
        rows = [Example(r["input"], r["output"], r["answer"], r.get("category")) for r in recs[:n]]
    if cfg.train.include_seeds:
        rows = list(ctx.seeds) + rows
    return rows


def equal_count(ctx: Context) -> int:
    """The smallest kept count over the data arms of this run (or generate.n without any)."""
    counts = [len(_read_records(ctx, f"{arm_dir(a)}train.jsonl")) for a in ctx.cfg.arms if a in DATA_ARMS]
    return min(counts) if counts else ctx.cfg.generate.n


def _read_records(ctx: Context, rel: str) -> list[dict]:
    path = ctx.run.path(rel)
    if not path.exists():
        raise DataError(f"{path}: missing; run the stages before it first (psilm run)")
    return [obj for _, obj in iter_jsonl(path)]


def stage_train(ctx: Context, arm: str) -> None:
    from psilm.stages import train as T

    cfg = ctx.cfg
    examples = training_examples(ctx, arm)
    model_dir = f"{arm_dir(arm)}model"
    parts = {
        "settings": cfg.train.model_dump(mode="json"),
        "student": _model_key(cfg.models.student),
        "data": fingerprint([e.to_dict() for e in examples]),
        "seed": cfg.seed,
    }

    def work(mode: str) -> dict:
        target = ctx.run.path(model_dir)
        stats = T.train_model(ctx.task, examples, cfg.models.student, cfg.train, target, cfg.seed)
        return {"n_train": len(examples), **stats}

    run_stage(ctx, f"train/{arm}", parts, [f"{model_dir}/merged/config.json"], work)


def stage_evaluate(ctx: Context, arm: str) -> dict | None:
    from psilm.stages import evaluate as E

    cfg = ctx.cfg
    if ctx.test is None:
        return None
    if arm == "zero_shot":
        model, model_hash = cfg.models.student.model, fingerprint(_model_key(cfg.models.student))
    else:
        model = str(ctx.run.path(arm_dir(arm), "model", "merged"))
        model_hash = ctx.run.stage(f"train/{arm}").get("key")
    out = f"arms/{arm}/metrics.json"  # every arm's scores side by side, psi's too
    parts = {"settings": cfg.evaluate.model_dump(mode="json"), "model": model_hash, "test": ctx.test_hash}

    def work(mode: str) -> dict:
        res = E.evaluate_model(ctx.task, model, ctx.test, cfg.evaluate, device=cfg.models.student.device)
        atomic_write_json(ctx.run.path(out), res)
        return {"accuracy": res["accuracy"], "n": res["n"]}

    run_stage(ctx, f"evaluate/{arm}", parts, [out], work)
    return read_json(ctx.run.path(out))


# --- the whole run ------------------------------------------------------------------------------
def run_all(ctx: Context) -> dict:
    """Every arm's data first (so equal counts are known), then training, then evaluation."""
    arms = ctx.cfg.arms
    for arm in arms:
        if arm in DATA_ARMS:
            stage_generate(ctx, arm)
            stage_filter(ctx, arm)
    for arm in arms:
        if arm in TRAINED_ARMS:
            stage_train(ctx, arm)
    results = {}
    for arm in arms:
        res = stage_evaluate(ctx, arm)
        if res is not None:
            results[arm] = {k: v for k, v in res.items() if k != "predictions"}
    metrics = {
        "task": ctx.task.name,
        "arms": results,
        "n_test": len(ctx.test or []),
        "train_count": equal_count(ctx) if any(a in DATA_ARMS or a == "human" for a in arms) else None,
    }
    if results:
        atomic_write_json(ctx.run.path("metrics.json"), metrics)
    return metrics
