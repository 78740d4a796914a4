"""The ledger: per stage, per arm, teacher share, $, and psi against a teacher arm (no models)."""

import json

import pytest
import yaml
from runfolder import EVAL_TOKENS, TEACHER_PRICE, make_run

from psilm.ledger import build_ledger, savings_sentence

J = 2.0 / 3.6e6  # kWh per remote token at the fixture's 2 J/token
GRID = 0.4  # kg CO2 per kWh in the fixture


def ledger_of(tmp_path, **kw) -> dict:
    run = make_run(tmp_path, **kw)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["arms"]
    return build_ledger(manifest, cfg, metrics)


@pytest.fixture
def led(tmp_path):
    return ledger_of(tmp_path)


def row(led: dict, name: str) -> dict:
    return next(r for r in led["stages"] if r["stage"] == name)


def test_every_stage_has_energy_co2_time_and_tokens(led):
    names = [r["stage"] for r in led["stages"]]
    assert names == [
        "principles",
        "generate/direct",
        "generate/psi",
        "filter/direct",
        "filter/psi",
        "train/direct",
        "train/psi",
        "evaluate/zero_shot",
        "evaluate/direct",
        "evaluate/psi",
    ]
    for r in led["stages"]:
        assert r["energy_kwh"] > 0 and r["co2_kg"] > 0 and r["duration_s"] == 10.0, r["stage"]
    assert row(led, "generate/psi")["tokens"] == {"generator": {"prompt": 30000, "completion": 6000}}


def test_train_and_evaluate_tokens_are_folded_in_as_student(led):
    assert row(led, "train/psi")["tokens"] == {"student": {"prompt": 0, "completion": 0, "trained": 50000}}
    assert row(led, "evaluate/zero_shot")["tokens"] == {"student": {"prompt": EVAL_TOKENS, "completion": 0}}
    assert row(led, "evaluate/psi")["tokens_total"] == EVAL_TOKENS


def test_remote_teacher_energy_is_estimated_and_marked(led):
    p = row(led, "principles")
    assert p["is_estimated"] and p["estimated"]["energy_kwh"] == pytest.approx(4000 * J)
    assert p["energy_kwh"] == pytest.approx(1e-5 + 4000 * J)
    assert p["co2_kg"] == pytest.approx(1e-5 * GRID + 4000 * J * GRID)
    assert not row(led, "generate/psi")["is_estimated"]
    assert led["arms"]["psi"]["is_estimated"] and not led["arms"]["direct"]["is_estimated"]
    assert led["run"]["is_estimated"] and led["remote_roles"] == ["teacher"]


