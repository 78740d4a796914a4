"""Opening a run: every input of a config checked, then its folder created or reopened.

prepare is the one way to open a run folder for work (it writes config.yaml and seeds.jsonl);
peek opens one only to read it, as a run of the config would find it (psilm plan). Nothing is
written when an input is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psilm import data as data_mod
from psilm.config import RunConfig
from psilm.durable import atomic_write_text, text_hash
from psilm.errors import ConfigError, DataError
from psilm.run.folder import Layout, RunDir, check_root
from psilm.run.runner import Run
from psilm.stages.principles.file import load_principles_file
from psilm.stages.rounds import check_task
from psilm.tasks import Example, Task, load_task


# --- opening a run ------------------------------------------------------------------------------
def prepare(cfg: RunConfig, out: str | Path, log: Callable[[str], None] = print) -> Run:
    """Validate every input, then create or reopen the run folder. Nothing is written on error."""
    task, seeds, test, weights = _inputs(cfg, log)
    folder = RunDir(out)
    atomic_write_text(folder.config, cfg.to_yaml())
    seeds_text = _seeds_text(seeds)
    if not _holds(folder.seeds, seeds_text):  # the config's seeds, written again where they differ
        atomic_write_text(folder.seeds, seeds_text)
    folder.save_manifest()
    return Run(cfg, folder, task, seeds, test, weights, log)


def peek(cfg: RunConfig, out: str | Path | None, log: Callable[[str], None] = print) -> Run | None:
    """The run folder `out` as a run of `cfg` would find it, only read (psilm plan); None where it
    is no run folder (yet). The inputs are validated as prepare does."""
    task, seeds, test, weights = _inputs(cfg, log)
    if out is not None:
        check_root(out)
    if out is None or not Layout(out).manifest_path.exists():
        return None
    run = Run(cfg, RunDir(out, read_only=True), task, seeds, test, weights, log)
    seeds_text = _seeds_text(seeds)
    if not _holds(run.folder.seeds, seeds_text):
        run.new_seeds_hash = text_hash(seeds_text)  # what prepare would write there
    return run


def _holds(path: Path, text: str) -> bool:
    """Whether the file holds exactly `text` (a missing or unreadable one does not)."""
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _inputs(
    cfg: RunConfig, log: Callable[[str], None]
) -> tuple[Task, list[Example], list[Example] | None, Any]:
    """(task, seeds, test rows or None, category weights) of a config, each checked."""
    task = load_task(cfg.task)
    test = None
    if cfg.data.test is not None:
        test = data_mod.test_slice(data_mod.load_examples(task, cfg.data.test), cfg.data.n_test)
    elif any(a for a in cfg.arms):
        log("note: data.test is not set; the evaluate stage will be skipped")
    # public splits share a few rows (TREC: 'What does NASA stand for ?'): never use those
    pool, weights = None, cfg.generate.category_weights
    if cfg.data.train is not None and (cfg.data.seeds is None or weights == "train"):
        pool = data_mod.without(data_mod.load_examples(task, cfg.data.train), test or [])
    if cfg.data.seeds is not None:
        seeds = data_mod.load_examples(task, cfg.data.seeds)
        seeds_where = str(cfg.data.seeds)
    else:
        seeds = data_mod.draw_seeds(task, pool, cfg.data.n_seeds, cfg.seed)
        seeds_where = f"{cfg.data.train} (drawn {cfg.data.n_seeds} seeds)"
    if weights == "train":  # the config keeps `train`; the generate stage records the shares used
        weights = _train_shares(cfg, task, pool)
    data_mod.check_seeds(task, seeds, seeds_where)
    if test is not None:
        data_mod.check_overlap(seeds, test, cfg.data.test)
    if cfg.principles.file is not None:  # a malformed principles file fails here, not mid-run
        load_principles_file(cfg.principles.file, task, cfg.principles.levels)
    if cfg.evolve.rounds > 1:
        check_task(task, cfg.evolve, len(seeds))
        if cfg.evolve.error_principles == "file" and cfg.evolve.principles_file is not None:
            load_principles_file(cfg.evolve.principles_file, task)
    return task, seeds, test, weights


def _train_shares(cfg: RunConfig, task: Task, pool: list[Example] | None) -> dict[str, float]:
    if task.kind != "classification":
        raise ConfigError(
            f"generate.category_weights: 'train' needs a classification task; {cfg.task.name} is "
            f"{task.kind}: give the weights per category instead"
        )
    if pool is None:
        raise ConfigError("generate.category_weights: 'train' needs data.train (a labelled pool)")
    shares = data_mod.label_shares(task, pool)
    missing = [lbl for lbl in task.labels if lbl not in shares]
    if missing:
        raise DataError(
            f"{cfg.data.train}: no rows labelled {missing}, so category_weights 'train' would never "
            "draw them; give the weights per label instead"
        )
    return shares


def _seeds_text(seeds: list[Example]) -> str:
    return "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in seeds)
