"""`psilm bench`: one config over several seeds, summarised with intervals and paired differences."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import pytest
import yaml
from runfolder import make_run

from psilm.run.bench import markdown, summarize
from psilm.shell.cli import main


def seed_folder(out, seed: int, accuracy: dict[str, float], n: int = 20):
    """A finished run folder out/seed{seed} whose arms got `accuracy` on the same n test rows."""
    arms = list(accuracy)
    run = make_run(out / f"tmp{seed}", arms=arms)
    for arm, acc in accuracy.items():
        k = round(acc * n)
        preds = [{"id": i, "correct": i < k} for i in range(n)]
        (run / "arms" / arm / "metrics.json").write_text(
            json.dumps({"accuracy": k / n, "n": n, "correct": k, "ci95": [0.0, 1.0], "predictions": preds})
        )
    (run / "metrics.json").write_text(json.dumps({"task": "sst2", "arms": {}}))
    run.rename(out / f"seed{seed}")
    shutil.rmtree(out / f"tmp{seed}")


def test_summary_over_seeds(tmp_path):
    seed_folder(tmp_path, 0, {"zero_shot": 0.5, "direct": 0.6, "psi": 0.7})
    seed_folder(tmp_path, 1, {"zero_shot": 0.5, "direct": 0.7, "psi": 0.7})
    seed_folder(tmp_path, 2, {"zero_shot": 0.5, "direct": 0.5, "psi": 0.8})
    r = summarize(tmp_path, [0, 1, 2, 3])  # seed 3 not run yet: summarised over what finished
    assert r["task"] == "sst2" and r["finished_seeds"] == [0, 1, 2]
    assert r["arms"]["psi"]["mean"] == pytest.approx(0.7333, abs=1e-4)
    assert r["arms"]["psi"]["seeds"] == {"0": 0.7, "1": 0.7, "2": 0.8}
    assert r["arms"]["zero_shot"]["ci95"] == [0.5, 0.5]
    lo, hi = r["arms"]["direct"]["ci95"]
    assert lo < 0.6 < hi
    d = r["paired"]["psi - direct"]
    assert d["mean"] == pytest.approx(0.1333, abs=1e-4) and d["seeds"] == {"0": 0.1, "1": 0.0, "2": 0.3}
    assert set(r["paired"]) == {"psi - direct"}  # each arm against its baseline in arms.py
    assert set(summarize(tmp_path, [0, 1, 2], compare="psi")["paired"]) == {"psi - direct", "psi - zero_shot"}
    assert r["arms"]["psi"]["co2_kg"] > 0 and r["arms"]["psi"]["tokens"]["generator"]["prompt"] > 0
    md = markdown(r)
    assert "| psi | 73.3 |" in md and "| psi - direct | 13.3 |" in md and "3 seeds (0, 1, 2)" in md


def test_one_seed_gets_the_interval_over_test_rows(tmp_path):
    seed_folder(tmp_path, 4, {"direct": 0.5, "psi": 0.6})
    r = summarize(tmp_path, [4], compare="direct")
    assert r["arms"]["psi"]["ci95"][0] < 0.6 < r["arms"]["psi"]["ci95"][1]  # Wilson
    assert r["paired"]["direct - psi"]["ci95"] is None and r["paired"]["direct - psi"]["ci95_rows"]


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ""])
def test_bad_seeds_are_one_line_errors(capsys, tmp_path, tiny_config, seeds):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    rc = main(["bench", str(cfg), "--out", str(tmp_path / "b"), "--seeds", seeds])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("psilm: error: ") and "seeds" in err[0]
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_bench_runs_each_seed_and_resumes(capsys, tmp_path):
    demo = resources.files("psilm").joinpath("demo")
    pool = demo.joinpath("sst2_train.jsonl").read_text()
    test = "".join(demo.joinpath("sst2_test.jsonl").read_text().splitlines(keepends=True)[:8])
    (tmp_path / "pool.jsonl").write_text(pool)
    (tmp_path / "test.jsonl").write_text(test)
    cfg = {
        "task": "sst2",
        "data": {"train": "pool.jsonl", "n_seeds": 4, "test": "test.jsonl", "n_test": None},
        "principles": {"file": str(demo.joinpath("sst2_principles.yaml"))},
        "models": {"generator": {"backend": "llamacpp", "model": "smollm2-135m"}},
        "generate": {"n": 4, "max_tokens": 32},
        "train": {"epochs": 1, "batch_size": 4, "max_length": 192},
        "arms": ["zero_shot", "seed_only", "psi"],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "bench"
    argv = ["bench", str(tmp_path / "c.yaml"), "--out", str(out), "--seeds", "0,1", "--compare", "psi", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "bench.json").read_text())
    assert r["finished_seeds"] == [0, 1] and set(r["arms"]) == {"zero_shot", "seed_only", "psi"}
    for a in r["arms"].values():
        assert a["n_test"] == 8 and set(a["seeds"]) == {"0", "1"}
    assert set(r["paired"]) == {"psi - zero_shot", "psi - seed_only"}
    assert yaml.safe_load((out / "seed1" / "config.yaml").read_text())["seed"] == 1
    seeds = [(out / f"seed{s}" / "seeds.jsonl").read_text() for s in (0, 1)]
    assert seeds[0] != seeds[1]  # each seed draws its own seed examples
    assert "| psi - seed_only |" in printed and "bench.json" in printed
    # a rerun finds every stage done and changes nothing
    before = {p: p.read_bytes() for p in out.rglob("metrics.json")}
    assert main(argv) == 0
    assert {p: p.read_bytes() for p in out.rglob("metrics.json")} == before
