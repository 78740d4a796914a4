"""Everything a report shows, read from a run folder (through the store's layout) as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psilm import arms as arms_table
from psilm.arms import PSI
from psilm.data import round_robin
from psilm.ledger import build_ledger
from psilm.readback import read_yaml_mapping
from psilm.run.folder import SAVED_SECTIONS, RunDir
from psilm.stages.generate import principles_shown

N_SAMPLES = 6


def load_run(folder: str | Path) -> dict[str, Any]:
    """Everything the report shows, as plain data; a finished or half-finished run (a file not
    written yet is left out; one that is there is read checked)."""
    run = RunDir(folder, read_only=True)

    def _read(path: Path, default: Any = None) -> Any:
        return run.read(path) if path.exists() else default

    def _jsonl(path: Path) -> list[dict]:
        return run.records(path) if path.exists() else []

    config = read_yaml_mapping(run.config, SAVED_SECTIONS, run.fix(run.config))
    arms = arms_table.order(config.get("arms") or [])
    metrics = _read(run.metrics, {}) or {}
    results: dict[str, dict] = {}
    for arm in arms:  # per-arm files first: they exist before the run's metrics.json does
        res = _read(run.arm_metrics(arm)) or (metrics.get("arms") or {}).get(arm)
        if res:
            results[arm] = {k: v for k, v in res.items() if k != "predictions"}
    written = _read(run.principles, {}) or {}
    principles = written.get("principles", [])
    data = {
        arm: {
            "filter": _read(run.filter_report(arm)),
            "candidates": _jsonl(run.candidates(arm)),
            "kept_ids": {r.get("id") for r in _jsonl(run.rows(arm))},
        }
        for arm in arms
        if arms_table.ARMS[arm].generated
    }
    psi = data.get(PSI, {}).get("candidates", [])
    return {
        "path": run.root,
        "html_path": run.report_html,
        "md_path": run.report_md,
        "config": config,
        "manifest": run.manifest,
        "arms": arms,
        "results": results,
        "n_test": metrics.get("n_test") or next((r.get("n") for r in results.values()), None),
        "principles": principles,
        "principles_warning": written.get("warning"),
        "principles_coverage": written.get("coverage") or {},
        "rules_dropped": written.get("rules_dropped") or [],
        "principles_writer": written.get("teacher"),
        "shown": principles_shown(principles, psi)[0] if PSI in data else {},
        "n_psi": len(psi),
        "data": data,
        "ledger": build_ledger(run.manifest, config, results),
    }


def sample_instances(cands: list[dict], kept: set, n: int = N_SAMPLES) -> list[dict]:
    """Up to n candidates, one category after another, kept ones first."""
    ordered = sorted(cands, key=lambda r: r.get("id") not in kept)
    return round_robin(ordered, n, lambda r: str(r.get("category")))
