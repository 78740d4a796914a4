"""Data readers: JSONL, CSV, Parquet, a save_to_disk folder and hf:NAME:SPLIT give the same rows,
and each bad file ends in one DataError naming the file and line (or row)."""

from __future__ import annotations

import json
import socket

import pytest

from psilm.data import load_examples
from psilm.errors import DataError
from psilm.io import iter_rows, read_rows
from psilm.tasks import load_task

ROWS = [
    {"text": "a warm , funny film", "label": "positive"},
    {"text": "a dull , lifeless mess", "label": "negative"},
    {"text": "one of the year 's best", "label": "positive"},
]


def write_csv(path, rows, sep=","):
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=sep)
        w.writeheader()
        w.writerows(rows)
    return path


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def sst2():
    return load_task("sst2")


# --- the same rows from every format ---------------------------------------------------------------
def test_csv_tsv_parquet_and_saved_folder_read_like_jsonl(tmp_path, write_jsonl, sst2):
    import datasets

    want = [(r["text"], r["label"]) for r in ROWS]
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(saved))
    sources = [
        write_jsonl("a.jsonl", ROWS),
        write_csv(tmp_path / "a.csv", ROWS),
        write_csv(tmp_path / "a.tsv", ROWS, sep="\t"),
        write_parquet(tmp_path / "a.parquet", ROWS),
        saved,
    ]
    for src in sources:
        got = [(e.input, e.answer) for e in load_examples(sst2, src)]
        assert got == want, src


def test_where_names_line_or_row(tmp_path, write_jsonl):
    assert [w for w, _ in iter_rows(write_jsonl("a.jsonl", ROWS))][-1].endswith("a.jsonl:3")
    assert [w for w, _ in iter_rows(write_csv(tmp_path / "a.csv", ROWS))][0].endswith("a.csv:2")
    assert [w for w, _ in iter_rows(write_parquet(tmp_path / "a.parquet", ROWS))][1].endswith(
        "a.parquet: row 2"
    )


def test_csv_with_bom_and_quoted_newline(tmp_path, sst2):
    p = tmp_path / "b.csv"
    p.write_bytes(b'\xef\xbb\xbftext,label\n"two\nlines",negative\n')
    (ex,) = load_examples(sst2, p)
    assert ex.input == "two\nlines" and ex.answer == "negative"


def test_saved_dataset_dict_names_its_splits(tmp_path, sst2):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(folder))
    splits = r"dd: holds several splits \['train'\]; give one of them, e\.g\. .*dd/train"
    with pytest.raises(DataError, match=splits):
        load_examples(sst2, folder)
    assert len(load_examples(sst2, folder / "train")) == 3


# --- bad files: one DataError naming file and line -----------------------------------------------
def test_jsonl_nested_100000_deep(tmp_path):
    p = tmp_path / "deep.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"deep\.jsonl:2: nested too deeply"):
        list(iter_rows(p))


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", r"bin\.csv: not valid UTF-8"),
        ("nul.csv", b"text,label\nfine\x00,positive\n", r"nul\.csv:2: holds a NUL byte"),
        ("jsonl.csv", json.dumps(ROWS[0]).encode() + b"\n", r"jsonl\.csv:1: looks like JSON, not a CSV"),
        ("ragged.csv", b"text,label\na film,positive,extra\n", r"ragged\.csv:2: 3 values but the header"),
        ("quote.csv", b'text,label\n"never closed,positive\n', r"quote\.csv:\d+: not valid CSV"),
        ("dup.csv", b"text,text\na,b\n", r"dup\.csv:1: the header names column\(s\) \['text'\] twice"),
        ("empty.csv", b"", r"empty\.csv: no rows"),
        ("header-only.csv", b"text,label\n", r"header-only\.csv: no rows"),
        ("text.parquet", b"text,label\nhi,positive\n", r"text\.parquet: not a Parquet file"),
        ("empty.parquet", b"", r"empty\.parquet: not a Parquet file"),
    ],
)
def test_bad_file(tmp_path, sst2, name, content, needle):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        load_examples(sst2, p)


def test_parquet_with_no_rows_and_missing_field(tmp_path, sst2):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "none.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}), empty)
    with pytest.raises(DataError, match=r"none\.parquet: no rows"):
        load_examples(sst2, empty)
    bad = write_parquet(tmp_path / "f.parquet", [{"text": "fine", "sentiment": "positive"}])
    with pytest.raises(DataError, match=r"f\.parquet: row 1: missing field `label`"):
        load_examples(sst2, bad)


def test_csv_missing_field_and_bad_label(tmp_path, sst2):
    p = write_csv(tmp_path / "m.csv", [{"text": "fine", "sentiment": "positive"}])
    with pytest.raises(DataError, match=r"m\.csv:2: missing field `label`"):
        load_examples(sst2, p)
    q = write_csv(tmp_path / "l.csv", ROWS + [{"text": "meh", "label": "neutral"}])
    with pytest.raises(DataError, match=r"l\.csv:5: label 'neutral' is not in task\.labels"):
        load_examples(sst2, q)


def test_folder_that_is_not_a_saved_dataset(tmp_path, sst2):
    with pytest.raises(DataError, match="is a folder, but not a dataset saved with `save_to_disk`"):
        load_examples(sst2, tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset_info.json").write_text("{")
    (broken / "state.json").write_text("{}")
    with pytest.raises(DataError, match=r"broken: cannot load the saved dataset"):
        load_examples(sst2, broken)


def test_read_rows_limit_and_empty(tmp_path, write_jsonl):
    assert len(read_rows(write_jsonl("a.jsonl", ROWS), limit=2)) == 2
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        read_rows(tmp_path / "e.jsonl")


# --- hf:NAME[:CONFIG]:SPLIT: the hub is not reachable from tests ---------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hf_source_unreachable_hub_is_one_clear_error(monkeypatch, sst2):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(DataError, match=r"hf:psilm-test/none:rte:train: cannot reach the Hugging Face Hub"):
        load_examples(sst2, "hf:psilm-test/none:rte:train")


def test_hf_source_offline_and_not_cached(monkeypatch, tmp_path, sst2):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    with pytest.raises(DataError, match=r"hf:psilm-test/none:train\[:10\]: not in the local Hugging Face"):
        load_examples(sst2, "hf:psilm-test/none:train[:10]")


@pytest.mark.parametrize("spec", ["hf:", "hf:name", "hf:a:b:c:d", "hf:name:"])
def test_hf_source_malformed(spec, sst2):
    with pytest.raises(DataError, match="expected hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"):
        load_examples(sst2, spec)


def test_hf_source_in_a_config_is_not_a_path(tmp_path):
    from psilm.config import load_config

    cfg = load_config(data={"task": "sst2", "data": {"train": "hf:nyu-mll/glue:sst2:train"}})
    assert str(cfg.data.train) == "hf:nyu-mll/glue:sst2:train"
