"""The judge of a self-evolution round: round r's errors on the judge slice, and the mix they make.

Round r's student (or, with `judge: seeds_cv`, a student per fold of the seeds, each trained as
round r's was without its fold) answers the judge slice; judge_errors turns its answers into the
accuracy, the error rate per category, the mistakes and the new rows' category weights (error_mix:
the error shares, blended with the original shares by mix_blend, the categories already right held
with mix_hold_right). Which judge was used, and how many labelled rows beyond the seeds it read, is
part of every result. The Judge stage (below) runs them as a step.
"""

from __future__ import annotations

import random
import shutil
from typing import Any

from psilm import arms
from psilm.data import load_examples, without
from psilm.durable import fingerprint, is_main_process
from psilm.errors import DataError
from psilm.numbers import percent
from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.stages.evaluate import predict_examples
from psilm.stages.rounds.settings import EvolveSettings
from psilm.stages.train import rows_of, train_model
from psilm.tasks import Example, Task

# --- judging --------------------------------------------------------------------------------
JUDGE_LINES = {
    "dev": "judge: dev ({n} labelled rows beyond the seeds)",
    "seeds": "judge: seeds (no labelled rows beyond the seeds; the student trained on them)",
    "seeds_cv": "judge: seeds_cv ({folds} folds; no labelled rows beyond the seeds)",
}
# judge seeds_cv where round r's student never trained on the seeds (train.include_seeds false)
UNSEEN_SEEDS = (
    "judge: seeds_cv (no folds: the student did not train on the seeds; no labelled rows beyond the seeds)"
)
JUDGE_NOTES = {
    "dev": "judged on dev rows of data.train the student never trained on",
    "seeds": "judged on the seeds, which the student trained on: its errors there understate its errors",
    "seeds_cv": "each seed judged by a student trained as this round's was, without that seed's fold",
}


def judge_errors(
    task: Task,
    examples: list[Example],
    preds: list[str | None],
    s: EvolveSettings,
    on: str,
    original: dict[str, float] | None = None,
    folds: int | None = None,
) -> dict[str, Any]:
    """The student's answers on the judge slice -> accuracy, error per category, mistakes, weights.

    Categories are the gold labels (tasks with fixed categories); other tasks get no weights.
    `original`: generate's category weights (None: even), which mix_blend and mix_hold_right read.
    """
    per: dict[str, dict[str, int]] = {}
    mistakes = []
    for i, (ex, pred) in enumerate(zip(examples, preds, strict=True)):
        ok = task.score(pred, ex.answer) >= 1.0
        cat = str(ex.answer if task.labels else ex.category)
        row = per.setdefault(cat, {"n": 0, "errors": 0})
        row["n"] += 1
        row["errors"] += not ok
        if not ok:
            mistakes.append({"row": i, "input": ex.input, "gold": ex.answer, "output": ex.output,
                             "predicted": pred, "category": cat if task.labels else None})  # fmt: skip
    for row in per.values():
        row["error_rate"] = round(row["errors"] / row["n"], 4)
    n = len(examples)
    fixed = task.fixed_categories()
    mix = None
    if s.error_mix and fixed is not None:
        mix = error_mix(per, len(mistakes) / n if n else 0.5, list(fixed), original, s)
    weights = mix.pop("weights") if mix else None
    return {
        "on": on,
        "judge": UNSEEN_SEEDS if on == "seeds_cv" and not folds else JUDGE_LINES[on].format(n=n, folds=folds),
        "labelled_rows": n if on == "dev" else 0,  # labelled rows read beyond the seeds
        "n": n,
        **({"folds": folds} if folds else {}),
        "accuracy": round(1 - len(mistakes) / n, 4) if n else None,
        "per_category": per,
        "category_weights": weights,
        **({"mix": mix} if mix else {}),  # how a blended mix was made (mix_blend, mix_hold_right)
        "mistakes": mistakes,
        "note": JUDGE_NOTES[on],
    }


