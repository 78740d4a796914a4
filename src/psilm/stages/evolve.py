"""Self-evolution rounds: what round r's student says about the data of round r+1.

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

Plain functions of data: the pipeline reads and writes the run folder. `agree` is the default
check and `relabel` acts only above a high threshold: a small student's relabelling loses
fidelity (docs/defaults.md#evolve).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from psilm.data import round_robin
from psilm.errors import ConfigError
from psilm.llm.base import SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.settings import Settings
from psilm.stages.evaluate import probabilities
from psilm.tasks import Example, Task

MAX_ROUNDS = 5  # the arms table holds round arms up to this round
Check = Literal["none", "agree", "relabel", "weight"]


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
    check: Check = Field(
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
        "the mix (TREC's abbreviation: 1 of 200 dev rows, wrong, was weighted highest). 0: raw rates.",
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


# the settings that shape the error mix, at the values that leave it as it was measured first
MIX_OFF: dict[str, Any] = {"mix_blend": 1.0, "mix_hold_right": False}


def mix_shaped(s: EvolveSettings) -> dict[str, Any]:
    """The mix settings set away from MIX_OFF (what the judge's key adds; empty: a run made before)."""
    return {k: getattr(s, k) for k, off in MIX_OFF.items() if getattr(s, k) != off}


def mix_asked(s: EvolveSettings) -> dict[str, Any]:
    """The shaping settings a config sets itself (not by default): a setting the run cannot use
    (no error mix, no fixed categories) is an error only where it was asked for."""
    return {k: v for k, v in mix_shaped(s).items() if k in s.model_fields_set}


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


def check_rows(
    task: Task,
    rows: list[dict],
    preds: list[str | None],
    scores: list[list[float]] | None,
    s: EvolveSettings,
    seed: int,
) -> tuple[list[dict], dict[str, Any]]:
    """(rows the policy keeps, each with a `check` note; report). `preds`: the student's answer per
    row; `scores`: its option log-likelihoods (task.labels order) where the task has options."""
    kept, seen = [], []
    decisions: Counter = Counter()
    agree_per_cat: dict[str, list[int]] = {}
    for i, (rec, pred) in enumerate(zip(rows, preds, strict=True)):
        answer = str(rec.get("answer"))
        agree = task.score(pred, answer) >= 1.0
        probs = probabilities(scores[i]) if scores else None
        p_row = probs[task.labels.index(answer)] if probs and answer in task.labels else None
        p_pred = max(probs) if probs else None
        stats = agree_per_cat.setdefault(str(rec.get("category")), [0, 0])
        stats[0] += agree
        stats[1] += 1
        note = {"student": pred, "agree": agree, "p_label": _r(p_row), "p_student": _r(p_pred)}
        out = {**rec}
        if s.check == "none":
            decision = "keep"
        elif s.check == "agree":
            decision = "keep" if agree else "drop"
        elif s.check == "relabel":
            confident = p_pred is not None and p_pred >= s.relabel_min_prob
            decision = "relabel" if not agree and confident and pred is not None else "keep"
            if decision == "relabel":
                out.update(answer=pred, output=pred, relabelled_from=answer)
        else:  # weight: keep with probability p(label), drawn per row id so a rerun keeps the same rows
            u = random.Random(f"{seed}:weight:{rec.get('id')}").random()
            decision = "keep" if p_row is not None and u < p_row else "drop"
        decisions[decision] += 1
        seen.append({"id": rec.get("id"), "category": rec.get("category"), "answer": answer, **note,
                     "decision": decision})  # fmt: skip
        if decision != "drop":
            kept.append({**out, "check": note})
    n = len(rows)
    report = {
        "policy": s.check,
        "n_in": n,
        "n_kept": len(kept),
        "agree": round(sum(v[0] for v in agree_per_cat.values()) / n, 4) if n else None,
        "decisions": dict(decisions),
        "agree_per_category": {c: round(a / t, 4) for c, (a, t) in agree_per_cat.items()},
    }
    if s.check == "relabel":
        report["relabel_min_prob"] = s.relabel_min_prob
    report["rows"] = seen  # every new row with the student's view: what another policy would have kept
    return kept, report


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# --- mistakes become principles -------------------------------------------------------------
def mistake_principles(
    task: Task,
    mistakes: list[dict],
    teacher: ModelCaller,
    seeds: list[Example],
    settings,
    seed: int,
    rnd: int,
) -> tuple[list[dict], dict[str, Any]]:
    """One principle per mistake (up to settings.max_mistakes, spread over categories), attached
    to the mistake's category (None for tasks without fixed categories). A classification task's
    are written as round 1's error principles are (principles.Forms: an example of the missed label,
    checked by the teacher); `settings` is the run's PrinciplesSettings. Returns (principles, notes)."""
    from psilm.stages.principle_checks import Forms
    from psilm.stages.principle_prompts import mistake_prompt, parse_list
    from psilm.stages.principles import holds_json

    s = settings
    classify = task.fixed_categories() is not None
    used = round_robin(mistakes, s.max_mistakes, lambda m: str(m["category"]))
    dropped: Counter = Counter()
    forms = Forms(task, seeds, s, seed, lambda _level, r, how: teacher(r, how), dropped, holds_json(teacher))
    reqs = [
        (
            f"evolve/{seed}/round{rnd}/mistake/{m['row']}",
            mistake_prompt(
                task,
                Example(m["input"], str(m["output"]), str(m["gold"])),
                str(m["predicted"]),
                as_json=classify,
                lead=forms.lead if classify else None,
                length=forms.shape.length_words() if classify else None,
            ),
        )
        for m in used
    ]
    texts: list[tuple[Any, str]] = []
    if classify and reqs:
        texts = forms.per_mistake(reqs, [m["category"] for m in used], s.max_mistakes)
    elif reqs:
        params = SamplingParams(temperature=0.7, top_p=1.0, max_tokens=s.max_tokens, seed=seed)
        out = teacher(reqs, params)
        for m, (rid, _) in zip(used, reqs, strict=True):
            c = out[rid]
            got_texts = parse_list(c.text, s.min_chars, s.max_chars, dropped, c.finish_reason == "length")[:1]
            texts += [(m["category"], t) for t in got_texts]
    principles = [
        {
            "id": f"r{rnd}-e{k}",
            "level": "error",
            "category": category,
            "use": "create",
            "text": text,
            "source": f"teacher:{teacher.model_id}",
            "round": rnd,
        }
        for k, (category, text) in enumerate(texts, start=1)
    ]
    return principles, {"mistakes_sent": len(used), "dropped": dict(dropped)}


def file_principles(loaded: dict, rnd: int) -> list[dict]:
    """A person's principles file (as load_principles_file returns it) as round principles."""
    return [{**p, "id": f"r{rnd}-{p['id']}", "round": rnd} for p in loaded["principles"]]


# --- new rows beside the old ones -------------------------------------------------------------
def merge_rows(previous: list[dict], new: list[dict], filter_settings) -> tuple[list[dict], int]:
    """(previous rows + the new rows that copy none of them nor each other, dropped count)."""
    from psilm.stages.filter import _NearIndex

    index = _NearIndex(filter_settings)
    for rec in previous:
        index.add(rec["input"])
    merged, dropped = list(previous), 0
    for rec in new:
        if index.match(rec["input"]):
            dropped += 1
            continue
        index.add(rec["input"])
        merged.append(rec)
    return merged, dropped
