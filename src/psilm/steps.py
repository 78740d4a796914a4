"""The steps every run has: principles, generate, filter, train, evaluate (rounds.py: the rest).

Each function reads its inputs from the run folder and returns a Job (context.py): the parts of
its key, its outputs and its work, which calls the stage module (stages/) on plain data and writes
what it returns. A missing input is a DataError naming the step to run first; no step runs
another. A key hashes the step's settings and its inputs' hashes (not batch sizes or verbosity):
keep its parts as they are, or every run folder made before would redo the step.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

from psilm import arms
from psilm import data as data_mod
from psilm.context import Context, Job, equal_count, model_key, per_level, settings_key
from psilm.durable import atomic_write_json, file_hash, fingerprint, is_main_process, write_jsonl
from psilm.errors import ConfigError, DataError
from psilm.tasks import Example


def principles_job(ctx: Context) -> Job:
    """principles.json: the teacher's principles (error level: with the student's mistakes), or a file's."""
    from psilm.stages import principles as P
    from psilm.stages.principle_prompts import PROMPTS_VERSION
    from psilm.stages.principles_file import load_principles_file

    cfg, path = ctx.cfg, ctx.run.principles
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
        parts["teacher"] = model_key(cfg.models.teacher)
        parts["prompts"] = PROMPTS_VERSION
        if "error" in settings.levels:
            parts["student"] = model_key(cfg.models.student)

    def work(mode: str) -> dict:
        if settings.file is not None:
            result = load_principles_file(settings.file, ctx.task, settings.levels)
        else:
            teacher = ctx.caller("teacher", "principles", cfg.models.teacher)
            student = None
            if "error" in settings.levels:
                student = student_answers(ctx, settings)
            result = P.write_principles(ctx.task, ctx.seeds, teacher, settings, cfg.seed, student=student)
        atomic_write_json(path, result)
        for note in result.get("notes") or []:
            if note != result.get("warning"):
                ctx.log(f"[principles] {note}")
        if result.get("warning"):  # a weak teacher, a label left short: the console, manifest, report
            ctx.log(f"WARNING (principles): {result['warning']}")
        return {
            "n_principles": len(result["principles"]),
            "per_level": per_level(result["principles"]),
            "source": "file" if settings.file else "teacher",
            "output_hash": file_hash(path),  # a later hand edit is kept (run_stage), not overwritten
            "warning": result.get("warning"),
            **({"coverage": result["coverage"]} if result.get("coverage") else {}),
        }

    return Job("principles", parts, [path], work)


def student_answers(ctx: Context, settings):
    """The untrained student's answers to the seeds as evaluation reads them: the likeliest
    option where the task has options (a 135M model's generated label is often unreadable),
    else its greedy generation."""
    from psilm.stages import evaluate as E
    from psilm.stages import principles as P

    task, student = ctx.task, ctx.cfg.models.student
    if not all(task.answer_options(x) for x in ctx.seeds):
        return P.generated_answers(task, ctx.caller("student", "principles", student), settings, ctx.cfg.seed)

    def answer(seeds: list[Example]) -> list[tuple[str | None, str]]:
        got = E.predict_examples(
            task, student.model, seeds, ctx.cfg.evaluate, student.device, dtype=student.dtype
        )
        return [(p, str(p)) for p in got.preds]

    return P.StudentAnswers(student.model, answer)


