"""Self-evolution rounds (evolve.*): what round r's student says about the data of round r+1.

Round 1 is the run as it always was. Round r+1 of a generated arm (psi, direct) starts from round
r's trained student, with no teacher needed for the first two steps:

- errors steer the mix: the student answers a judge slice (a dev slice of data.train it never
  trained on, or the seeds); categories are drawn by its error rate per category (`error_mix`;
  judge.py: the judge and the mix);
- mistakes become principles (psi arms): the teacher writes one principle per mistake, attached to
  the mistake's category, so the generator shows it when it writes that category
  (`error_principles: teacher`), or a person's file is read instead (`file`);
- the student checks the data: it scores every new candidate's label by likelihood and a policy
  keeps, relabels or weights the row (`check`). New candidates were written this round, so the
  student never trained on what it judges;
- the rows kept this round are added to what the previous round trained on (near-duplicates of
  earlier rows dropped) and the student is trained again from the base model.

The stages of a round are judge.py (the student's errors), principles/stage.py's RoundPrinciples
(its mistakes as principles) and check.py (the student checks the new rows); generate, filter,
train and evaluate are every arm's. `agree` is the default check and `relabel` acts only above a
high threshold: a small student's relabelling loses fidelity (docs/defaults.md#evolve).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from psilm.errors import ConfigError
from psilm.settings import Settings
from psilm.tasks import Task

MAX_ROUNDS = 5  # the arms table holds round arms up to this round
CheckPolicy = Literal["none", "agree", "relabel", "weight"]


class EvolveSettings(Settings):
    rounds: int = Field(
        1,
        ge=1,
        le=MAX_ROUNDS,
        description="Rounds per generated arm; 1 = a plain run. K adds <arm>_round2 .. <arm>_roundK "
        "for psi and direct (each listed arm), each built from the previous round's student.",
    )
    n: int | None = Field(None, gt=0, description="New candidates per round; None: generate.n.")
    # --- the student checks the data
    check: CheckPolicy = Field(
        "agree",
        description="What the previous round's student does with each new row, judged by label "
        "likelihood: none (keep all), agree (keep a row only when the student's best label is the "
        "row's), relabel (give a row the student's label when it is at least relabel_min_prob sure, "
        "else keep it as is), weight (keep a row with probability = the student's confidence in its "
        "label: weighting by sampling, as training has no per-row weights).",
    )
    relabel_min_prob: float = Field(0.9, gt=0, le=1, description="check: relabel: the confidence needed.")
    # --- errors steer the mix
    error_mix: bool = Field(
        True, description="Draw categories by the student's error rate per category on the judge slice."
    )
    mix_floor: float = Field(
        0.1, ge=0, le=1, description="error_mix: added to every category's error rate, so none gets no data."
    )
    mix_prior_rows: int = Field(
        5,
        ge=0,
        description="error_mix: each category's error rate is shrunk toward the slice's overall rate as if "
        "it had this many more rows at that rate, so a category with one or two judged rows cannot take "
        "the mix. 0: raw rates.",
    )
    mix_blend: float = Field(
        0.5,
        ge=0,
        le=1,
        description="error_mix: how far the new rows' category shares move from the original shares "
        "(generate.category_weights; even when unset) toward the error shares: share = (1 - b) * original "
        "+ b * error. 0.5: half-way; 1: the error shares alone; 0: the original shares "
        "(docs/defaults.md#evolve).",
    )
    mix_hold_right: bool = Field(
        True,
        description="error_mix: a category the student already gets right keeps its original share of "
        "the new rows (not less, not more); the others share what is left, by mix_blend. Right: its judge "
        "accuracy (shrunk as mix_prior_rows says) is at least the slice's accuracy. So the mix moves rows "
        "only among the categories below the slice's accuracy, never away from one the student knows.",
    )
    soup: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="The weight of the previous round's student in the round's: once trained, the round's "
        "merged model becomes (1 - soup) * its own weights + soup * the previous round's (both are the "
        "base model fine-tuned, so this blends what each learnt; a 'model soup'), so a class the new "
        "rows pull the student away from is not lost (docs/defaults.md#evolve). 0: the round's "
        "student as trained. Its LoRA adapter is then not written (it no longer describes the "
        "model); predict and export use the merged model.",
    )
    judge: Literal["auto", "dev", "seeds", "seeds_cv"] = Field(
        "auto",
        description="Where the student's errors are measured: dev (n_dev rows of data.train, less seeds "
        "and test rows: labelled rows beyond the seeds), seeds (the student trained on them: errors are "
        "understated), seeds_cv (cv_folds students, each trained as the round's student was but without "
        "one fold of the seeds, judge that fold: no labelled rows beyond the seeds, cv_folds more "
        "trainings), auto (default): seeds_cv where there are at least 2 seeds, else seeds. dev is the "
        "labelled-data option: asked for, never chosen for you.",
    )
    n_dev: int = Field(200, gt=0, description="Rows of the dev slice.")
    cv_folds: int = Field(
        3, ge=2, description="judge: seeds_cv: folds of the seeds, one student each (at most one per seed)."
    )
    # --- mistakes become principles (psi arms)
    error_principles: Literal["off", "teacher", "file"] = Field(
        "teacher",
        description="teacher: models.teacher writes one principle per mistake on the judge slice "
        "(principles.max_mistakes of them), attached to the mistake's category; file: read them from "
        "principles_file (a principles file as principles.file); off: the previous round's principles.",
    )
    principles_file: Path | None = Field(None, description="error_principles: file: a person's principles.")


# the values at which the new rows' mix is the error shares alone: nothing blended, nothing held
ERROR_SHARES_ALONE: dict[str, Any] = {"mix_blend": 1.0, "mix_hold_right": False}


def mix_asked(s: EvolveSettings) -> dict[str, Any]:
    """The settings a config sets itself (not by default) that shape the error mix away from the
    error shares alone: one the run cannot use (no error mix, no fixed categories) is an error only
    where it was asked for."""
    return {k: getattr(s, k) for k, alone in ERROR_SHARES_ALONE.items()
            if k in s.model_fields_set and getattr(s, k) != alone}  # fmt: skip


def round_seed(seed: int, rnd: int) -> int:
    """The sampling seed of round `rnd`: round 1 keeps the run's seed, later rounds draw new data."""
    return seed if rnd == 1 else seed + 7919 * (rnd - 1)


def check_task(task: Task, s: EvolveSettings, n_seeds: int) -> None:
    """The settings that need something of the task or the seeds: relabel and weight read label
    probabilities, a blended mix draws fixed categories, seeds_cv holds out folds of the seeds."""
    if s.check in ("relabel", "weight") and not task.labels:
        raise ConfigError(
            f"evolve.check: {s.check} needs label probabilities, and task {task.name!r} ({task.kind}) "
            "has no label set; use agree or none"
        )
    if task.fixed_categories() is None and (shaped := mix_asked(s)):
        name, value = next(iter(shaped.items()))
        raise ConfigError(
            f"evolve.{name}: {value} shapes the error mix over the task's categories, and task "
            f"{task.name!r} ({task.kind}) has no fixed categories; drop evolve.{name}"
        )
    if s.judge == "seeds_cv" and n_seeds < 2:
        raise ConfigError(
            f"evolve.judge: seeds_cv holds out folds of the seeds, and there is {n_seeds} seed; give at "
            "least 2 seeds (data.seeds or data.n_seeds), or use judge: dev"
        )
