"""`psilm init DATA_FILE`: a config guessed from a data file, which loads and reads every row; bad
input is one line and exit 2. The slow test runs the NLI and 5-way multiple-choice configs that
`psilm init` writes, end to end on the embedded model, and checks that every field survives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from psilm.config import load_config
from psilm.data import load_examples
from psilm.run.folder import Layout
from psilm.shell.cli import main
from psilm.tasks import load_task

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def init(tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["init", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("psilm: error: ") and "Traceback" not in err, err
    return lines[0]


def test_init_nli_guesses_pair_fields_and_labels(tmp_path, capsys):
    out = tmp_path / "nli.yaml"
    data, test = FIXTURES / "nli" / "train.jsonl", FIXTURES / "nli" / "test.jsonl"
    rc, stdout, _ = init(tmp_path, capsys, str(data), "--test", str(test), "-o", str(out))
    assert rc == 0 and "classification task reading ['premise', 'hypothesis']" in stdout
    text = out.read_text()
    assert "# CHECK kind: classification, since `label` takes 2 values in 32 rows" in text
    cfg = load_config(out)
    assert cfg.task.input_fields == ["premise", "hypothesis"] and cfg.task.input_field is None
    assert cfg.task.labels == ["entailment", "not_entailment"] and cfg.task.name == "nli"
    assert cfg.data.train == data and cfg.data.test == test and cfg.data.n_seeds == 16
    assert len(load_examples(load_task(cfg.task), cfg.data.test)) == 16


def test_init_mc5_guesses_choices_and_answer_key(tmp_path, capsys):
    out = tmp_path / "mc.yaml"
    rc, stdout, _ = init(tmp_path, capsys, str(FIXTURES / "mc5" / "train.jsonl"), "-o", str(out))
    assert rc == 0
    cfg = load_config(out)
    t = cfg.task
    assert (t.kind, t.input_field, t.choices_field, t.target_field) == (
        "multiple_choice", "question", "choices", "answerKey",
    )  # fmt: skip
    assert "# test: path/to/test.jsonl" in out.read_text() and cfg.data.test is None


def test_init_csv_with_label_codes_and_a_json_choices_cell(tmp_path, capsys):
    p = tmp_path / "codes.csv"
    p.write_text("idx,sentence,label\n" + "".join(f"{i},sentence number {i},{i % 3}\n" for i in range(12)))
    rc, _, _ = init(tmp_path, capsys, str(p), "-o", str(tmp_path / "codes.yaml"))
    text = (tmp_path / "codes.yaml").read_text()
    assert rc == 0 and "labels: ['0', '1', '2']" in text and "the data's labels are codes" in text
    assert "input_field: sentence" in text  # the id column is not read
    q = tmp_path / "q.csv"
    cell = json.dumps(["red", "blue", "green"]).replace('"', '""')
    q.write_text("question,options,answer\n" + "".join(f'Which one {i}?,"{cell}",B\n' for i in range(4)))
    rc, _, _ = init(tmp_path, capsys, str(q), "-o", str(tmp_path / "q.yaml"))
    assert rc == 0 and load_config(tmp_path / "q.yaml").task.choices_field == "options"


@pytest.mark.parametrize(
    "rows, kind",
    [
        ([{"question": f"What is {i} and {i}?", "answer": f"{i}+{i}\n#### {i + i}"} for i in range(8)],
         "numeric"),
        ([{"question": f"How many {i}?", "answer": str(i * 7)} for i in range(8)], "numeric"),
        ([{"question": f"Who wrote book {i}?", "answer": f"Author {i}"} for i in range(8)], "free_text"),
    ],
)  # fmt: skip
def test_init_kind_guess(tmp_path, capsys, write_jsonl, rows, kind):
    rc, _, _ = init(tmp_path, capsys, str(write_jsonl("d.jsonl", rows)), "-o", str(tmp_path / "d.yaml"))
    assert rc == 0 and load_config(tmp_path / "d.yaml").task.kind == kind


def test_init_description_names_few_labels_and_counts_many(tmp_path, capsys, write_jsonl):
    def guessed(n_labels: int) -> str:
        rows = [{"text": f"message {i}", "label": f"intent_{i % n_labels}"} for i in range(200)]
        out = tmp_path / f"l{n_labels}.yaml"
        rc, _, _ = init(tmp_path, capsys, str(write_jsonl(f"l{n_labels}.jsonl", rows)), "-o", str(out))
        cfg = load_config(out)
        assert rc == 0 and cfg.task.kind == "classification" and len(cfg.task.labels) == n_labels
        return cfg.task.description

    assert guessed(3) == "Label the text: intent_0, intent_1, intent_2."
    # every prompt lists the labels; the description does not list 20 more times
    assert guessed(20) == "Label the text with one of its 20 labels."


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("missing.jsonl", None, "missing.jsonl: file not found"),
        ("bad.parquet", b"not parquet at all", "bad.parquet: not a Parquet file"),
        ("bad.jsonl", b'{"text": "x"\n', "bad.jsonl:1: invalid JSON"),
        ("empty.csv", b"", "empty.csv: no rows"),
        ("deep.jsonl", ("[" * 100_000 + "]" * 100_000 + "\n").encode(), "deep.jsonl:1: nested too deeply"),
        ("nums.jsonl", b'{"a": [1], "b": [2]}\n', "found no field that could be the answer"),
        ("one.jsonl", b'{"label": "x"}\n', "found no text field to read besides `label`"),
    ],
)
def test_init_bad_input_is_one_line(tmp_path, capsys, name, content, needle):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    rc, _, err = init(tmp_path, capsys, str(p), "-o", str(tmp_path / "out.yaml"))
    assert rc == 2 and needle in one_line(err)
    assert not (tmp_path / "out.yaml").exists()


def test_init_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "x.yaml"
    out.write_text("keep me")
    rc, _, err = init(tmp_path, capsys, str(FIXTURES / "nli" / "train.jsonl"), "-o", str(out))
    assert rc == 2 and "already exists" in one_line(err) and out.read_text() == "keep me"
    rc, _, _ = init(tmp_path, capsys, str(FIXTURES / "nli" / "train.jsonl"), "-o", str(out), "--force")
    assert rc == 0 and "input_fields" in out.read_text()


# --- end to end on the embedded model: what `psilm init` writes runs, and every field survives -----
@pytest.mark.slow
@pytest.mark.parametrize("name", ["nli", "mc5"])
def test_init_config_runs_end_to_end(tmp_path, capsys, name):
    folder = FIXTURES / name
    cfg_path = tmp_path / f"{name}.yaml"
    rc, _, _ = init(tmp_path, capsys, str(folder / "train.jsonl"), "--test", str(folder / "test.jsonl"),
                    "-o", str(cfg_path))  # fmt: skip
    assert rc == 0
    tiny = [
        "arms=[psi]", "data.n_seeds=8", "data.n_test=10", f"principles.file={folder / 'principles.yaml'}",
        "generate.n=8", "train.epochs=1", "train.batch_size=4", "train.max_length=160",
        "emissions.enabled=false",
    ]  # fmt: skip
    run = tmp_path / "run"
    rc = main(["run", str(cfg_path), "--out", str(run), "-q", *[x for t in tiny for x in ("--set", t)]])
    assert rc == 0, capsys.readouterr().err
    task = load_task(load_config(run / "config.yaml").task)
    seeds = [json.loads(x) for x in (run / "seeds.jsonl").read_text().splitlines()]
    candidates = [json.loads(x) for x in Layout(run).candidates("psi").read_text().splitlines()]
    kept = [json.loads(x) for x in Layout(run).rows("psi").read_text().splitlines()]
    assert len(candidates) == 8
    report = json.loads(Layout(run).filter_report("psi").read_text())
    assert report["n_in"] == 8 and report["n_kept"] == len(kept)
    for rec in seeds + [c for c in candidates if c["parse_error"] is None] + kept:
        if name == "nli":  # both fields, each on its own line
            fields, reason = task.split_fields(rec["input"])
            assert reason is None and set(fields) == {"premise", "hypothesis"}, rec["input"]
        else:  # the question and its lettered choices, the answer one of the letters
            letters = [ln[0] for ln in rec["input"].splitlines()[1:] if ln[1:3] == ". "]
            assert len(letters) >= 2 and rec["answer"] in letters, rec["input"]
    if name == "mc5":
        assert all(len(s["input"].splitlines()) == 6 for s in seeds)  # question + 5 choices
    metrics = yaml.safe_load((run / "metrics.json").read_text())
    assert metrics["arms"]["psi"]["n"] == 10