def generate_job(ctx: Context, arm: str) -> Job:
    """arms/<arm>/candidates.jsonl from the principles (psi arms) and, in a round, the judge's mix."""
    from psilm.stages import generate as G
    from psilm.stages.evolve import round_seed

    cfg, spec = ctx.cfg, arms.ARMS[arm]
    settings = cfg.generate.model_copy(update={"category_weights": ctx.category_weights})
    seed = round_seed(cfg.seed, spec.round)
    writer = cfg.models.teacher if spec.writer == "teacher" else cfg.models.generator
    parts: dict[str, Any] = {
        "generator": model_key(writer),
        "task": cfg.task.model_dump(mode="json"),
        "seeds": ctx.seeds_hash,
        "seed": cfg.seed,
    }
    if spec.round > 1:  # the previous round's student chose the mix (judge/<arm>)
        judge_path = _input(ctx.run.judge(arm), f"judge/{arm}")
        parts["judge"] = file_hash(judge_path)
        judge = ctx.run.read(judge_path)
        update: dict[str, Any] = {"n": cfg.evolve.n or cfg.generate.n}
        if judge.get("category_weights"):
            update["category_weights"] = judge["category_weights"]
        settings = settings.model_copy(update=update)
    parts["settings"] = {
        **settings_key(settings, "label_check", False, principle_mix="own_first"),
        "mode": spec.mode,
    }
    principles: list[dict] = []
    if spec.uses_principles:  # round 1's principles, or this round's (principles/<arm>)
        path = ctx.run.principles if spec.round == 1 else ctx.run.arm_principles(arm)
        path = _input(path, "principles" if spec.round == 1 else f"principles/{arm}")
        parts["principles"] = file_hash(path)
        principles = ctx.run.read(path)["principles"]
    name, out = f"generate/{arm}", ctx.run.candidates(arm)

    checker_model = None
    if settings.label_check:  # scores the inputs of every data arm, principles or not
        checker_model = cfg.models.checker or cfg.models.generator  # also for the teacher arm
        parts["checker"] = model_key(checker_model)

    def work(run_mode: str) -> dict:
        caller = ctx.caller(spec.writer, name, writer)
        checker = ctx.caller("checker", name, checker_model) if checker_model is not None else None
        records, stats = G.generate_instances(
            ctx.task, ctx.seeds, principles, caller, settings, seed, spec.mode, checker=checker
        )
        write_jsonl(out, records)
        if stats.get("warning"):
            ctx.log(f"WARNING ({arm}): {stats['warning']}")
        if cfg.generate.category_weights == "train" or spec.round > 1:  # the shares used in this run
            stats["category_weights"] = settings.category_weights
        return {"n_candidates": len(records), **{k: v for k, v in stats.items() if k != "tokens"}}

    return Job(name, parts, [out], work)


def filter_job(ctx: Context, arm: str) -> Job:
    """arms/<arm>/train.jsonl (a round's: new.jsonl) and filter_report.json from the candidates."""
    from psilm.stages import filter as F

    cfg, cand = ctx.cfg, ctx.run.candidates(arm)
    if not cand.exists():
        raise DataError(f"{cand}: missing; run `psilm generate --arm {arm}` first (or psilm run)")
    candidates = ctx.run.records(cand)  # checked before its hash keys the step
    parts = {
        "settings": settings_key(
            cfg.filter, "label_margin", None if cfg.generate.label_check else cfg.filter.label_margin
        ),
        "candidates": file_hash(cand),
        "seeds": ctx.seeds_hash,
        "test": ctx.test_hash,
    }
    rows_out = ctx.run.new_rows(arm) if arms.ARMS[arm].round > 1 else ctx.run.kept(arm)
    outputs = [rows_out, ctx.run.filter_report(arm)]

    def work(mode: str) -> dict:
        kept, report = F.filter_instances(ctx.task, candidates, ctx.seeds, ctx.test, cfg.filter)
        write_jsonl(outputs[0], kept)
        atomic_write_json(outputs[1], report)
        if report.get("warning"):
            ctx.log(f"WARNING ({arm}): {report['warning']}")
        return {
            "n_in": report["n_in"],
            "n_kept": report["n_kept"],
            "dropped": report["dropped"],
            "warning": report.get("warning"),
        }

    return Job(f"filter/{arm}", parts, outputs, work)


def training_examples(ctx: Context, arm: str) -> list[Example]:
    """What an arm trains on (arms.training_examples), read from the run folder."""
    cfg, spec = ctx.cfg, arms.ARMS[arm]
    kept = ctx.run.records(ctx.run.kept(arm)) if spec.generated else None
    pool = None
    if spec.data == "pool" and cfg.data.train is not None:
        pool = arms.human_pool(data_mod.load_examples(ctx.task, cfg.data.train), ctx.seeds, ctx.test or [])
    n = equal_count(ctx, spec.round) if spec.equal_count else 0
    return arms.training_examples(spec, n, ctx.seeds, cfg.train.include_seeds, cfg.seed, kept, pool)


def previous_student(ctx: Context, arm: str) -> tuple[str, str]:
    """(merged model folder, train key) of the round before `arm`'s, which must be trained (its
    files are checked by the step that loads it: Job.check)."""
    prev = arms.ARMS[arm].previous
    st = ctx.run.manifest["stages"].get(f"train/{prev}", {})
    if st.get("status") != "done":
        raise DataError(
            f"{arm} builds on {prev}, which is not trained yet; run `psilm run` (it trains {prev} first)"
        )
    return str(ctx.run.merged_model(prev)), st["key"]


