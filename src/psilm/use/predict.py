"""Run an arm's student on new inputs: `psilm predict` and, from Python, `predict()`.

Answers are read exactly as the evaluate stage reads them (`stages.evaluate.predict_examples`):
the likelihood of each label or choice for classification and multiple choice, greedy generation
otherwise, with the run's own evaluate settings. Each output row is the input row with
  prediction     the answer (None where nothing could be read from a generated reply)
  probabilities  likelihood: each label's (or choice letter's) probability, summing to 1
  text           generate: the raw reply
  correct        only when the row also holds the task's target field
so predicting the run's test rows gives the accuracy in that arm's metrics.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from psilm.arms import ARMS, PSI
from psilm.durable import write_jsonl
from psilm.errors import DataError, PsilmError
from psilm.io import iter_jsonl
from psilm.run.finished import FinishedRun
from psilm.stages.evaluate import predict_examples, probabilities

ProgressStart = Callable[[int], Callable[[int], None]]  # start(total) -> advance(n)


def predict(
    run: str | Path,
    rows: list[dict] | str | Path,
    arm: str = PSI,
    batch_size: int | None = None,
    device: str | None = None,
    progress: ProgressStart | None = None,
) -> list[dict]:
    """Each row of `rows` (dicts, or a JSONL path) with the arm's prediction added."""

    # --- validate: the run, the arm, every row, before any model loads
    if batch_size is not None and batch_size < 1:
        raise PsilmError(f"--batch-size {batch_size}: give at least 1 row per batch")
    fin = FinishedRun(run)
    model = _model(fin, arm)
    task = fin.task
    where = str(rows) if isinstance(rows, str | Path) else "rows"
    numbered = list(iter_jsonl(rows)) if isinstance(rows, str | Path) else list(enumerate(rows, 1))
    if not numbered:
        raise DataError(f"{where}: no rows to predict (the file is empty)")
    examples = [task.unlabelled(row, f"{where}:{n}") for n, row in numbered]
    target = task.config.target_field  # rows that hold an answer are scored as evaluate scores them
    golds = [
        task.example(row, f"{where}:{n}").answer if row.get(target) not in (None, "") else None
        for n, row in numbered
    ]
    settings = fin.cfg.evaluate
    if batch_size is not None:
        settings = settings.model_copy(update={"batch_size": batch_size})

    # --- predict
    advance = progress(len(examples)) if progress is not None else None
    student = fin.cfg.models.student
    p = predict_examples(
        task, str(model), examples, settings, device or student.device, advance, student.dtype
    )

    # --- rows out
    out = []
    for i, ((_, row), ex) in enumerate(zip(numbered, examples, strict=True)):
        rec = dict(row)
        rec["prediction"] = p.preds[i]
        if p.scores is not None:
            rec["probabilities"] = _softmax(task.answer_options(ex), p.scores[i])
        if p.texts[i] is not None:
            rec["text"] = p.texts[i]
        if golds[i] is not None:
            rec["correct"] = task.score(p.preds[i], golds[i]) >= 1.0
        out.append(rec)
    return out


def predict_file(
    run: str | Path,
    input_path: str | Path,
    out: str | Path,
    arm: str = PSI,
    batch_size: int | None = None,
    device: str | None = None,
    progress: ProgressStart | None = None,
) -> dict:
    """Predict every row of a JSONL file into `out` (JSONL); returns counts and, when every row
    is labelled, the accuracy."""
    if Path(out).resolve() == Path(input_path).resolve():
        raise PsilmError(f"--out {out}: is the input file; write the predictions to another file")
    rows = predict(run, input_path, arm, batch_size, device, progress)
    write_jsonl(out, rows)
    labelled = [r["correct"] for r in rows if "correct" in r]
    return {
        "n": len(rows),
        "n_labelled": len(labelled),
        "accuracy": sum(labelled) / len(labelled) if labelled and len(labelled) == len(rows) else None,
        "out": str(out),
    }


def _model(fin: FinishedRun, arm: str) -> str:
    """The model an arm answers with: the untrained student for zero_shot, else its merged model."""
    if arm in ARMS and not ARMS[arm].trained:
        return fin.cfg.models.student.model
    return str(fin.trained_model(arm, "predict"))


def _softmax(options: list[str], logps: list[float]) -> dict[str, float]:
    return {opt: round(p, 6) for opt, p in zip(options, probabilities(logps), strict=True)}
