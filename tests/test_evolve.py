"""Self-evolution rounds (evolve.rounds): the policies as plain functions, bad settings, a tiny
two-round run through the pipeline, and a run killed in round 2 that resumes without redoing round 1."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest
import yaml
from tiny import tiny_model, write_tiny_run_config

from psilm.config import load_config
from psilm.errors import ConfigError
from psilm.shell.cli import main
from psilm.stages.evaluate import probabilities
from psilm.stages.filter import FilterSettings
from psilm.stages.rounds import EvolveSettings, check_rows, judge_errors, merge_rows, round_seed
from psilm.tasks import Example, load_task

MIX_OFF = {"mix_blend": 1.0, "mix_hold_right": False}  # the error shares alone, nothing held

SST2 = load_task("sst2")
POS, NEG = "positive", "negative"


def row(i: int, label: str, text: str | None = None) -> dict:
    return {"id": f"r{i}", "input": text or f"film number {i} was something else", "output": label,
            "answer": label, "category": label}  # fmt: skip


def logp(p_pos: float) -> list[float]:
    """Option log-likelihoods in task.labels order whose softmax gives p(positive) = p_pos."""
    probs = {POS: p_pos, NEG: 1 - p_pos}
    return [math.log(probs[lbl]) for lbl in SST2.labels]


# --- the policies ---------------------------------------------------------------------------
ROWS = [row(0, POS), row(1, POS), row(2, NEG), row(3, NEG)]
PREDS = [POS, NEG, NEG, POS]  # the student agrees with rows 0 and 2
SCORES = [logp(0.8), logp(0.05), logp(0.4), logp(0.6)]  # row 1: 95% sure it is negative


def test_probabilities_are_a_softmax():
    assert probabilities([math.log(0.25), math.log(0.75)]) == pytest.approx([0.25, 0.75])


def test_check_none_keeps_every_row_and_records_the_students_view():
    kept, rep = check_rows(SST2, ROWS, PREDS, SCORES, EvolveSettings(check="none"), 0)
    assert [r["id"] for r in kept] == ["r0", "r1", "r2", "r3"]
    assert rep["agree"] == 0.5 and rep["decisions"] == {"keep": 4}
    assert kept[1]["check"] == {"student": NEG, "agree": False, "p_label": 0.05, "p_student": 0.95}


def test_check_agree_keeps_only_rows_the_student_agrees_with():
    kept, rep = check_rows(SST2, ROWS, PREDS, SCORES, EvolveSettings(check="agree"), 0)
    assert [r["id"] for r in kept] == ["r0", "r2"]
    assert (rep["n_in"], rep["n_kept"], rep["decisions"]) == (4, 2, {"keep": 2, "drop": 2})
    assert rep["agree_per_category"] == {POS: 0.5, NEG: 0.5}
    assert [(r["id"], r["decision"], r["p_label"]) for r in rep["rows"]] == [
        ("r0", "keep", 0.8), ("r1", "drop", 0.05), ("r2", "keep", 0.6), ("r3", "drop", 0.4)
    ]  # fmt: skip


def test_check_relabel_changes_a_label_only_above_the_threshold():
    kept, rep = check_rows(
        SST2, ROWS, PREDS, SCORES, EvolveSettings(check="relabel", relabel_min_prob=0.9), 0
    )
    assert [(r["id"], r["answer"], r["output"]) for r in kept] == [
        ("r0", POS, POS), ("r1", NEG, NEG), ("r2", NEG, NEG), ("r3", NEG, NEG)
    ]  # fmt: skip
    assert kept[1]["relabelled_from"] == POS and "relabelled_from" not in kept[3]  # row 3: only 60% sure
    assert rep["decisions"] == {"keep": 3, "relabel": 1}


def test_check_weight_keeps_rows_in_proportion_to_the_students_confidence():
    rows = [row(i, POS) for i in range(400)]
    half = [logp(0.5)] * 200 + [logp(0.99)] * 200
    kept, _ = check_rows(SST2, rows, [POS] * 400, half, EvolveSettings(check="weight"), 0)
    low = sum(int(r["id"][1:]) < 200 for r in kept)
    assert 70 < low < 130 and len(kept) - low > 190  # ~50% of the unsure half, ~99% of the sure one
    again, _ = check_rows(SST2, rows, [POS] * 400, half, EvolveSettings(check="weight"), 0)
    assert again == kept  # drawn per row id: a rerun keeps the same rows


def test_judge_errors_a_category_judged_on_one_row_does_not_take_the_mix():
    # 40 positives, 8 wrong; one negative, wrong: its raw rate 1.0 would draw most new rows
    dev = [Example(f"p {i}", POS, POS, POS) for i in range(40)] + [Example("n", NEG, NEG, NEG)]
    preds = [NEG] * 8 + [POS] * 32 + [POS]
    raw = judge_errors(SST2, dev, preds, EvolveSettings(**MIX_OFF, mix_floor=0, mix_prior_rows=0), "dev")
    assert raw["category_weights"] == {NEG: 1.0, POS: 0.2}
    w = judge_errors(SST2, dev, preds, EvolveSettings(**MIX_OFF, mix_floor=0), "dev")["category_weights"]
    assert w[NEG] == round((1 + 5 * 9 / 41) / 6, 4) and w[NEG] / w[POS] < 2  # was 5x


def test_judge_errors_weights_categories_by_error_and_lists_mistakes():
    dev = [Example(f"text {i}", lbl, lbl, lbl) for i, lbl in enumerate([POS, POS, POS, POS, NEG, NEG])]
    preds = [POS, POS, POS, NEG, NEG, POS]  # 1 of 4 positives wrong, 1 of 2 negatives wrong
    res = judge_errors(SST2, dev, preds, EvolveSettings(**MIX_OFF, mix_floor=0.1, mix_prior_rows=0), "dev")
    assert res["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert res["per_category"][NEG] == {"n": 2, "errors": 1, "error_rate": 0.5}
    assert res["category_weights"] == {NEG: 0.6, POS: 0.35}  # raw error rates + floor
    shrunk = judge_errors(SST2, dev, preds, EvolveSettings(**MIX_OFF, mix_floor=0.1), "dev")[
        "category_weights"
    ]
    overall = 2 / 6  # 5 pseudo-rows at the overall rate: (errors + 5 * overall) / (n + 5)
    assert shrunk == {NEG: round((1 + 5 * overall) / 7 + 0.1, 4), POS: round((1 + 5 * overall) / 9 + 0.1, 4)}
    assert [(m["row"], m["gold"], m["predicted"], m["category"]) for m in res["mistakes"]] == [
        (3, POS, NEG, POS), (5, NEG, POS, NEG)
    ]  # fmt: skip
    assert (
        judge_errors(SST2, dev, preds, EvolveSettings(error_mix=False), "seeds")["category_weights"] is None
    )
    assert "which the student trained on" in judge_errors(SST2, dev, preds, EvolveSettings(), "seeds")["note"]


def test_merge_rows_drops_new_rows_that_copy_old_ones():
    old = [row(0, POS, "A warm and funny film about two brothers.")]
    new = [
        row(1, POS, "a warm and FUNNY film about two brothers"),
        row(2, NEG, "Dull, slow and far too long."),
    ]
    merged, dropped = merge_rows(old, new, FilterSettings())
    assert [r["id"] for r in merged] == ["r0", "r2"] and dropped == 1


def test_round_curve_sums_each_rounds_own_stages():
    from psilm.ledger import build_ledger, round_curve

    def st(co2, **kw):
        return {"status": "done", "energy_kwh": co2 * 2, "co2_kg": co2, **kw}

    stages = {
        "principles": st(0.5),
        "generate/psi": st(1.0, tokens={"generator": {"prompt": 10, "completion": 5}}),
        "train/psi": st(2.0, n_train=40),
        "judge/psi_round2": st(0.25, on="dev", n=20, accuracy=0.6),
        "principles/psi_round2": st(0.25, tokens={"teacher": {"prompt": 7, "completion": 3}}),
        "generate/psi_round2": st(1.0, tokens={"generator": {"prompt": 20, "completion": 10}}),
        "check/psi_round2": st(0.5, policy="agree", n_in=30, n_kept=21, agree=0.7),
        "train/psi_round2": st(3.0, n_train=61),
    }
    config = {"arms": ["psi", "psi_round2"]}
    results = {"psi": {"accuracy": 0.5}, "psi_round2": {"accuracy": 0.55}}
    curve = round_curve(build_ledger({"stages": stages}, config, results), stages, results, config["arms"])
    r1, r2 = curve
    assert (r1["arm"], r1["round"], r1["accuracy"], r1["n_train"], r1["check"]) == ("psi", 1, 0.5, 40, None)
    assert r1["co2_kg"] == 3.5 and r1["generator_tokens"] == 15 and r1["teacher_tokens"] == 0  # + principles
    assert (r2["arm"], r2["round"], r2["n_train"], r2["co2_kg"], r2["co2_kg_so_far"]) == (
        "psi_round2",
        2,
        61,
        5.0,
        8.5,
    )
    assert (r2["teacher_tokens"], r2["generator_tokens"]) == (10, 30)
    assert r2["check"] == {"policy": "agree", "n_in": 30, "n_kept": 21, "agree": 0.7}
    assert r2["judge"] == {"on": "dev", "n": 20, "accuracy": 0.6}


def test_round_seeds_differ_and_round_one_keeps_the_runs():
    assert round_seed(3, 1) == 3 and len({round_seed(3, r) for r in (1, 2, 3)}) == 3


# --- bad settings: one line, exit 2 -----------------------------------------------------------
@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"evolve": {"rounds": 0}}, "evolve.rounds: Input should be greater than or equal to 1"),
        ({"evolve": {"rounds": 9}}, "evolve.rounds: Input should be less than or equal to 5"),
        ({"evolve": {"rounds": 2, "check": "vote"}}, "evolve.check: Input should be 'none', 'agree'"),
        ({"evolve": {"rounds": 2, "judge": "dev"}}, "evolve.judge: dev draws a dev slice from data.train"),
        ({"evolve": {"rounds": 2, "error_principles": "file"}}, "needs evolve.principles_file"),
        ({"evolve": {"rounds": 2}, "arms": ["zero_shot"]}, "arms lists neither; add psi"),
        ({"arms": ["psi", "psi_round2"]}, "psi_round2 is round 2, and evolve.rounds is 1"),
        ({"evolve": {"rounds": 3}, "arms": ["direct", "psi_round3"]}, "psi_round3 builds on psi_round2"),
        ({"evolve": {"rounds": 2, "relabel": 0.9}}, "evolve.relabel: unknown setting"),
        ({"evolve": {"rounds": 2, "mix_prior_rows": -1}}, "evolve.mix_prior_rows: Input should be greater"),
        ({"evolve": {"rounds": 2, "soup": 1}}, "evolve.soup: Input should be less than 1"),
        ({"evolve": {"rounds": 2, "soup": -0.5}}, "evolve.soup: Input should be greater than or equal to 0"),
    ],
)
def test_bad_evolve_settings_are_one_line(tiny_config, over, message):
    cfg = {**tiny_config, **over}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(data=cfg)


def test_rounds_add_their_arms(tiny_config):
    cfg = load_config(data={**tiny_config, "arms": ["zero_shot", "direct", "psi"], "evolve": {"rounds": 3}})
    assert cfg.arms == [
        "zero_shot",
        "direct",
        "psi",
        "direct_round2",
        "direct_round3",
        "psi_round2",
        "psi_round3",
    ]
    assert load_config(data={**tiny_config, "arms": cfg.arms, "evolve": {"rounds": 3}}).arms == cfg.arms


def test_cli_bad_evolve_input_exits_2_with_one_line(tmp_path, tiny_config, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**tiny_config, "evolve": {"rounds": 2, "judge": "dev"}}))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evolve.judge" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_relabel_needs_a_label_set(tmp_path, tiny_config, write_jsonl, capsys):
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(1, 5)]
    cfg = {**tiny_config, "task": "gsm8k", "data": {"seeds": str(write_jsonl("g.jsonl", rows))},
           "arms": ["psi"], "evolve": {"rounds": 2, "check": "relabel"}}  # fmt: skip
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "evolve.check: relabel needs label probabilities" in err and len(err.splitlines()) == 1


# --- two rounds through the pipeline on a tiny model --------------------------------------------
def _two_round_config(tmp_path, model, **evolve):
    demo = resources.files("psilm").joinpath("demo")
    local = {"model": str(model), "device": "cpu", "batch_size": 4}
    return write_tiny_run_config(
        tmp_path / "cfg",
        model,
        data={"train": str(demo.joinpath("sst2_train.jsonl"))},
        models={"generator": local, "student": local, "teacher": local},
        generate={"n": 12, "max_tokens": 24},
        arms=["direct", "psi"],
        evolve={"rounds": 2, "n_dev": 12, "check": "none", **evolve},
    )


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evolve")
    model = tiny_model(tmp_path_factory)
    config = _two_round_config(tmp, model)
    out = tmp / "run"
    assert main(["run", str(config), "--out", str(out), "-q"]) == 0
    return out


@pytest.mark.slow
def test_two_rounds_write_each_rounds_files_and_metrics(two_rounds):
    out = two_rounds
    for arm in ("psi_round2", "direct_round2"):
        for f in ("judge.json", "candidates.jsonl", "new.jsonl", "filter_report.json", "check_report.json",
                  "train.jsonl", "model/merged/config.json", "metrics.json"):  # fmt: skip
            assert (out / "arms" / arm / f).exists(), f"{arm}/{f}"
    assert (out / "arms/psi_round2/principles.json").exists()
    assert not (out / "arms/direct_round2/principles.json").exists()  # direct uses no principles
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["arms"]) == {"direct", "psi", "direct_round2", "psi_round2"}
    manifest = json.loads((out / "manifest.json").read_text())
    st = manifest["stages"]
    for arm in ("psi_round2", "direct_round2"):
        for kind in ("judge", "generate", "filter", "check", "train", "evaluate"):
            assert st[f"{kind}/{arm}"]["status"] == "done", f"{kind}/{arm}"
    # round 2 = what round 1 trained on + the new rows, cut to the same count for both round-2 arms
    psi1 = [json.loads(x) for x in (out / "arms/psi/train.jsonl").read_text().splitlines()]
    psi2 = [json.loads(x) for x in (out / "arms/psi_round2/train.jsonl").read_text().splitlines()]
    n1 = m["train_count_per_round"]["1"]
    assert [r["id"] for r in psi2[:n1]] == [r["id"] for r in psi1[:n1]]
    assert all(r["id"].startswith("psi-7919-") for r in psi2[n1:])  # round 2's own seed: new data
    check = json.loads((out / "arms/psi_round2/check_report.json").read_text())
    assert (
        check["n_train"]
        == len(psi2)
        == check["n_previous"] + check["n_kept"] - check["duplicate_of_previous"]
    )
    n2 = m["train_count_per_round"]["2"]
    assert st["train/psi_round2"]["n_train"] == st["train/direct_round2"]["n_train"] == n2 + 6  # + 6 seeds
    judge = json.loads((out / "arms/psi_round2/judge.json").read_text())
    assert (  # the default judge: the seeds, each judged by a fold student (no labelled rows beyond them)
        (judge["on"], judge["n"], judge["folds"], judge["labelled_rows"]) == ("seeds_cv", 6, 3, 0)
        and set(judge["category_weights"]) == {"positive", "negative"}
        and judge["mix"]["blend"] == 0.5
    )
    gen = st["generate/psi_round2"]
    assert gen["category_weights"] == judge["category_weights"] and gen["planned"] == 12
    rp = st["principles/psi_round2"]  # the console's summary line reads per_level
    assert sum(rp["per_level"].values()) == rp["n_principles"] and rp["per_level"].get("task")
    assert manifest["arms"]["psi_round2"]["tokens"]  # the ledger carries the round arms
    curve = [(c["arm"], c["round"], c["accuracy"]) for c in manifest["rounds"]]
    assert curve == [(a, r, m["arms"][a]["accuracy"]) for a, r in
                     [("direct", 1), ("direct_round2", 2), ("psi", 1), ("psi_round2", 2)]]  # fmt: skip


@pytest.mark.slow
def test_report_shows_the_round_curve(two_rounds):
    md = (two_rounds / "report.md").read_text()
    assert "## Rounds" in md
    assert "| psi | 2 |" in md and "| direct | 1 |" in md
    assert "Rounds" in (two_rounds / "report.html").read_text()


@pytest.mark.slow
def test_a_run_killed_in_round_two_resumes_without_redoing_round_one(tmp_path, tmp_path_factory, monkeypatch):
    from psilm.stages.rounds import check as evolve

    model = tiny_model(tmp_path_factory)
    config = _two_round_config(tmp_path, model, check="agree")
    out = tmp_path / "run"
    real = evolve.check_rows

    def interrupted(task, rows, *args):  # Ctrl-C while the student checks psi_round2's rows
        if any(r["id"].startswith("psi-") for r in rows):
            raise KeyboardInterrupt
        return real(task, rows, *args)

    monkeypatch.setattr(evolve, "check_rows", interrupted)
    assert main(["run", str(config), "--out", str(out), "-q"]) == 130
    before = json.loads((out / "manifest.json").read_text())["stages"]
    assert before["check/direct_round2"]["status"] == "done"
    assert before["check/psi_round2"]["status"] == "failed" and "rerun" in before["check/psi_round2"]["error"]
    assert not (out / "arms/psi_round2/train.jsonl").exists()
    finished = {k: v["finished"] for k, v in before.items() if v.get("status") == "done"}
    assert "train/psi" in finished and "judge/psi_round2" in finished and "generate/psi_round2" in finished
    monkeypatch.setattr(evolve, "check_rows", real)
    assert main(["run", str(config), "--out", str(out), "-q"]) == 0
    after = json.loads((out / "manifest.json").read_text())["stages"]
    # nothing finished before the interruption ran again (same finish times); the rest is done
    assert {k: after[k]["finished"] for k in finished} == finished
    assert all(st["status"] == "done" for st in after.values())
    assert after["check/psi_round2"]["policy"] == "agree"
    assert (out / "arms/psi_round2/metrics.json").exists()


@pytest.mark.slow
def test_a_round_arms_cards_show_its_own_principles(two_rounds):
    from psilm.run.finished import FinishedRun
    from psilm.use.export import card_facts

    own = json.loads((two_rounds / "arms/psi_round2/principles.json").read_text())["principles"]
    first = json.loads((two_rounds / "principles.json").read_text())["principles"]
    assert [p["id"] for p in own[: len(first)]] == [p["id"] for p in first]  # round 1's, then its own
    assert card_facts(FinishedRun(two_rounds), "psi_round2").principles == own
    assert card_facts(FinishedRun(two_rounds), "psi").principles == first


@pytest.mark.slow
def test_seeds_cv_judges_the_seeds_with_fold_students_of_the_tiny_model(two_rounds, tmp_path):
    """judge: seeds_cv for real: a student per fold trained and asked, none left on disk after."""
    import shutil

    from psilm import run as pipeline
    from psilm.run.plan import Step
    from psilm.run.runner import run_step

    run = tmp_path / "run"
    shutil.copytree(two_rounds, run)  # the module's run folder stays as the other tests read it
    cfg = load_config(run / "config.yaml", ["evolve.judge=seeds_cv", "evolve.cv_folds=2"])
    ctx = pipeline.prepare(cfg, run, log=lambda _: None)
    st = run_step(ctx, Step("judge", "psi_round2"))
    judge = json.loads((run / "arms/psi_round2/judge.json").read_text())
    assert (judge["on"], judge["n"], judge["folds"], judge["labelled_rows"]) == ("seeds_cv", 6, 2, 0)
    assert st["judge"] == "judge: seeds_cv (2 folds; no labelled rows beyond the seeds)"
    assert st["student_tokens"]["trained"] > 0 and st["student_tokens"]["prompt"] > 0
    folds = [json.loads(x) for x in (run / "arms/psi_round2/judge_folds.jsonl").read_text().splitlines()]
    assert sorted(i for f in folds for i in f["held"]) == list(range(6))
    psi_rows = ctx.folder.manifest["stages"]["train/psi"]["n_train"]
    assert all(f["n_train"] == psi_rows - len(f["held"]) for f in folds)  # round 1's rows less the fold
    assert not list((run / "arms/psi_round2").glob("judge_fold[0-9]*"))


# --- evolve.soup: a round's student blended with the round before's ---------------------------
def test_soup_models_blends_floating_tensors_and_keeps_the_rest(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from psilm.stages.train import soup_models

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file({"w": torch.tensor([1.0, 3.0]), "n": torch.tensor([1, 2])}, tmp_path / "a/model.safetensors")
    save_file({"w": torch.tensor([3.0, -1.0]), "n": torch.tensor([5, 6])}, tmp_path / "b/model.safetensors")
    assert soup_models(tmp_path / "a", tmp_path / "b", 0.25) == 1
    got = load_file(tmp_path / "a/model.safetensors")
    assert got["w"].tolist() == [1.5, 2.0] and got["n"].tolist() == [1, 2]  # 0.75 own + 0.25 previous


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        ({"w": [1.0, 2.0, 3.0]}, "no tensor w of shape (2,)"),
        ({"v": [1.0, 2.0]}, "no tensor w of shape (2,)"),
        (None, "their weight files differ"),
    ],
)
def test_soup_of_a_different_model_is_a_one_line_error(tmp_path, previous, message):
    import torch
    from safetensors.torch import save_file

    from psilm.errors import DataError
    from psilm.stages.train import soup_models

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file({"w": torch.tensor([1.0, 3.0])}, tmp_path / "a/model.safetensors")
    if previous is not None:
        save_file({k: torch.tensor(v) for k, v in previous.items()}, tmp_path / "b/model.safetensors")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        soup_models(tmp_path / "a", tmp_path / "b", 0.5)
    assert "\n" not in str(err.value) and "evolve.soup: 0" in str(err.value)


@pytest.mark.slow
def test_a_soup_round_is_the_blend_of_its_training_and_the_round_before(two_rounds, tmp_path):
    """The finished two-round run again with evolve.soup 0 and 0.25 (not the default): only the
    round-2 trainings (and what reads them) rerun, and with 0.25 psi_round2's merged weights are
    0.75 of its own training's (soup 0) and 0.25 of round 1's; no adapter is left beside them."""
    import shutil

    import torch
    from safetensors.torch import load_file

    def rerun(soup: float) -> tuple[Path, dict, dict]:
        run = tmp_path / f"run-{soup}"
        shutil.copytree(two_rounds, run)
        cfg = yaml.safe_load((two_rounds / "config.yaml").read_text())
        cfg["evolve"]["soup"] = soup
        (tmp_path / f"c-{soup}.yaml").write_text(yaml.safe_dump(cfg))
        before = json.loads((run / "manifest.json").read_text())["stages"]
        assert main(["run", str(tmp_path / f"c-{soup}.yaml"), "--out", str(run), "-q"]) == 0
        return run, before, json.loads((run / "manifest.json").read_text())["stages"]

    assert EvolveSettings().soup != 0.25  # so the 0.25 run trains round 2 again
    own, _, plain = rerun(0.0)
    run, before, after = rerun(0.25)
    for step in ("train/psi", "judge/psi_round2", "generate/psi_round2", "check/psi_round2"):
        assert after[step]["finished"] == before[step]["finished"], step  # not run again
    assert after["train/psi_round2"]["finished"] != before["train/psi_round2"]["finished"]
    soup = after["train/psi_round2"]["soup"]
    assert (soup["previous"], soup["weight"]) == ("psi", 0.25) and soup["tensors"] > 0
    assert "soup" not in plain["train/psi_round2"] and (own / "arms/psi_round2/model/adapter").exists()
    blended = load_file(run / "arms/psi_round2/model/merged/model.safetensors")
    trained = load_file(own / "arms/psi_round2/model/merged/model.safetensors")  # soup 0: as trained
    first = load_file(two_rounds / "arms/psi/model/merged/model.safetensors")
    for k, v in blended.items():
        assert torch.allclose(v.float(), 0.75 * trained[k].float() + 0.25 * first[k].float(), atol=1e-5), k
    assert not (run / "arms/psi_round2/model/adapter").exists()  # it would describe round 2 alone
    assert (run / "arms/psi_round2/metrics.json").exists()