def error_mix(
    per: dict[str, dict[str, int]],
    overall: float,
    cats: list[str],
    original: dict[str, float] | None,
    s: EvolveSettings,
) -> dict[str, Any] | None:
    """{'weights': the new rows' category weights, and how they were made} from the judged errors.

    Each category's error rate is shrunk toward the slice's (`overall`) by mix_prior_rows pseudo-rows
    (a category the slice lacks gets the overall rate, one judged on a row or two stays near it), plus
    mix_floor. With mix_blend 1 and no hold those are the weights (the mix measured so far); else the
    shares are (1 - b) * original + b * error, and with mix_hold_right a category at or above the
    slice's accuracy keeps its original share while the others share the rest in proportion.
    """
    k = s.mix_prior_rows

    def shrunk(c: str) -> float:
        row = per.get(c, {"n": 0, "errors": 0})
        return (row["errors"] + k * overall) / (row["n"] + k) if row["n"] + k else overall

    rates = {c: shrunk(c) for c in cats}
    weights = {c: round(rates[c] + s.mix_floor, 4) for c in cats}
    if s.mix_blend == 1 and not s.mix_hold_right:
        return {"weights": weights} if sum(weights.values()) > 0 else None  # none: draw evenly
    given = original or dict.fromkeys(cats, 1.0)  # generate.category_weights; unset: even
    orig = _shares({c: float(given.get(c, 0.0)) for c in cats})
    error = _shares(weights) if sum(weights.values()) > 0 else dict(orig)
    b = s.mix_blend
    blend = {c: (1 - b) * orig[c] + b * error[c] for c in cats}
    held: list[str] = []
    if s.mix_hold_right:
        held = [c for c in cats if rates[c] <= overall + 1e-9]  # at least the slice's accuracy
        rest = [c for c in cats if c not in held]
        room, wanted = sum(orig[c] for c in rest), sum(blend[c] for c in rest)
        blend = {c: orig[c] if c in held else (blend[c] * room / wanted if wanted else 0.0) for c in cats}
    return {
        "weights": {c: round(v, 4) for c, v in blend.items()},
        "original": {c: round(v, 4) for c, v in orig.items()},
        "error": {c: round(v, 4) for c, v in error.items()},
        "blend": b,
        "held": held,
    }


def _shares(weights: dict[str, float]) -> dict[str, float]:
    """Weights -> shares summing to 1 (all zero: even)."""
    total = sum(weights.values())
    return {c: w / total if total > 0 else 1 / len(weights) for c, w in weights.items()}


# --- judging on the seeds without labels beyond them (judge: seeds_cv) ------------------------
def seed_folds(seeds: list[Example], k: int, seed: int) -> list[list[int]]:
    """min(k, len(seeds)) folds of seed indices; each label's seeds (shuffled by `seed`) are dealt
    over the folds in turn, continuing from where the label before stopped, so folds stay even."""
    k = min(k, len(seeds))
    by_label: dict[str, list[int]] = {}
    for i, ex in enumerate(seeds):
        by_label.setdefault(str(ex.answer), []).append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    rng = random.Random(f"{seed}:cv")
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        for i in idx:
            folds[turn % k].append(i)
            turn += 1
    return [sorted(f) for f in folds]


def fold_training(train: list[Example], held: list[Example]) -> list[Example]:
    """What a fold's student trains on: the round's training rows less the held-out seeds (and any
    row with a held-out seed's input, case and spacing ignored)."""
    return without(train, held)


# --- the step -------------------------------------------------------------------------------------
def judge_slice(io: StepIO) -> tuple[str, list[Example]]:
    """('dev', n_dev rows of data.train less seeds and test rows), or ('seeds' / 'seeds_cv', the seeds).
    auto: seeds_cv where there are two seeds or more (no labelled rows beyond them), else seeds."""
    e = io.cfg.evolve
    on = e.judge if e.judge != "auto" else ("seeds_cv" if len(io.seeds) >= 2 else "seeds")
    if on != "dev":
        return on, list(io.seeds)
    pool = arms.human_pool(load_examples(io.task, io.cfg.data.train), io.seeds, io.test or [])
    if not pool:
        raise DataError(
            f"{io.cfg.data.train}: no rows left for evolve's dev slice after the seeds and test rows"
        )
    return on, random.Random(f"{io.cfg.seed}:dev").sample(pool, min(e.n_dev, len(pool)))


