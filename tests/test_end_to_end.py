"""A tiny version of the whole pipeline on the embedded model, checked file by file.

Few seeds, few instances, one short training per arm, a small test slice: minutes on 2 CPU cores.
"""

import json

import pytest
import yaml

from psilm.shell.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from importlib import resources

    base = tmp_path_factory.mktemp("e2e")
    demo = resources.files("psilm").joinpath("demo")
    pool = [json.loads(x) for x in demo.joinpath("sst2_train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in demo.joinpath("sst2_test.jsonl").read_text().splitlines()][:16]
    (base / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (base / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    cfg = {
        "name": "e2e",
        "task": "sst2",
        "data": {"train": "pool.jsonl", "n_seeds": 4, "test": "test.jsonl", "n_test": None},
        "principles": {"file": str(demo.joinpath("sst2_principles.yaml"))},
        "generate": {"n": 6, "max_tokens": 40},
        "train": {"epochs": 1, "batch_size": 4, "max_length": 96},
        "arms": ["zero_shot", "seed_only", "direct", "psi", "human"],
        "emissions": {"enabled": True},
    }
    (base / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = base / "run"
    assert main(["run", str(base / "c.yaml"), "--out", str(out), "-q"]) == 0
    return out


def test_run_folder_has_every_artifact(run_dir):
    for rel in [
        "config.yaml",
        "manifest.json",
        "seeds.jsonl",
        "principles.json",
        "arms/psi/candidates.jsonl",
        "arms/psi/train.jsonl",
        "arms/psi/filter_report.json",
        "arms/psi/model/adapter",
        "arms/psi/model/merged/config.json",
        "arms/direct/candidates.jsonl",
        "arms/direct/train.jsonl",
        "arms/direct/model/merged/config.json",
        "arms/seed_only/model/merged/config.json",
        "arms/human/model/merged/config.json",
        "metrics.json",
        *(f"arms/{arm}/metrics.json" for arm in ("zero_shot", "seed_only", "direct", "psi", "human")),
    ]:
        assert (run_dir / rel).exists(), rel
    # every arm's files under arms/<arm>/: nothing of an arm at the top of the folder
    top = {p.name for p in run_dir.iterdir()}
    shared = {"config.yaml", "manifest.json", "seeds.jsonl", "principles.json", "raw", "arms", "psilm.log"}
    assert top == shared | {"metrics.json", "report.html", "report.md"}


def test_metrics_cover_every_arm(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["task"] == "sst2"
    assert set(m["arms"]) == {"zero_shot", "seed_only", "direct", "psi", "human"}
    for r in m["arms"].values():
        assert r["n"] == 16
        assert 0.0 <= r["accuracy"] <= 1.0
        lo, hi = r["ci95"]
        assert lo <= r["accuracy"] <= hi
        assert set(r["per_class"]) == {"negative", "positive"}


def test_principles_are_labelled_as_a_persons(run_dir):
    ps = json.loads((run_dir / "principles.json").read_text())["principles"]
    assert ps and all(p["source"].startswith("person:") for p in ps)


def test_candidates_record_their_provenance(run_dir):
    recs = [json.loads(x) for x in (run_dir / "arms/psi/candidates.jsonl").read_text().splitlines()]
    assert len(recs) == 6
    for r in recs:
        for key in ("input", "output", "answer", "category", "principle_ids", "generator"):
            assert key in r
        assert r["mode"] == "psi"
    direct = [json.loads(x) for x in (run_dir / "arms/direct/candidates.jsonl").read_text().splitlines()]
    assert all(r["principle_ids"] == [] and r["mode"] == "direct" for r in direct)


def test_manifest_ledger_per_stage(run_dir):
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    for name in [
        "principles",
        "generate/psi",
        "generate/direct",
        "filter/psi",
        "train/psi",
        "train/seed_only",
        "evaluate/zero_shot",
        "evaluate/psi",
    ]:
        st = stages[name]
        assert st["status"] == "done", name
        assert st["duration_s"] >= 0 and "key" in st
        assert "energy_kwh" in st and st["co2_kg"] >= 0
    assert stages["generate/psi"]["tokens"]["generator"]["completion"] > 0
    # the demo file's task-level principles head every prompt (principle_mix task_header): no warning
    assert stages["generate/psi"]["principles_shown"] == {"task": 6, "category": 6}
    assert "warning" not in stages["generate/psi"]


def test_manifest_sums_the_ledger_per_arm(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    arms = manifest["arms"]
    assert set(arms) == {"zero_shot", "seed_only", "direct", "psi", "human"}
    psi = arms["psi"]
    assert set(psi["stages"]) == {"principles", "generate/psi", "filter/psi", "train/psi", "evaluate/psi"}
    own = [manifest["stages"][s] for s in psi["stages"]]
    assert psi["energy_kwh"] == pytest.approx(sum(s["energy_kwh"] for s in own))
    assert psi["co2_kg"] == pytest.approx(sum(s["co2_kg"] for s in own)) and psi["co2_kg"] > 0
    assert psi["tokens"]["generator"] == manifest["stages"]["generate/psi"]["tokens"]["generator"]
    assert arms["zero_shot"]["stages"] == ["evaluate/zero_shot"]


def test_rerun_skips_every_stage(run_dir, capsys):
    before = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert main(["run", str(run_dir / "config.yaml"), "--out", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "[run]" not in err and "[skip] generate/psi" in err
    after = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert {k: v["key"] for k, v in before.items()} == {k: v["key"] for k, v in after.items()}
