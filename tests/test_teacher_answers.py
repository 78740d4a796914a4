"""The teacher answering the test rows (the teacher_answers arm), and what psilm plan says a step costs."""

from __future__ import annotations

import json
from pathlib import Path

from test_principles import Scripted

from psilm.durable import JsonlLog
from psilm.llm.calls import ModelCaller
from psilm.stages.evaluate.teacher import answer_schema, few_shot_prompt, teacher_predictions
from psilm.tasks import load_task

TREC = load_task("trec")
SEEDS = [TREC.example({"text": t, "label_name": lb}) for t, lb in
         [("Who wrote Hamlet ?", "human"), ("Where is Lima ?", "location")]]  # fmt: skip
ROWS = [
    TREC.example({"text": "Who painted the Mona Lisa ?", "label_name": "human"}),
    TREC.example({"text": "What does NASA stand for ?", "label_name": "abbreviation"}),
]


def test_the_seeds_are_the_teachers_examples_in_either_shape():
    turns = few_shot_prompt(TREC, SEEDS, "Who is Bach ?", "turns")
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "human: asks for a person" in turns[0]["content"]  # every label's meaning
    assert turns[2]["content"] == "human" and turns[-1]["content"] == "Question: Who is Bach ?"
    listing = few_shot_prompt(TREC, SEEDS, "Who is Bach ?", "listing")
    assert len(listing) == 1 and "Question: Where is Lima ?\nAnswer: location" in listing[0]["content"]
    assert listing[0]["content"].endswith("Question: Who is Bach ?\nAnswer:")
    assert answer_schema(TREC, ROWS[0]) == {"type": "string", "enum": TREC.labels}


def _caller(tmp_path: Path, reply, constrained: bool) -> tuple[ModelCaller, Scripted]:
    backend = Scripted(reply, "teacher")
    held = ("chat",) if constrained else ()
    log = JsonlLog(tmp_path / f"t-{constrained}.jsonl")
    return ModelCaller("teacher", "teacher", lambda: backend, log, json_constrained=held), backend


def test_a_held_teacher_answers_with_a_label_and_a_free_one_is_read_as_students_are(tmp_path):
    def held(prompt, params):
        assert params.temperature == 0 and params.json_schema["enum"] == TREC.labels
        return '"human"' if "Mona Lisa" in prompt else '"abbreviation"'

    caller, _ = _caller(tmp_path, held, True)
    preds, texts, seconds = teacher_predictions(TREC, SEEDS, ROWS, caller, "turns", 16, 0)
    assert preds == ["human", "abbreviation"] and texts[0] == '"human"' and seconds >= 0

    def free(prompt, params):
        assert params.json_schema is None  # nothing to hold it to
        return "The answer is human." if "Mona Lisa" in prompt else "I cannot tell."

    caller, _ = _caller(tmp_path, free, False)
    preds, _, _ = teacher_predictions(TREC, SEEDS, ROWS, caller, "listing", 16, 0)
    assert preds == ["human", None]  # nothing to read is no answer, and scores as wrong


def test_rates_are_this_machines_own_and_a_fresh_one_has_none(tmp_path, monkeypatch):
    from psilm.run import rates

    monkeypatch.undo()  # the rates' own path again (conftest points every other test elsewhere)
    monkeypatch.setenv("PSILM_CACHE", str(tmp_path / "cache"))
    inst, scores = "instances", "label scores (test rows x labels)"
    assert rates.estimate("generate", "m on llamacpp", 96, inst) is None
    rates.record("generate", "m on llamacpp", 96, inst, 48.0)
    rates.record("generate", "m on llamacpp", 32, inst, 16.0)
    assert rates.estimate("generate", "m on llamacpp", 200, inst) == 100.0  # 0.5 s an instance
    assert rates.estimate("train", "m on llamacpp", 10, "row-epochs") is None
    # a task's own rate first (its rows' length sets a row's cost), else every task's
    rates.record("evaluate", "m", 100, scores, 10.0, "short")
    rates.record("evaluate", "m", 100, scores, 90.0, "long")
    assert rates.estimate("evaluate", "m", 100, scores, "long") == 90.0
    assert rates.estimate("evaluate", "m", 100, scores, "short") == 10.0
    # a task not run here: the median task's rate, not the last one's, and the range over the tasks
    assert rates.forecast("evaluate", "m", 100, scores, "new") == (50.0, (10.0, 90.0))
    assert rates.forecast("evaluate", "m", 100, scores, "long") == (90.0, None)  # its own rate: no range
    # a step timed on a busy machine fades as the machine's own pace comes back
    rates.record("train", "m", 100, "row-epochs", 1000.0)
    for _ in range(6):
        rates.record("train", "m", 100, "row-epochs", 100.0)
    assert 100.0 < rates.estimate("train", "m", 100, "row-epochs") < 150.0  # a plain mean: 229
    # a rate is kept per unit: one measured in test rows says nothing of label scores
    assert rates.estimate("evaluate", "m", 100, "test rows", "new") is None
    (tmp_path / "cache" / "rates.json").write_text("[1, 2]")  # damaged: remade as steps run
    assert rates.estimate("generate", "m on llamacpp", 96, inst) is None
    rates.record("train", "m", 10, "row-epochs", 5.0)
    assert json.loads((tmp_path / "cache" / "rates.json").read_text())["train|m|row-epochs"]["steps"] == 1
    # an entry of the right key but another shape is dropped, not a crash in the step that records
    (tmp_path / "cache" / "rates.json").write_text('{"train|m|row-epochs": {"units": "x", "seconds": 1}}')
    assert rates.estimate("train", "m", 10, "row-epochs") is None
    rates.record("train", "m", 10, "row-epochs", 5.0)
    assert rates.estimate("train", "m", 10, "row-epochs") == 5.0


def test_the_teacher_answering_is_an_arm_of_a_run_scored_and_priced_like_the_students(
    tmp_path, tmp_path_factory, capsys
):
    """A run with teacher_answers (the tiny model as the teacher): its metrics beside zero_shot's,
    the time a prediction takes in the report's table and top line, and plan's estimate after."""
    from tiny import tiny_model, write_tiny_run_config

    from psilm.shell.cli import main

    model = tiny_model(tmp_path_factory)
    local = {"model": str(model), "device": "cpu", "batch_size": 4}
    models = {"generator": local, "student": local, "teacher": local}
    config = write_tiny_run_config(
        tmp_path / "cfg", model, arms=["zero_shot", "teacher_answers"], models=models
    )
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "-q"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["arms"]
    assert (
        set(metrics) == {"zero_shot", "teacher_answers"} and metrics["teacher_answers"]["method"] == "teacher"
    )
    step = json.loads((out / "manifest.json").read_text())["stages"]["evaluate/teacher_answers"]
    assert step["predict_s"] > 0 and step["n"] == metrics["teacher_answers"]["n"]
    md = (out / "report.md").read_text()
    assert "ms / prediction" in md and "the teacher answering" in md and "principles by" in md
    capsys.readouterr()
    assert main(["plan", str(config), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("evaluate/teacher_answers" in ln and "test rows" in ln for ln in lines)
    # a student scores every label of every row; the estimate is per label score, measured by the run
    (zero,) = [ln for ln in lines if "evaluate/zero_shot" in ln]
    assert "label scores (test rows x labels)" in zero and "~" in zero
