"""The check of a self-evolution round: the previous round's student labels each new row by
likelihood and a policy (evolve.check) keeps, relabels or weights it; the kept rows join what the
previous round trained on (near-copies of those dropped), which is this round's train.jsonl."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from psilm import arms
from psilm.durable import fingerprint
from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.stages.evaluate import predict_examples
from psilm.stages.evaluate.likelihood import probabilities
from psilm.stages.filter.near import NearIndex
from psilm.stages.rounds.settings import EvolveSettings
from psilm.tasks import Example, Task


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


def merge_rows(previous: list[dict], new: list[dict], filter_settings) -> tuple[list[dict], int]:
    """(previous rows + the new rows that copy none of them nor each other, dropped count)."""
    index = NearIndex(filter_settings)
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


class Check(Stage):
    """The previous round's student checks this round's new rows; rows = old rows + kept new."""

    name = "check"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.round > 1 and arm.generated

    def reads(self, cfg, arm) -> list[Input]:
        before = [a for a in cfg.arms if arms.ARMS[a].generated and arms.ARMS[a].round == arm.round - 1]
        return [Input("new_rows"), Input("model", arm.previous), *(Input("rows", a) for a in before)]

    def writes(self, cfg, arm) -> list[str]:
        return ["rows", "check_report"]

    def workload(self, cfg, arm):
        return model_label(cfg.models.student), cfg.evolve.n or cfg.generate.n, "rows checked"

    def previous(self, io: StepIO) -> list[dict]:
        """The rows the previous round trained on, cut to its count."""
        return io.read("rows", io.arm.previous)[: io.train_count(io.arm.round - 1)]

    def key(self, io: StepIO) -> dict[str, Any]:
        cfg = io.cfg
        return {"settings": cfg.evolve.model_dump(mode="json", include={"check", "relabel_min_prob"}),
                "previous": fingerprint(self.previous(io)), "filter": cfg.filter.model_dump(mode="json"),
                "evaluate": cfg.evaluate.model_dump(mode="json"), "seed": cfg.seed}  # fmt: skip

    def check(self, io: StepIO) -> None:
        io.read("model", io.arm.previous)

    def run(self, io: StepIO) -> dict[str, Any]:

        cfg, e, arm, st = io.cfg, io.cfg.evolve, io.arm, io.cfg.models.student
        rows, previous = io.read("new_rows"), self.previous(io)
        preds: list = [None] * len(rows)
        scores, tokens = None, {"prompt": 0, "completion": 0}
        if rows:  # scored under every policy, `none` included, so each one's agreement is measured
            examples = [
                Example(r["input"], str(r["output"]), str(r["answer"]), r.get("category")) for r in rows
            ]
            bar = io.bar(f"check/{arm.name}")
            advance = bar(len(examples)) if bar is not None else None
            p = predict_examples(io.task, io.read("model", arm.previous), examples, cfg.evaluate, st.device,
                                 advance, st.dtype)  # fmt: skip
            preds, scores, tokens = p.preds, p.scores, p.tokens
        kept, report = check_rows(io.task, rows, preds, scores, e, cfg.seed)
        merged, dup = merge_rows(previous, kept, cfg.filter)
        report.update(n_previous=len(previous), duplicate_of_previous=dup, n_train=len(merged))
        io.write("rows", merged)
        io.write("check_report", report)
        keys = ("policy", "n_in", "n_kept", "agree", "n_previous", "duplicate_of_previous", "n_train")
        return {**{k: report[k] for k in keys}, "student_tokens": tokens}
