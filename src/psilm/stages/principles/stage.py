"""Stage 1 as steps: the run's principles (write.py, or a person's file), and a round's.

Principles: the teacher writes principles.json at the levels asked (its error level reads the
student's answers to the seeds as evaluation does), or a person's file is read instead. A hand
edit of principles.json is kept: the run generates from the edited file and does not write it again.
RoundPrinciples (psi rounds, evolve.rounds): the round before's principles plus one per mistake the
judge found (the teacher), or a person's file.
"""

from __future__ import annotations

from typing import Any

from psilm.durable import file_hash
from psilm.stages import evaluate as E
from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.stages.principles import mistakes, write
from psilm.stages.principles.file import load_principles_file
from psilm.tasks import Example


def per_level(principles: list[dict]) -> dict[str, int]:
    """How many principles at each level, in order of first appearance (the step's summary line)."""
    levels: dict[str, int] = {}
    for p in principles:
        levels[p["level"]] = levels.get(p["level"], 0) + 1
    return levels


def student_answers(io: StepIO) -> mistakes.StudentAnswers:
    """The untrained student's answers to the seeds as evaluation reads them: the likeliest option
    where the task has options (a small model's generated label is often unreadable), else its
    greedy generation."""

    task, cfg, student = io.task, io.cfg, io.cfg.models.student
    if not all(task.answer_options(x) for x in io.seeds):
        caller = io.caller("student", student)
        return mistakes.generated_answers(task, caller, cfg.principles, cfg.seed)

    def answer(seeds: list[Example]) -> list[tuple[str | None, str]]:
        got = E.predict_examples(
            task, student.model, seeds, cfg.evaluate, student.device, dtype=student.dtype
        )
        return [(p, str(p)) for p in got.preds]

    return mistakes.StudentAnswers(student.model, answer)


class Principles(Stage):
    name = "principles"
    version = 7  # 5: labels described by the teacher; 6: in general terms; 7: label check tested on seeds
    editable = True

    def runs_for(self, arm) -> bool:
        return arm is None

    def reads(self, cfg, arm) -> list[Input]:
        return [Input("seeds", of_run=True)]

    def writes(self, cfg, arm) -> list[str]:
        return ["principles"]

    def workload(self, cfg, arm):
        if cfg.principles.file is not None:
            return None
        labels = len(cfg.task.labels or []) or cfg.principles.max_categories
        return model_label(cfg.models.teacher), labels, "categories"

    def key(self, io: StepIO) -> dict[str, Any]:
        cfg, s = io.cfg, io.cfg.principles
        key: dict[str, Any] = {"settings": s.model_dump(mode="json"), "seed": cfg.seed}
        key["task"] = cfg.task.model_dump(mode="json")
        if s.file is not None:
            key["file"] = file_hash(s.file)
            return key
        key["teacher"] = cfg.models.teacher.key()
        if "error" in s.levels:
            key["student"] = cfg.models.student.key()
            key["evaluate"] = cfg.evaluate.method  # how the student's answers are read
        return key

    def summary(self, st: dict[str, Any]) -> str:
        levels = ", ".join(f"{k} {v}" for k, v in st.get("per_level", {}).items())
        return f"{st['n_principles']} principles ({levels}) from {st.get('source', '?')}"

    def run(self, io: StepIO) -> dict[str, Any]:
        cfg, s = io.cfg, io.cfg.principles
        if s.file is not None:
            result = load_principles_file(s.file, io.task, s.levels)
        else:
            teacher = io.caller("teacher", cfg.models.teacher)
            student = student_answers(io) if "error" in s.levels else None
            result = write.write_principles(io.task, io.seeds, teacher, s, cfg.seed, student=student)
        io.write("principles", result)
        for note in result.get("notes") or []:
            if note != result.get("warning"):
                io.log(f"[principles] {note}")
        if result.get("warning"):  # a weak teacher, a label left short: the console, manifest, report
            io.log(f"WARNING (principles): {result['warning']}")
        return {
            "n_principles": len(result["principles"]),
            "per_level": per_level(result["principles"]),
            "source": "file" if s.file else "teacher",
            "warning": result.get("warning"),
            **({"coverage": result["coverage"]} if result.get("coverage") else {}),
        }


class RoundPrinciples(Stage):
    name = "principles"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.round > 1 and arm.uses_principles

    def reads(self, cfg, arm) -> list[Input]:
        before = Input("principles", of_run=True) if arm.round == 2 else Input("arm_principles", arm.previous)
        return [before, Input("judge"), Input("seeds", of_run=True)]

    def writes(self, cfg, arm) -> list[str]:
        return ["arm_principles"]

    def workload(self, cfg, arm):
        if cfg.evolve.error_principles != "teacher":
            return None
        return model_label(cfg.models.teacher), cfg.principles.max_mistakes, "mistakes"

    def key(self, io: StepIO) -> dict[str, Any]:
        cfg, e = io.cfg, io.cfg.evolve
        key: dict[str, Any] = {"how": e.error_principles, "seed": cfg.seed}
        if e.error_principles == "teacher":
            used = {"max_mistakes", "max_tokens", "min_chars", "max_chars", "temperature", "seeds_shown",
                    "example_stretch", "lead_forms"}  # fmt: skip
            key.update(
                teacher=cfg.models.teacher.key(),
                principles=cfg.principles.model_dump(mode="json", include=used),
            )
        elif e.error_principles == "file":
            key["file"] = file_hash(e.principles_file)
        return key

    def summary(self, st: dict[str, Any]) -> str:
        return f"{st['n_principles']} principles ({st['n_added']} added, {st.get('source')})"

    def run(self, io: StepIO) -> dict[str, Any]:
        cfg, e, arm = io.cfg, io.cfg.evolve, io.arm
        if arm.round == 2:
            before = io.read("principles", of_run=True)["principles"]
        else:
            before = io.read("arm_principles", arm.previous)["principles"]
        added: list[dict] = []
        info: dict[str, Any] = {}
        if e.error_principles == "teacher":
            found = io.read("judge")["mistakes"]
            teacher = io.caller("teacher", cfg.models.teacher)
            added, info = mistakes.mistake_principles(
                io.task, found, teacher, io.seeds, cfg.principles, cfg.seed, arm.round
            )
        elif e.error_principles == "file":
            added = mistakes.file_principles(load_principles_file(e.principles_file, io.task), arm.round)
        io.write("arm_principles", {"principles": before + added, "added": [p["id"] for p in added], **info})
        return {"n_principles": len(before) + len(added), "per_level": per_level(before + added),
                "n_added": len(added), "source": e.error_principles}  # fmt: skip
