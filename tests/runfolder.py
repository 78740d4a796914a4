"""A finished run folder written by hand: what ledger and report tests read, without any model.

Shaped like a real run (see tests/test_end_to_end.py): a remote, priced teacher wrote the
principles; the embedded model generated; arms zero_shot, direct, psi (and teacher on request).
Some texts hold HTML on purpose, to check that the report escapes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from psilm.emissions import EmissionsSettings, remote_estimate

EMISSIONS = {"country_iso_code": "USA", "remote_joules_per_token": 2.0, "grid_kg_per_kwh": 0.4}
TEACHER_PRICE = 10.0  # $ per 1M tokens
EVAL_TOKENS = 9000
NASTY = "<script>alert('x')</script> & <b>bold</b>"


def _model(backend: str, model: str, price: float | None = None, base_url: str | None = None) -> dict:
    return {"backend": backend, "model": model, "base_url": base_url, "price_per_million_tokens": price}


def config(arms: list[str], remote_teacher: bool = True) -> dict:
    teacher = (
        _model("openai", "big-teacher", TEACHER_PRICE, "http://127.0.0.1:9/v1")
        if remote_teacher
        else _model("transformers", "smollm2-135m")
    )
    return {
        "name": "fixture",
        "seed": 0,
        "task": {"name": "sst2", "kind": "classification", "description": "Positive or negative review."},
        "models": {
            "teacher": teacher,
            "generator": _model("transformers", "smollm2-135m"),
            "student": _model("transformers", "smollm2-135m"),
        },
        "arms": arms,
        "emissions": EMISSIONS,
        # every section a run's config.yaml holds (a file without them reads back as cut short)
        **{k: {} for k in ("data", "principles", "generate", "filter", "train", "evaluate")},
    }


def _stage(kwh: float, tokens: dict | None = None, **extra) -> dict:
    return {
        "status": "done",
        "key": "k",
        "duration_s": 10.0,
        "energy_kwh": kwh,
        "co2_kg": kwh * 0.4,
        "energy_source": "measured (codecarbon; CPU power estimated where no RAPL)",
        "tokens": tokens or {},
        "model_calls": 0,
        **extra,
    }


def manifest(arms: list[str], remote_teacher: bool = True, teacher_tokens: bool = True) -> dict:
    em = EmissionsSettings(**EMISSIONS)
    principles_tokens = {"teacher": {"prompt": 3000, "completion": 1000}} if teacher_tokens else {}
    stages = {"principles": _stage(1e-5, principles_tokens)}
    if remote_teacher and teacher_tokens:
        stages["principles"]["remote_energy"] = [remote_estimate(em, 4000)]
    gen_tokens = {"direct": (20000, 6000), "psi": (30000, 6000), "teacher": (30000, 8000)}
    for arm in [a for a in ("direct", "psi", "teacher") if a in arms]:
        role = "teacher" if arm == "teacher" else "generator"
        prompt, completion = gen_tokens[arm]
        st = _stage(0.0025, {role: {"prompt": prompt, "completion": completion}}, model_calls=96)
        if arm == "teacher" and remote_teacher:
            st["remote_energy"] = [remote_estimate(em, prompt + completion)]
        stages[f"generate/{arm}"] = st
        stages[f"filter/{arm}"] = _stage(1e-6, n_in=6, n_kept=4)
    for arm in [a for a in arms if a != "zero_shot"]:
        stages[f"train/{arm}"] = _stage(0.004, train_tokens=50000, n_train=40)
    for arm in arms:
        stages[f"evaluate/{arm}"] = _stage(0.001, accuracy=0.5, n=100)
    return {"psilm_version": "0.1.0", "created": "2026-01-01T00:00:00+0000", "stages": stages}


def _result(acc: float) -> dict:
    return {
        "accuracy": acc,
        "n": 100,
        "correct": int(acc * 100),
        "ci95": [round(acc - 0.1, 4), round(acc + 0.09, 4)],
        "tokens": {"prompt": EVAL_TOKENS, "completion": 0},
        "per_class": {
            label: {"accuracy": acc, "n": 50, "predicted": 50} for label in ("negative", "positive")
        },
    }


ACCURACY = {"zero_shot": 0.5, "seed_only": 0.55, "direct": 0.6, "psi": 0.7, "teacher": 0.72, "human": 0.75}

PRINCIPLES = [
    {"id": "t1", "level": "task", "text": "Judge the opinion, not the plot."},
    {"id": "c-positive-1", "level": "category", "category": "positive", "text": "Praise one thing."},
    {"id": "c-negative-1", "level": "category", "category": "negative", "text": NASTY},
    {"id": "e1", "level": "error", "text": "Sarcasm is negative."},
]
for _p in PRINCIPLES:
    _p.setdefault("category", None)
    _p["use"] = "both"
    _p["source"] = "teacher:big-teacher"


def candidates(arm: str) -> list[dict]:
    recs = []
    for i in range(6):
        cat = ["positive", "negative"][i % 2]
        text = f"<img src=x onerror=alert({i})> a {cat} review number {i}"
        recs.append(
            {
                "id": f"{arm}-0-{i:05d}",
                "mode": "psi" if arm != "direct" else "direct",
                "input": text,
                "output": cat,
                "answer": cat,
                "category": cat,
                "principle_ids": [] if arm == "direct" else [f"c-{cat}-1", "t1"],
                "generator": {"model": "smollm2-135m"},
            }
        )
    return recs


def make_run(
    root: Path,
    arms: list[str] | None = None,
    remote_teacher: bool = True,
    teacher_tokens: bool = True,
) -> Path:
    """Write the run folder under root; returns its path."""
    arms = arms or ["zero_shot", "direct", "psi"]
    run = root / "run"
    run.mkdir(parents=True)
    cfg = config(arms, remote_teacher)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (run / "manifest.json").write_text(json.dumps(manifest(arms, remote_teacher, teacher_tokens)))
    results = {arm: _result(ACCURACY[arm]) for arm in arms}
    metrics = {"task": "sst2", "arms": results, "n_test": 100, "train_count": 4}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "principles.json").write_text(json.dumps({"principles": PRINCIPLES}))
    for arm in arms:
        d = run / "arms" / arm
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({**results[arm], "predictions": []}))
        if arm in ("direct", "psi", "teacher"):
            recs = candidates(arm)
            (d / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[:4]))
            report = {
                "n_in": 6,
                "n_kept": 4,
                "dropped": {"near_duplicate": 1, "bad_label": 1},
                "drop_share": 0.33,
            }
            report["warning"] = f"filters dropped a lot {NASTY}" if arm == "direct" else None
            (d / "filter_report.json").write_text(json.dumps(report))
    return run
