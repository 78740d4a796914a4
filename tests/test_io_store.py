import json
import os

import pytest

from psilm.durable import JsonlLog, atomic_write_json
from psilm.errors import DataError
from psilm.io import read_jsonl
from psilm.run.folder import RunDir


@pytest.mark.parametrize(
    "content, match",
    [
        (b'{"a": 1}\n{"a": \n', r":2: invalid JSON"),
        (b'{"a": 1}\n[1, 2]\n', r":2: expected a JSON object, got list"),
        (b'{"a": "\xff\xfe"}\n', r":1: not valid UTF-8"),
        (b"", r"no rows \(the file is empty\)"),
        (b"\n\n  \n", r"no rows"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, match):
    p = tmp_path / "in.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        read_jsonl(p)
    assert "in.jsonl" in str(e.value)


def test_huge_line_refused(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text(json.dumps({"text": "x" * 1_100_000}) + "\n")
    with pytest.raises(DataError, match=r"big\.jsonl:1: line is"):
        read_jsonl(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_log_survives_torn_last_line(tmp_path):
    p = tmp_path / "log.jsonl"
    with JsonlLog(p) as log:
        log.append({"i": 1})
        log.append({"i": 2})
    with p.open("a") as fh:
        fh.write('{"i": 3, "trunc')  # the process died mid-write
    log = JsonlLog(p)
    assert [r["i"] for r in log.records] == [1, 2]
    log.append({"i": 3})
    log.close()
    assert [json.loads(x)["i"] for x in p.read_text().splitlines()] == [1, 2, 3]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert os.listdir(tmp_path) == ["a.json"]


def test_decide_skip_resume_and_supersede(tmp_path):
    run = RunDir(tmp_path)
    out = [run.path("out.txt")]
    assert run.decide("s", "k1", out) == "fresh"
    run.start("s", "k1", 1, {})
    assert RunDir(tmp_path).decide("s", "k1", out) == "resume"  # started, not finished
    assert RunDir(tmp_path).stage("s")["pid"] == os.getpid()  # which process started it
    (tmp_path / "out.txt").write_text("v1")
    run.finish("s")
    assert RunDir(tmp_path).decide("s", "k1", out) == "skip"
    assert RunDir(tmp_path).decide("s", "k2", out) == "fresh"  # settings changed
    assert not (tmp_path / "out.txt").exists()
    moved = list((tmp_path / ".superseded").rglob("out.txt"))
    assert len(moved) == 1 and moved[0].read_text() == "v1"


def test_seeds_drawn_from_a_pool_skip_rows_of_the_test_split(tmp_path):
    """Public splits share rows (TREC's train and test both hold 'What does NASA stand for ?')."""
    from psilm.config import load_config
    from psilm.run import prepare

    pool = [{"text": f"review {i}", "label": "positive" if i % 2 else "negative"} for i in range(6)]
    shared = [pool[0], pool[1]]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (tmp_path / "test.jsonl").write_text(
        "".join(json.dumps({**r, "text": r["text"].upper()}) + "\n" for r in shared)
    )
    for seed in range(5):
        cfg = load_config(
            data={
                "seed": seed,
                "task": "sst2",
                "data": {
                    "train": str(tmp_path / "train.jsonl"),
                    "n_seeds": 4,
                    "test": str(tmp_path / "test.jsonl"),
                },
                "principles": {"levels": ["task"]},
                "arms": ["zero_shot"],
            }
        )
        ctx = prepare(cfg, tmp_path / f"run{seed}", log=lambda m: None)
        assert {s.input for s in ctx.seeds} == {f"review {i}" for i in range(2, 6)}
