"""Seeds, test rows and the human pool as Examples, with errors that name the file and line."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psilm.errors import DataError
from psilm.io import iter_rows
from psilm.tasks import Example, Task

TEST_SLICE_SEED = 1234  # the test slice is the same for every run seed, so runs compare


def load_examples(task: Task, path: str | Path) -> list[Example]:
    """Every row of a data source (JSONL, CSV, Parquet, a save_to_disk folder, hf:...) as an Example;
    any bad row raises DataError naming file:line (or row)."""
    rows = [task.example(obj, where) for where, obj in iter_rows(path)]
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty)")
    return rows


def draw_seeds(task: Task, pool: list[Example], n: int, seed: int) -> list[Example]:
    """n examples from the pool, balanced across labels for classification."""
    rng = random.Random(seed)
    if task.kind != "classification":
        if n > len(pool):
            raise DataError(
                f"data.n_seeds={n} but the pool in data.train has only {len(pool)} rows; "
                "lower data.n_seeds or give a larger pool"
            )
        return rng.sample(pool, n)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in pool:
        by_label[ex.answer].append(ex)
    missing = [lbl for lbl in task.labels if not by_label[lbl]]
    if missing:
        raise DataError(
            f"data.train: the pool has no rows labelled {missing}; every label needs seeds, "
            "so add rows with those labels (or give data.seeds)"
        )
    if n < len(task.labels):
        raise DataError(
            f"data.n_seeds={n} is fewer than the {len(task.labels)} labels; give each label a seed"
        )
    out: list[Example] = []
    for i, lbl in enumerate(task.labels):
        want = n // len(task.labels) + (1 if i < n % len(task.labels) else 0)
        out.extend(rng.sample(by_label[lbl], min(want, len(by_label[lbl]))))
    rng.shuffle(out)
    return out


def label_shares(task: Task, pool: list[Example]) -> dict[str, float]:
    """Each label's share of a labelled pool (`generate.category_weights: train`), rounded to 4 places."""
    counts = Counter(ex.answer for ex in pool)
    return {lbl: round(counts[lbl] / len(pool), 4) for lbl in task.labels if counts[lbl]}


def check_seeds(task: Task, seeds: list[Example], where: str) -> None:
    if not seeds:
        raise DataError(f"{where}: no seed examples")
    if task.kind == "classification":
        seen = {s.answer for s in seeds}
        missing = [lbl for lbl in task.labels if lbl not in seen]
        if missing:
            raise DataError(f"{where}: no seed for label(s) {missing}; give every label at least one seed")


def test_slice(examples: list[Example], n: int | None) -> list[Example]:
    if n is None or n >= len(examples):
        return list(examples)
    return random.Random(TEST_SLICE_SEED).sample(examples, n)


def without(pool: list[Example], test: list[Example]) -> list[Example]:
    """The pool less the rows whose input is also in the test split (compared as check_overlap does)."""
    if not test:
        return pool
    test_inputs = {_norm(t.input) for t in test}
    return [e for e in pool if _norm(e.input) not in test_inputs]


def check_overlap(seeds: list[Example], test: list[Example], test_path: str | Path) -> None:
    """Seeds in the test split would inflate every score: refuse."""
    test_inputs = {_norm(t.input) for t in test}
    dup = [s.input for s in seeds if _norm(s.input) in test_inputs]
    if dup:
        raise DataError(
            f"{test_path}: {len(dup)} seed(s) also appear in the test split (e.g. {dup[0][:60]!r}); "
            "use a test split disjoint from the seeds"
        )


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def round_robin(rows: list[Any], k: int, category: Callable[[Any], str]) -> list[Any]:
    """Up to k rows, one category after another (each category's rows in order), so a common
    category does not take them all."""
    by_cat: dict[str, list[Any]] = {}
    for row in rows:
        by_cat.setdefault(category(row), []).append(row)
    out: list[Any] = []
    while len(out) < k and any(by_cat.values()):
        for items in by_cat.values():
            if items and len(out) < k:
                out.append(items.pop(0))
    return out
