"""Self-evolution rounds (evolve.rounds; docs/evolve.md): the steps only a round arm has.

A round arm (psi_round2, direct_round2, ...) builds on the round before's trained student: the
student answers a judge slice (its errors per category and its mistakes), psi rounds add a
principle per mistake, the generate step draws new rows by those errors, the filters run as for any
arm, and the student checks the new rows before they join what the round before trained on. Then it
is trained and evaluated like any other arm. The plan (plan.py) puts judge and round principles
before the round's generate step and check after its filter; each function here returns a Job
(context.py) as steps.py's do, and their policies are plain functions in stages/evolve.py.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from functools import partial
from typing import Any

from psilm import arms
from psilm import data as data_mod
from psilm.context import Context, Job, equal_count, model_key, per_level
from psilm.durable import (
    JsonlLog,
    atomic_write_json,
    file_hash,
    fingerprint,
    is_main_process,
    write_jsonl,
)
from psilm.errors import DataError
from psilm.steps import previous_student, training_examples
from psilm.tasks import Example


def _rows_bar(ctx: Context, label: str, n: int) -> Callable[[int], None] | None:
    """A progress bar over n rows: advance(k) per batch (predict_examples' on_progress), or None."""
    bar = ctx.bar(label)
    return bar(n) if bar is not None else None


def judge_slice(ctx: Context) -> tuple[str, list[Example]]:
    """('dev', n_dev rows of data.train less seeds and test rows), or ('seeds' / 'seeds_cv', the seeds).
    auto: seeds_cv where there are two seeds or more (no labelled rows beyond them), else seeds."""
    e = ctx.cfg.evolve
    on = e.judge if e.judge != "auto" else ("seeds_cv" if len(ctx.seeds) >= 2 else "seeds")
    if on != "dev":
        return on, list(ctx.seeds)
    pool = arms.human_pool(data_mod.load_examples(ctx.task, ctx.cfg.data.train), ctx.seeds, ctx.test or [])
    if not pool:
        raise DataError(
            f"{ctx.cfg.data.train}: no rows left for evolve's dev slice after the seeds and test rows"
        )
    rows = random.Random(f"{ctx.cfg.seed}:dev").sample(pool, min(e.n_dev, len(pool)))
    return on, rows


def judge_job(ctx: Context, arm: str) -> Job:
    """The previous round's student answers the judge slice: its errors per category and mistakes.

    judge seeds_cv: the seeds, each answered by a student trained as the previous round's was but
    without that seed's fold (where the previous round trained on the seeds at all)."""
    from psilm.stages import evaluate as E
    from psilm.stages.evolve import mix_shaped
    from psilm.stages.judge import judge_errors

    cfg, e = ctx.cfg, ctx.cfg.evolve
    model, model_key = previous_student(ctx, arm)
    on, rows = judge_slice(ctx)
    out = ctx.run.judge(arm)
    used = {"judge", "n_dev", "error_mix", "mix_floor", "mix_prior_rows"}
    if on == "seeds_cv":
        used.add("cv_folds")
    parts = {
        "settings": {**e.model_dump(mode="json", include=used), **mix_shaped(e)},
        "model": model_key,
        "rows": fingerprint([x.to_dict() for x in rows]),
        "evaluate": cfg.evaluate.model_dump(mode="json"),
    }
    if mix_shaped(e):  # a blended mix reads generate's category weights
        parts["original"] = ctx.category_weights
    folded = on == "seeds_cv" and cfg.train.include_seeds  # else the student never trained on the seeds
    outputs = [out, ctx.run.judge_folds(arm)] if folded else [out]

    def work(mode: str) -> dict:
        st = cfg.models.student
        if folded:
            preds, tokens, folds = _fold_predictions(ctx, arm, rows, fingerprint(parts)[:8])
        else:
            advance = _rows_bar(ctx, f"judge/{arm}", len(rows))
            p = E.predict_examples(ctx.task, model, rows, cfg.evaluate, st.device, advance, st.dtype)
            preds, tokens, folds = p.preds, p.tokens, None
        res = judge_errors(ctx.task, rows, preds, e, on, ctx.category_weights, folds)
        atomic_write_json(out, {"model": model, **res})
        ctx.log(f"[judge/{arm}] {arms.ARMS[arm].previous} on {res['n']} {on} rows: accuracy "
                f"{res['accuracy']:.1%}; {res['judge']}")  # fmt: skip
        keys = ("on", "judge", "labelled_rows", "n", "accuracy", "category_weights")
        return {**{k: res[k] for k in keys}, "student_tokens": tokens}

    # the fold students train from the base student: only an unfolded judge loads the previous one
    check = None if folded else partial(ctx.run.trained_model, arms.ARMS[arm].previous)
    return Job(f"judge/{arm}", parts, outputs, work, check)


def _fold_predictions(
    ctx: Context, arm: str, seeds: list[Example], tag: str
) -> tuple[list[str | None], dict[str, int], int]:
    """(answer per seed, student tokens with the folds' trained ones, folds): cv_folds students, each
    trained as the previous round's student was less one fold of the seeds, each answering that fold.
    A fold's answers are appended to judge_folds.jsonl once given, so a killed judge resumes at the
    next fold; its student is removed once it has answered."""
    from psilm.stages import evaluate as E
    from psilm.stages import train as T
    from psilm.stages.judge import fold_training, seed_folds

    cfg, st = ctx.cfg, ctx.cfg.models.student
    trained_on = training_examples(ctx, arms.ARMS[arm].previous)
    folds = seed_folds(seeds, cfg.evolve.cv_folds, cfg.seed)
    log = JsonlLog(ctx.run.judge_folds(arm), needs=("fold", "held", "preds", "tokens"))
    done = {r["fold"]: r for r in log.records}  # the key covers the seeds and cv_folds: same folds
    preds: list[str | None] = [None] * len(seeds)
    tokens = {"prompt": 0, "completion": 0, "trained": 0}
    main = is_main_process()  # under torchrun every rank trains; only rank 0 touches the files
    for i, held in enumerate(folds):
        if i not in done:
            held_rows = [seeds[j] for j in held]
            examples = fold_training(trained_on, held_rows)
            target, label = ctx.run.fold_model(arm, i, tag), f"judge/{arm} fold {i + 1}/{len(folds)}"
            if main:
                shutil.rmtree(target, ignore_errors=True)  # what a killed fold left
            try:
                stats = T.train_model(ctx.task, examples, st, cfg.train, target, cfg.seed, ctx.bar(label))
                bar, merged = _rows_bar(ctx, label, len(held_rows)), str(target / "merged")
                p = E.predict_examples(ctx.task, merged, held_rows, cfg.evaluate, st.device, bar, st.dtype)
            finally:
                if main:
                    shutil.rmtree(target, ignore_errors=True)
            trained = stats["train_tokens"]
            done[i] = {"fold": i, "held": held, "n_train": stats["n_train"], "preds": p.preds,
                       "tokens": {**p.tokens, "trained": trained}}  # fmt: skip
            log.append(done[i])
        for j, pred in zip(done[i]["held"], done[i]["preds"], strict=True):
            preds[j] = pred
        for k, v in done[i]["tokens"].items():
            tokens[k] = tokens.get(k, 0) + int(v or 0)
    return preds, tokens, len(folds)


def round_principles_job(ctx: Context, arm: str) -> Job:
    """psi rounds: the previous round's principles plus one per mistake (teacher) or a person's file."""
    from psilm.stages import evolve as V
    from psilm.stages.principle_prompts import PROMPTS_VERSION
    from psilm.stages.principles_file import load_principles_file

    cfg, e, spec = ctx.cfg, ctx.cfg.evolve, arms.ARMS[arm]
    prev_path = ctx.run.principles if spec.round == 2 else ctx.run.arm_principles(spec.previous)
    if not prev_path.exists():
        before = "principles" if spec.round == 2 else f"principles/{spec.previous}"
        raise DataError(f"{prev_path}: missing; run {before} first (psilm run)")
    out = ctx.run.arm_principles(arm)
    parts: dict[str, Any] = {"previous": file_hash(prev_path), "how": e.error_principles, "seed": cfg.seed}
    if e.error_principles == "teacher":
        used = {"max_mistakes", "max_tokens", "min_chars", "max_chars", "temperature", "seeds_shown"}
        parts.update(
            judge=file_hash(ctx.run.judge(arm)),
            teacher=model_key(cfg.models.teacher),
            principles=cfg.principles.model_dump(mode="json", include=used),
            prompts=PROMPTS_VERSION,
            seeds=ctx.seeds_hash,
        )
    elif e.error_principles == "file":
        parts["file"] = file_hash(e.principles_file)

    before = ctx.run.read(prev_path)["principles"]  # both read (checked) before the step starts
    mistakes = ctx.run.read(ctx.run.judge(arm))["mistakes"] if e.error_principles == "teacher" else []

    def work(mode: str) -> dict:
        added: list[dict] = []
        info: dict[str, Any] = {}
        if e.error_principles == "teacher":
            teacher = ctx.caller("teacher", f"principles/{arm}", cfg.models.teacher)
            p = cfg.principles
            added, info = V.mistake_principles(
                ctx.task, mistakes, teacher, ctx.seeds, p, cfg.seed, spec.round
            )
        elif e.error_principles == "file":
            added = V.file_principles(load_principles_file(e.principles_file, ctx.task), spec.round)
        atomic_write_json(out, {"principles": before + added, "added": [p["id"] for p in added], **info})
        return {"n_principles": len(before) + len(added), "per_level": per_level(before + added),
                "n_added": len(added), "source": e.error_principles}  # fmt: skip

    return Job(f"principles/{arm}", parts, [out], work)


def check_job(ctx: Context, arm: str) -> Job:
    """The previous round's student checks this round's new rows; train.jsonl = old rows + kept new."""
    from psilm.stages import evaluate as E
    from psilm.stages import evolve as V

    cfg, e, spec = ctx.cfg, ctx.cfg.evolve, arms.ARMS[arm]
    model, model_key = previous_student(ctx, arm)
    new_path = ctx.run.new_rows(arm)
    if not new_path.exists():
        raise DataError(f"{new_path}: missing; run `psilm run` (generate and filter {arm} first)")
    previous = ctx.run.records(ctx.run.kept(spec.previous))[: equal_count(ctx, spec.round - 1)]
    rows = ctx.run.records(new_path)
    parts = {
        "settings": e.model_dump(mode="json", include={"check", "relabel_min_prob"}),
        "model": model_key,
        "new": file_hash(new_path),
        "previous": fingerprint(previous),
        "filter": cfg.filter.model_dump(mode="json"),
        "evaluate": cfg.evaluate.model_dump(mode="json"),
        "seed": cfg.seed,
    }
    outputs = [ctx.run.kept(arm), ctx.run.check_report(arm)]

    def work(mode: str) -> dict:
        preds: list = [None] * len(rows)
        scores, tokens = None, {"prompt": 0, "completion": 0}
        if rows:  # scored under every policy, `none` included, so each one's agreement is measured
            st = cfg.models.student
            examples = [
                Example(r["input"], str(r["output"]), str(r["answer"]), r.get("category")) for r in rows
            ]
            advance = _rows_bar(ctx, f"check/{arm}", len(examples))
            p = E.predict_examples(ctx.task, model, examples, cfg.evaluate, st.device, advance, st.dtype)
            preds, scores, tokens = p.preds, p.scores, p.tokens
        kept, report = V.check_rows(ctx.task, rows, preds, scores, e, cfg.seed)
        merged, dup = V.merge_rows(previous, kept, cfg.filter)
        report.update(n_previous=len(previous), duplicate_of_previous=dup, n_train=len(merged))
        write_jsonl(outputs[0], merged)
        atomic_write_json(outputs[1], report)
        keys = ("policy", "n_in", "n_kept", "agree", "n_previous", "duplicate_of_previous", "n_train")
        return {**{k: report[k] for k in keys}, "student_tokens": tokens}

    return Job(f"check/{arm}", parts, outputs, work, partial(ctx.run.trained_model, spec.previous))
