"""The judge of a self-evolution round: round r's errors on the judge slice, and the mix they make.

Round r's student (or, with `judge: seeds_cv`, a student per fold of the seeds, each trained as
round r's was without its fold) answers the judge slice; judge_errors turns its answers into the
accuracy, the error rate per category, the mistakes and the new rows' category weights (error_mix:
the error shares, blended with the original shares by mix_blend, the categories already right held
with mix_hold_right). Which judge was used, and how many labelled rows beyond the seeds it read, is
part of every result. Plain functions of data: rounds.py runs them over the run folder.
"""

from __future__ import annotations

import random
from typing import Any

from psilm.data import without
from psilm.stages.evolve import EvolveSettings
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
