"""Data-parallel training under torchrun (2 CPU processes, gloo): only rank 0 writes the run folder.

Before the fix every rank ran the bookkeeping: both wrote the manifest and both moved
model.partial/ to model/, so one rank failed and the trained model was lost.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from tiny import build_tiny_model

from psilm.durable import is_main_process


def test_rank_decides_who_writes(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()  # a plain process
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_other_ranks_write_nothing(tmp_path, monkeypatch):
    from psilm.durable import JsonlLog, atomic_write_json
    from psilm.run.folder import RunDir

    monkeypatch.setenv("RANK", "1")
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    log = JsonlLog(tmp_path / "log.jsonl")
    log.append({"id": 1})
    run = RunDir(tmp_path / "run")
    run.start("s", "k", 1, {})
    run.finish("s", n=1)
    assert log.records == [{"id": 1}] and run.stage("s")["status"] == "done"  # kept in memory
    assert list(tmp_path.iterdir()) == []  # and nothing on disk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tmp_path):
    from psilm.config import load_config
    from psilm.run import prepare

    tiny = build_tiny_model(tmp_path / "tiny")
    seeds = tmp_path / "seeds.jsonl"
    rows = [
        {"text": f"{'great' if i % 2 else 'awful'} film {i}", "label": "positive" if i % 2 else "negative"}
        for i in range(8)
    ]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "task": "sst2",
        "data": {"seeds": str(seeds)},
        "models": {"student": {"model": str(tiny)}},
        "arms": ["seed_only"],
        "train": {"epochs": 1, "batch_size": 2, "max_length": 64},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    prepare(load_config(tmp_path / "c.yaml"), run, log=lambda m: None)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         "-m", "psilm.shell.cli", "train", "-r", str(run), "--arm", "seed_only", "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]

    stage = json.loads((run / "manifest.json").read_text())["stages"]["train/seed_only"]
    assert stage["status"] == "done"
    assert stage["steps"] == 2  # 8 rows, 2 per process per step, 2 processes: data parallel
    model = run / "arms" / "seed_only" / "model"
    assert (model / "merged" / "config.json").exists() and (model / "adapter").is_dir()
    assert not (run / "arms" / "seed_only" / "model.partial").exists()
    assert not list(run.rglob("*.tmp"))