class Judge(Stage):
    """The previous round's student answers the judge slice: its errors per category and mistakes.
    judge seeds_cv: the seeds, each answered by a student trained as the previous round's was but
    without that seed's fold (where the previous round trained on the seeds at all)."""

    name = "judge"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.round > 1 and arm.generated

    def reads(self, cfg, arm) -> list[Input]:
        # fold students (judge seeds_cv) train on the previous round's rows
        return [Input("seeds", of_run=True), Input("model", arm.previous), Input("rows", arm.previous)]

    def writes(self, cfg, arm) -> list[str]:
        return ["judge", "judge_folds"]  # judge_folds: each fold's answers (empty without folds)

    def workload(self, cfg, arm):
        return model_label(cfg.models.student), cfg.data.n_seeds, "seeds judged"

    def key(self, io: StepIO) -> dict[str, Any]:
        e = io.cfg.evolve
        _, rows = judge_slice(io)
        cfg = io.cfg
        # what the judge and the mix read (not the round's check, soup or principles)
        used = {"judge", "n_dev", "cv_folds", "error_mix", "mix_floor", "mix_prior_rows", "mix_blend",
                "mix_hold_right"}  # fmt: skip
        key = {
            "settings": e.model_dump(mode="json", include=used),
            "rows": fingerprint([x.to_dict() for x in rows]),
            "original": io.category_weights,
            "evaluate": cfg.evaluate.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json"),
        }
        return key

    def check(self, io: StepIO) -> None:
        if not self.folded(io):  # fold students train from the base student, not this one
            io.read("model", io.arm.previous)

    def folded(self, io: StepIO) -> bool:
        """Fold students answer the seeds (judge seeds_cv), where the student trained on them."""
        return judge_slice(io)[0] == "seeds_cv" and io.cfg.train.include_seeds

    def run(self, io: StepIO) -> dict[str, Any]:

        cfg, e, arm, st = io.cfg, io.cfg.evolve, io.arm, io.cfg.models.student
        on, rows = judge_slice(io)
        folded = self.folded(io)
        model = io.read("model", arm.previous) if not folded else None
        if folded:
            preds, tokens, folds = _fold_predictions(io, rows)
        else:
            io.write("judge_folds", [])
            bar = io.bar(f"judge/{arm.name}")
            advance = bar(len(rows)) if bar is not None else None
            p = predict_examples(io.task, model, rows, cfg.evaluate, st.device, advance, st.dtype)
            preds, tokens, folds = p.preds, p.tokens, None
        res = judge_errors(io.task, rows, preds, e, on, io.category_weights, folds)
        io.write("judge", {"model": model or f"{cfg.evolve.cv_folds} fold students", **res})
        io.log(f"[judge/{arm.name}] {arm.previous} on {res['n']} {on} rows: accuracy "
               f"{percent(res['accuracy'])}; {res['judge']}")  # fmt: skip
        keys = ("on", "judge", "labelled_rows", "n", "accuracy", "category_weights")
        return {**{k: res[k] for k in keys}, "student_tokens": tokens}


def _fold_predictions(io: StepIO, seeds: list[Example]) -> tuple[list[str | None], dict[str, int], int]:
    """(answer per seed, student tokens with the folds' trained ones, folds): cv_folds students, each
    trained as the previous round's student was less one fold of the seeds, each answering that fold.
    A fold's answers are appended to judge_folds.jsonl once given, so a killed judge resumes at the
    next fold; its student is removed once it has answered."""

    cfg, st, arm = io.cfg, io.cfg.models.student, io.arm
    trained_on = rows_of(io, arm.previous)
    folds = seed_folds(seeds, cfg.evolve.cv_folds, cfg.seed)
    log = io.journal("judge_folds", ("fold", "held", "preds", "tokens"))
    done = {r["fold"]: r for r in log.records}  # the key covers the seeds and cv_folds: same folds
    preds: list[str | None] = [None] * len(seeds)
    tokens = {"prompt": 0, "completion": 0, "trained": 0}
    main = is_main_process()  # under torchrun every rank trains; only rank 0 touches the files
    for i, held in enumerate(folds):
        if i not in done:
            held_rows = [seeds[j] for j in held]
            examples = fold_training(trained_on, held_rows)
            # each key its own folder: the per-process model cache is keyed by path
            target = io.scratch(f"judge_fold{i}-{io.key[:8]}")
            label = f"judge/{arm.name} fold {i + 1}/{len(folds)}"
            if main:
                shutil.rmtree(target, ignore_errors=True)  # what a killed fold left
            try:
                stats = train_model(io.task, examples, st, cfg.train, target, cfg.seed, io.bar(label))
                bar = io.bar(label)
                advance = bar(len(held_rows)) if bar is not None else None
                p = predict_examples(io.task, str(target / "merged"), held_rows, cfg.evaluate, st.device,
                                     advance, st.dtype)  # fmt: skip
            finally:
                if main:
                    shutil.rmtree(target, ignore_errors=True)
            done[i] = {"fold": i, "held": held, "n_train": stats["n_train"], "preds": p.preds,
                       "tokens": {**p.tokens, "trained": stats["train_tokens"]}}  # fmt: skip
            log.append(done[i])
        for j, pred in zip(done[i]["held"], done[i]["preds"], strict=True):
            preds[j] = pred
        for k, v in done[i]["tokens"].items():
            tokens[k] = tokens.get(k, 0) + int(v or 0)
    return preds, tokens, len(folds)
