"""`psilm predict`: an arm's model on new inputs, answered exactly as the evaluate stage answers."""

from __future__ import annotations

import json

import pytest
from trained_run import held_out_rows, trained_run

from psilm.shell.cli import main
from psilm.use.predict import predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("arm", ["psi", "zero_shot"])
def test_predictions_on_the_test_rows_give_the_arms_accuracy(run, tmp_path, capsys, arm):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(held_out_rows(run)), "--run", str(run), "--arm", arm, "--out", str(out)]) == 0
    preds = _jsonl(out)
    metrics = json.loads((run / "arms" / arm / "metrics.json").read_text())
    assert len(preds) == metrics["n"]
    assert sum(p["correct"] for p in preds) / len(preds) == metrics["accuracy"]
    # row by row, the same answers the evaluate stage gave
    assert [p["prediction"] for p in preds] == [p["pred"] for p in metrics["predictions"]]
    assert f"accuracy {metrics['accuracy']:.1%}" in capsys.readouterr().out


def test_rows_keep_their_fields_and_get_label_probabilities(run, tmp_path):
    rows = [{"text": "a warm , funny film .", "id": 7}, {"text": "dull and far too long .", "id": 8}]
    preds = predict(run, rows)
    assert [p["id"] for p in preds] == [7, 8] and [p["text"] for p in preds] == [r["text"] for r in rows]
    for p in preds:
        probs = p["probabilities"]
        assert set(probs) == {"negative", "positive"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert p["prediction"] == max(probs, key=probs.get)
        assert "correct" not in p  # no label in the row, nothing to score


def test_predict_leaves_the_run_folder_as_it_was(run):
    """The run is only read: even a dead process's leftover temporary file stays (a writing run sweeps it)."""
    leftover = run / "arms" / "psi" / ".metrics.json.999999999.abcd.tmp"
    leftover.write_text("{}")
    try:
        before = sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*"))
        predict(run, [{"text": "a warm , funny film ."}])
        assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    finally:
        leftover.unlink(missing_ok=True)


def test_an_arm_that_was_not_trained_is_one_line_exit_2(run, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code = main(["predict", str(held_out_rows(run)), "--run", str(run), "--arm", "direct", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--arm direct" in err and "not trained" in err and "['psi']" in err
    assert not out.exists()


def test_an_input_without_the_input_field_is_one_line_exit_2(run, tmp_path, capsys):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"text": "fine"}\n{"review": "no text field"}\n')
    code = main(["predict", str(bad), "--run", str(run), "--out", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{bad}:2: missing field `text`" in err and "task.input_field" in err


def test_a_batch_size_below_one_is_one_line_exit_2(run, tmp_path, capsys):
    args = ["predict", str(held_out_rows(run)), "--run", str(run), "--out", str(tmp_path / "p.jsonl")]
    assert main([*args, "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "psilm: error: --batch-size 0: give at least 1 row per batch"


def test_a_folder_that_is_not_a_run_is_one_line_exit_2(tmp_path, capsys):
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"text": "fine"}\n')
    code = main(["predict", str(rows), "--run", str(tmp_path), "--out", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a run folder" in err and len(err.splitlines()) == 1


def test_an_unlabelled_row_reads_as_the_labelled_one_would():
    from psilm.tasks import load_task

    task = load_task(
        {
            "name": "mc",
            "kind": "multiple_choice",
            "description": "Pick the right answer.",
            "input_field": "q",
            "target_field": "a",
            "choices_field": "choices",
        }
    )
    row = {"q": "2 + 2 ?", "choices": ["3", "4", "5"], "a": "B"}
    unlabelled = task.unlabelled({k: v for k, v in row.items() if k != "a"})
    assert unlabelled.input == task.example(row).input == "2 + 2 ?\nA. 3\nB. 4\nC. 5"
    assert task.answer_options(unlabelled) == ["A", "B", "C"]
