"""One small finished run on the tiny model (arms zero_shot and psi), built once per test session.

What `predict` and `export` read: a trained psi arm with its merged model, metrics per arm,
principles, filter report and manifest, as `psilm run` writes them.
"""

from __future__ import annotations

from pathlib import Path

from tiny import tiny_model, write_tiny_run_config


def trained_run(tmp_path_factory) -> Path:
    from psilm.shell.cli import main

    base = tmp_path_factory.getbasetemp() / "trained-run"
    run = base / "run"
    if not (run / "metrics.json").exists():
        config = write_tiny_run_config(
            base / "cfg", tiny_model(tmp_path_factory), arms=["zero_shot", "psi"], generate={"n": 8}
        )
        assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    return run


def held_out_rows(run: Path) -> Path:
    """The run's test split (the tiny config scores all of it)."""
    return run.parent / "cfg" / "test.jsonl"
