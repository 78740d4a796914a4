"""Shared fixtures: paths to the public data sets and small JSONL files written per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(autouse=True)
def _rates_in_tmp(tmp_path_factory, monkeypatch):
    """Steps the tests run record their rates in the session's temporary folder, not in the
    user's $PSILM_CACHE/rates.json (which `psilm plan` reads)."""
    from psilm.run import rates

    monkeypatch.setattr(rates, "_path", lambda: tmp_path_factory.getbasetemp() / "rates.json")


@pytest.fixture
def write_jsonl(tmp_path):
    def _write(name: str, rows: list[dict]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def sst2_rows() -> list[dict]:
    """A small balanced SST-2 pool and a disjoint test slice, from the public training split."""
    rows = [json.loads(line) for line in (DATA / "sst2" / "train.jsonl").read_text().splitlines()[:200]]
    return rows


@pytest.fixture
def tiny_config(tmp_path, write_jsonl, sst2_rows) -> dict:
    """A config dict with its own seed and test files (no model is loaded by validation)."""
    pos = [r for r in sst2_rows if r["label"] == "positive"]
    neg = [r for r in sst2_rows if r["label"] == "negative"]
    seeds = write_jsonl("seeds.jsonl", pos[:2] + neg[:2])
    test = write_jsonl("test.jsonl", pos[10:15] + neg[10:15])
    return {"task": "sst2", "data": {"seeds": str(seeds), "test": str(test), "n_test": None}}