def test_remote_estimate_computed_from_tokens_when_the_manifest_has_none(tmp_path):
    run = make_run(tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["stages"]["principles"]["remote_energy"]
    p = row(build_ledger(manifest, cfg, {}), "principles")
    assert p["is_estimated"] and p["estimated"]["co2_kg"] == pytest.approx(4000 * J * GRID)


def test_arm_sums_share_the_principles_stage_and_the_run_counts_it_once(led):
    psi, direct, run = led["arms"]["psi"], led["arms"]["direct"], led["run"]
    assert psi["stages"] == ["principles", "generate/psi", "filter/psi", "train/psi", "evaluate/psi"]
    assert "principles" not in direct["stages"]
    assert led["arms"]["zero_shot"]["stages"] == ["evaluate/zero_shot"]
    own = ["generate/psi", "filter/psi", "train/psi", "evaluate/psi", "principles"]
    assert psi["co2_kg"] == pytest.approx(sum(row(led, s)["co2_kg"] for s in own))
    assert run["co2_kg"] == pytest.approx(sum(r["co2_kg"] for r in led["stages"]))
    assert run["duration_s"] == pytest.approx(10.0 * len(led["stages"]))
    assert psi["tokens"]["student"] == {"prompt": EVAL_TOKENS, "completion": 0, "trained": 50000}
    assert not psi["incomplete"]


def test_dollars_from_price_per_million_tokens(led):
    assert led["priced"]
    assert row(led, "principles")["cost_usd"] == pytest.approx(4000 * TEACHER_PRICE / 1e6)
    assert row(led, "generate/psi")["cost_usd"] == 0.0  # the generator has no price: $0, not unknown
    assert led["arms"]["psi"]["cost_usd"] == pytest.approx(0.04)
    assert led["arms"]["direct"]["cost_usd"] == 0.0


def test_the_label_checker_is_priced_as_the_generator_unless_it_has_its_own(tmp_path):
    """generate.label_check's checker tokens (a role beside the three) count in $ and in the sums."""
    run = make_run(tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["arms"]
    manifest["stages"]["generate/psi"]["tokens"]["checker"] = {"prompt": 1000, "completion": 0}
    cfg["models"]["generator"]["price_per_million_tokens"] = 2.0
    gen = manifest["stages"]["generate/psi"]["tokens"]["generator"]
    generator_tokens = sum(gen.values())
    led = build_ledger(manifest, cfg, metrics)
    assert row(led, "generate/psi")["cost_usd"] == pytest.approx((generator_tokens + 1000) * 2.0 / 1e6)
    assert led["arms"]["psi"]["tokens"]["checker"] == {"prompt": 1000, "completion": 0}
    cfg["models"]["checker"] = {"backend": "llamacpp", "model": "gemma", "price_per_million_tokens": 5.0}
    led = build_ledger(manifest, cfg, metrics)
    assert row(led, "generate/psi")["cost_usd"] == pytest.approx((generator_tokens * 2.0 + 1000 * 5.0) / 1e6)


def test_no_price_anywhere_means_no_dollars(tmp_path):
    led = ledger_of(tmp_path, remote_teacher=False)
    assert not led["priced"] and led["run"]["cost_usd"] is None
    assert all(r["cost_usd"] is None for r in led["stages"])
    assert not led["run"]["is_estimated"]


def test_teacher_share(led):
    psi = led["teacher_share"]["psi"]
    assert psi["teacher_tokens"] == 4000
    assert psi["all_tokens"] == 4000 + 36000 + 50000 + EVAL_TOKENS
    assert psi["share"] == pytest.approx(4000 / psi["all_tokens"])
    run = led["teacher_share"]["run"]
    assert run["all_tokens"] == psi["all_tokens"] + 26000 + 50000 + 2 * EVAL_TOKENS


def test_teacher_arm_projected_from_the_teachers_per_token_cost(led):
    cmp = led["psi_vs_teacher"]
    gen = row(led, "generate/psi")
    assert cmp["basis"] == "projected" and cmp["estimated"]
    expected = led["arms"]["psi"]["co2_kg"] - gen["co2_kg"] + 36000 * J * GRID
    assert cmp["teacher_co2_kg"] == pytest.approx(expected)
    assert cmp["saved_co2_kg"] == pytest.approx(expected - led["arms"]["psi"]["co2_kg"])
    assert cmp["teacher_cost_usd"] == pytest.approx(0.04 + 36000 * TEACHER_PRICE / 1e6)
    text = savings_sentence(cmp)
    assert "projected" in text and "PSI saves" in text and "(estimated)" in text


def test_teacher_arm_measured_when_it_ran(tmp_path):
    led = ledger_of(tmp_path, arms=["zero_shot", "direct", "psi", "teacher"])
    cmp = led["psi_vs_teacher"]
    assert cmp["basis"] == "measured"
    assert cmp["teacher_co2_kg"] == pytest.approx(led["arms"]["teacher"]["co2_kg"])
    assert "principles" in led["arms"]["teacher"]["stages"]
    assert row(led, "generate/teacher")["is_estimated"]
    assert "measured" in savings_sentence(cmp)


def test_local_teacher_measured_in_the_principles_stage(tmp_path):
    led = ledger_of(tmp_path, remote_teacher=False)
    cmp = led["psi_vs_teacher"]
    p = row(led, "principles")
    per_token = p["co2_kg"] / 4000
    gen = row(led, "generate/psi")
    assert cmp["basis"] == "projected" and not cmp["estimated"]
    assert cmp["teacher_co2_kg"] == pytest.approx(
        led["arms"]["psi"]["co2_kg"] - gen["co2_kg"] + 36000 * per_token
    )


def test_no_teacher_tokens_and_local_teacher_cannot_be_projected(tmp_path):
    led = ledger_of(tmp_path, remote_teacher=False, teacher_tokens=False)
    cmp = led["psi_vs_teacher"]
    assert cmp["basis"] == "unavailable" and "principles came from a file" in cmp["reason"]
    assert savings_sentence(cmp).startswith("PSI vs teacher: not available")
    assert led["teacher_share"]["psi"]["share"] == 0.0


def test_unfinished_stage_marks_its_arm_incomplete(tmp_path):
    run = make_run(tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["train/direct"] = {"status": "running", "key": "k"}
    led = build_ledger(manifest, cfg, {})
    r = row(led, "train/direct")
    assert r["energy_kwh"] is None and r["tokens_total"] == 0
    assert led["arms"]["direct"]["incomplete"] and not led["arms"]["psi"]["incomplete"]