def train_job(ctx: Context, arm: str) -> Job:
    """arms/<arm>/model/: the student fine-tuned on the arm's rows, cut to the round's equal count.
    A round arm with evolve.soup: its merged model then blended with the previous round's student."""
    from psilm.stages import train as T

    cfg = ctx.cfg
    examples = training_examples(ctx, arm)
    parts: dict[str, Any] = {
        "settings": cfg.train.model_dump(mode="json"),
        "student": model_key(cfg.models.student),
        "data": fingerprint([e.to_dict() for e in examples]),
        "seed": cfg.seed,
    }
    soup = cfg.evolve.soup if arms.ARMS[arm].round > 1 else 0.0
    previous = ""
    if soup:
        previous, prev_key = previous_student(ctx, arm)
        parts["soup"] = {"weight": soup, "previous": prev_key}

    # the previous round's student, whose weights the soup blends in
    check = partial(ctx.run.trained_model, arms.ARMS[arm].previous) if soup else None

    def work(mode: str) -> dict:
        # trained into model.partial/ and renamed when whole: model/ is never half-written.
        # Under torchrun / accelerate every rank trains; only rank 0 touches the files.
        target = ctx.run.model(arm)
        partial = target.with_name(f"{target.name}.partial")
        main = is_main_process()
        if main:
            shutil.rmtree(partial, ignore_errors=True)
        try:
            stats = T.train_model(
                ctx.task, examples, cfg.models.student, cfg.train, partial, cfg.seed, ctx.bar(f"train/{arm}")
            )
            if soup and main:  # the adapter describes the round's training alone, not the blend
                n = T.soup_models(partial / "merged", Path(previous), soup)
                stats["soup"] = {"previous": arms.ARMS[arm].previous, "weight": soup, "tensors": n}
                stats["saved"] = [x for x in stats.get("saved", []) if x != "adapter"]
                shutil.rmtree(partial / "adapter", ignore_errors=True)
        except BaseException:
            if main:
                shutil.rmtree(partial, ignore_errors=True)  # gives a full disk its space back
            raise
        if main:
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
            # what predict and evaluate check the folder against before they load it
            files = sorted(f for f in (target / "merged").iterdir() if f.is_file())
            stats["merged_files"] = {f.name: f.stat().st_size for f in files}
        if stats.get("n_too_long"):
            ctx.log(
                f"[train/{arm}] {stats['n_too_long']} of {len(examples)} rows are longer than "
                f"train.max_length={cfg.train.max_length} before their answer: not trained on"
            )
        if soup:
            ctx.log(f"[train/{arm}] its weights blended with {arms.ARMS[arm].previous}'s: "
                    f"{1 - soup:g} of its own, {soup:g} of the previous round's (evolve.soup)")  # fmt: skip
        return stats  # n_train: the rows trained on, n_too_long: those max_length left out

    return Job(f"train/{arm}", parts, [ctx.run.merged_model(arm) / "config.json"], work, check)


def evaluate_job(ctx: Context, arm: str) -> Job:
    """arms/<arm>/metrics.json: the arm's student (trained, or as it is) on the test rows."""
    from psilm.stages import evaluate as E

    cfg = ctx.cfg
    if ctx.test is None:
        raise ConfigError("data.test is not set in this run's config; nothing to evaluate on")
    if not arms.ARMS[arm].trained:
        model, model_hash = cfg.models.student.model, fingerprint(model_key(cfg.models.student))
    else:
        model = str(ctx.run.merged_model(arm))
        if ctx.run.manifest["stages"].get(f"train/{arm}", {}).get("status") != "done":
            raise DataError(f"{model}: not trained yet; run `psilm train --arm {arm}` first (or psilm run)")
        model_hash = ctx.run.stage(f"train/{arm}").get("key")
    out = ctx.run.arm_metrics(arm)
    parts = {"settings": cfg.evaluate.model_dump(mode="json"), "model": model_hash, "test": ctx.test_hash}
    check = partial(ctx.run.trained_model, arm) if arms.ARMS[arm].trained else None

    def work(mode: str) -> dict:
        student = cfg.models.student
        res = E.evaluate_model(
            ctx.task, model, ctx.test, cfg.evaluate, student.device, student.dtype, ctx.bar(f"evaluate/{arm}")
        )
        atomic_write_json(out, res)
        return {"accuracy": res["accuracy"], "n": res["n"]}

    return Job(f"evaluate/{arm}", parts, [out], work, check)


def _input(path: Path, step: str) -> Path:
    """`path`, which the step `step` writes; a DataError naming that step when it is not there."""
    if not path.exists():
        raise DataError(f"{path}: missing; run {step} first (psilm run, or the stage's own command)")
    return path
