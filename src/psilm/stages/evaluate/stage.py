"""Stage 5 as a step: an arm's metrics.json, its student (trained, or as it is) on the test rows;
for the teacher_answers arm, the teacher answering them itself, the seeds as its examples."""

from __future__ import annotations

from typing import Any

from psilm.durable import fingerprint
from psilm.errors import ConfigError
from psilm.numbers import percent
from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.stages.evaluate.evaluate import Predictions, evaluate_model, score
from psilm.stages.evaluate.teacher import teacher_predictions


class Evaluate(Stage):
    name = "evaluate"

    def reads(self, cfg, arm) -> list[Input]:
        if arm.trained:
            return [Input("model")]
        return [Input("seeds", of_run=True)] if arm.answers == "teacher" else []

    def writes(self, cfg, arm) -> list[str]:
        return ["arm_metrics"]

    def workload(self, cfg, arm):
        rows = cfg.data.n_test or 500
        if arm.answers == "teacher":
            return model_label(cfg.models.teacher), rows, "test rows"
        if labels := cfg.task.labels:  # every label is scored on every row: many cost more than few
            return model_label(cfg.models.student), rows * len(labels), "label scores (test rows x labels)"
        return model_label(cfg.models.student), rows, "test rows"

    def key(self, io: StepIO) -> dict[str, Any]:
        teacher = io.arm.answers == "teacher"  # the teacher's prompt shape reaches its arm alone
        cfg, key = (
            io.cfg,
            {
                "settings": io.cfg.evaluate.model_dump(
                    mode="json", exclude=set() if teacher else {"teacher_prompt"}
                )
            },
        )
        key["test"] = fingerprint([e.to_dict() for e in io.test] if io.test is not None else None)
        if io.arm.answers == "teacher":
            key["teacher"] = cfg.models.teacher.key()
        elif not io.arm.trained:
            key["student"] = cfg.models.student.key()
        return key

    def summary(self, st: dict[str, Any]) -> str:
        return f"{percent(st['accuracy'])} (n={st['n']})"

    def check(self, io: StepIO) -> None:
        if io.test is None:
            raise ConfigError("data.test is not set in this run's config; nothing to evaluate on")
        if io.arm.trained:
            io.read("model")  # its files checked before it loads

    def run(self, io: StepIO) -> dict[str, Any]:
        cfg, arm, student = io.cfg, io.arm, io.cfg.models.student
        if arm.answers == "teacher":
            teacher = io.caller("teacher", cfg.models.teacher)
            s = cfg.evaluate
            preds, texts, seconds = teacher_predictions(io.task, io.seeds, io.test, teacher, s.teacher_prompt,
                                                        s.max_tokens, cfg.seed)  # fmt: skip
            tokens = {"prompt": teacher.tokens["prompt"], "completion": teacher.tokens["completion"]}
            p = Predictions("teacher", preds, texts, None, tokens, 0.0, seconds)
            res = score(io.task, io.test, p, teacher.model_id)
        else:
            model = io.read("model") if arm.trained else student.model
            res = evaluate_model(io.task, model, io.test, cfg.evaluate, student.device, student.dtype,
                                 io.bar(f"evaluate/{arm.name}"))  # fmt: skip
        io.write("arm_metrics", res)
        # what one prediction costs: the answering alone, not the model's loading
        return {"accuracy": res["accuracy"], "n": res["n"], "predict_s": res["duration_s"]}
