"""What each instance is drawn from, deterministically from (seed, index): a category, a few seed
demos and a sample of the principles for that category (the category's own first)."""

from __future__ import annotations

import random
from typing import Any

from psilm.arms import Mode
from psilm.errors import ConfigError
from psilm.stages.generate.settings import GenerateSettings, default_n
from psilm.tasks import Example, Task

GOLDEN = 0.6180339887498949  # low-discrepancy step: weighted categories stay on their shares


def draw_instances(
    task: Task,
    seeds: list[Example],
    principles: list[dict],
    settings: GenerateSettings,
    seed: int,
    mode: Mode = "psi",
) -> list[dict]:
    """One plan per instance; plan i depends only on (seed, i) and the inputs, not on n.

    mode (the arm's, see arms.py): psi draws principles; direct, seed demos only (the paper's baseline).
    """
    s = settings
    direct = mode == "direct"
    cats = _categories(task, [] if direct else principles)
    weights = _weights(cats, s.category_weights)
    offset = random.Random(f"{seed}:weights").random()
    plans = []
    for i in range(s.n or default_n(task.kind, task.labels)):  # n not set: as RunConfig resolves it
        rng = random.Random(f"{seed}:{i}")
        if weights is None:  # even: each block of len(cats) holds every category once
            block = random.Random(f"{seed}:block:{i // len(cats)}").sample(cats, len(cats))
            cat = block[i % len(cats)]
        else:
            cat = _weighted(cats, weights, (offset + (i + 1) * GOLDEN) % 1.0)
        plan = {
            "index": i,
            "id": f"{mode}-{seed}-{i:05d}",
            "mode": mode,
            "category": cat,
            "demo_ids": _demos(task, seeds, cat, s.demos_per_instance, rng),
            "principle_ids": [],
            "solve_principle_ids": [],
        }
        if not direct:
            k = s.principles_per_instance
            pool = _pool(principles, cat, "create")
            if s.principle_mix == "task_header":  # the task's rules head every prompt, outside the k
                rules = [p["id"] for p in pool if p["level"] == "task"]
                plan["principle_ids"] = rules + _sample([p for p in pool if p["level"] != "task"], k, s, rng)
            else:
                plan["principle_ids"] = _sample(pool, k, s, rng)
            if task.solves_inputs:
                plan["solve_principle_ids"] = _sample(_pool(principles, cat, "solve"), k, s, rng)
        plans.append(plan)
    return plans


def _categories(task: Task, principles: list[dict]) -> list[str | None]:
    return task.generation_categories(principles)


def _weights(cats: list, given: dict[str, float] | str | None) -> list[float] | None:
    if given is None:
        return None
    if given == "train":
        raise ConfigError(
            "generate.category_weights: 'train' is resolved from data.train by the pipeline "
            "(psilm run / prepare); here give the weights per category"
        )
    unknown = sorted(set(given) - {c for c in cats if c})
    if unknown:
        raise ConfigError(
            f"generate.category_weights: unknown categories {unknown}; "
            f"the categories are {[c for c in cats if c]}"
        )
    weights = [float(given.get(c, 0.0)) if c else 0.0 for c in cats]
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError("generate.category_weights: weights must be >= 0 with a positive sum")
    return weights


def _weighted(cats: list, weights: list[float], u: float) -> Any:
    total, acc = sum(weights), 0.0
    for cat, w in zip(cats, weights, strict=True):
        acc += w / total
        if u < acc and w > 0:
            return cat
    return next(c for c, w in zip(reversed(cats), reversed(weights), strict=True) if w > 0)


def _demos(task: Task, seeds: list[Example], cat: str | None, k: int, rng: random.Random) -> list[int]:
    same = [i for i, x in enumerate(seeds) if cat is not None and x.category == cat]
    if task.same_category_demos:  # classification: a demo of another label invites copying that label
        return sorted(rng.sample(same, min(k, len(same))))
    picked = rng.sample(same, min(k, len(same)))
    others = [i for i in range(len(seeds)) if i not in picked]
    return picked + rng.sample(others, min(k - len(picked), len(others)))


def _pool(principles: list[dict], cat: str | None, use: str) -> list[dict]:
    """Principles meant for `use` (or both) that name no category (task level, error level) or this
    one (category level; error level from a self-evolution round's mistakes in this category)."""
    return [p for p in principles if p["use"] in (use, "both") and p.get("category") in (None, cat)]


def _sample(pool: list[dict], k: int | None, s: GenerateSettings, rng: random.Random) -> list[str]:
    if k is None or k >= len(pool):
        return [p["id"] for p in pool]
    own = [p for p in pool if p.get("category") is not None] if s.prefer_category else []
    if s.principle_mix == "levels" and own and len(own) < len(pool):
        other = [p for p in pool if p.get("category") is None]
        n_other = min(k // 2, len(other))  # one of each in two slots; the rest to the category's own
        picked = rng.sample(own, min(k - n_other, len(own)))
        picked += rng.sample(other, k - len(picked))
    else:
        picked = rng.sample(own, min(k, len(own)))
        rest = [p for p in pool if p not in picked]
        picked += rng.sample(rest, k - len(picked))
    order = {p["id"]: j for j, p in enumerate(pool)}
    return sorted((p["id"] for p in picked), key=order.__getitem__)
