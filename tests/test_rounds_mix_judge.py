"""Rounds that pay (issue 32): the blended error mix (evolve.mix_blend, mix_hold_right), the judge
that reads no labelled rows beyond the seeds (judge: seeds_cv), and per class accuracy per round in
the report. No model is loaded: training and prediction are stood in for where a step runs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml
from runfolder import make_run

from psilm.config import load_config
from psilm.errors import ConfigError
from psilm.shell.cli import main
from psilm.stages.rounds import (
    EvolveSettings,
    check_task,
    error_mix,
    fold_training,
    judge_errors,
    mix_asked,
    seed_folds,
)
from psilm.tasks import Example, load_task

MIX_OFF = {"mix_blend": 1.0, "mix_hold_right": False}  # the error shares alone, nothing held

SST2 = load_task("sst2")
POS, NEG = "positive", "negative"


# --- the blended mix: share = (1 - b) * original + b * error, held for categories already right ---
# four categories judged on 10 rows each; slice error 19/40 = 0.475, so a and b are right (0.1, 0.3)
PER = {c: {"n": 10, "errors": e} for c, e in zip("abcd", (1, 3, 6, 9), strict=True)}
OVERALL, CATS = 19 / 40, list("abcd")
EVEN = dict.fromkeys(CATS, 0.25)
ERROR = {c: e / 19 for c, e in zip("abcd", (1, 3, 6, 9), strict=True)}  # error shares (no floor)


def mix(original: dict | None = None, **settings) -> dict:
    """error_mix on PER with raw rates (no floor, no prior rows) and the given settings."""
    given = MIX_OFF | {"mix_floor": 0, "mix_prior_rows": 0} | settings  # the error mix alone unless set
    return error_mix(PER, OVERALL, CATS, original, EvolveSettings(**given))


def shares(**settings) -> dict:
    return mix(**settings)["weights"]


def test_blend_one_without_hold_is_the_mix_measured_so_far():
    assert mix() == {"weights": {"a": 0.1, "b": 0.3, "c": 0.6, "d": 0.9}}  # error rates, not shares


def test_blend_zero_keeps_the_original_shares():
    assert shares(mix_blend=0) == EVEN
    given = {"a": 2.0, "b": 1.0, "c": 1.0}  # generate.category_weights; d unnamed: 0
    assert mix(given, mix_blend=0)["weights"] == {"a": 0.5, "b": 0.25, "c": 0.25, "d": 0.0}


def test_blend_half_is_halfway_between_original_and_error_shares():
    got = shares(mix_blend=0.5)
    assert got == {c: round(0.5 * 0.25 + 0.5 * ERROR[c], 4) for c in CATS}
    assert sum(got.values()) == pytest.approx(1, abs=1e-3)


def test_categories_already_right_keep_their_original_share():
    # without the hold a (0.1 error) would fall from 0.25 to 1/19 of the new rows
    today = shares()
    assert today["a"] / sum(today.values()) == pytest.approx(1 / 19)
    held = mix(mix_hold_right=True)
    assert held["held"] == ["a", "b"]
    # a and b keep 0.25 each; c and d share the other half by their error shares (6:9)
    assert held["weights"] == {"a": 0.25, "b": 0.25, "c": 0.2, "d": 0.3}
    half = shares(mix_blend=0.5, mix_hold_right=True)
    blend = {c: 0.5 * 0.25 + 0.5 * ERROR[c] for c in "cd"}
    room = 0.5 / sum(blend.values())
    assert half == {"a": 0.25, "b": 0.25, "c": round(blend["c"] * room, 4), "d": round(blend["d"] * room, 4)}
    assert shares(mix_blend=0, mix_hold_right=True) == EVEN  # nothing moves at b = 0


def test_a_category_the_slice_lacks_counts_as_right():
    per = {"a": {"n": 10, "errors": 1}, "b": {"n": 10, "errors": 9}}  # c: not judged
    s = EvolveSettings(mix_floor=0.1, mix_hold_right=True)
    got = error_mix(per, 0.5, CATS[:3], None, s)
    assert got["held"] == ["a", "c"] and got["weights"]["c"] == round(1 / 3, 4)


def test_judge_errors_records_the_mix_and_the_judge():
    dev = [Example(f"p {i}", POS, POS, POS) for i in range(8)] + [
        Example(f"n {i}", NEG, NEG, NEG) for i in range(2)
    ]
    preds = [POS] * 8 + [POS, NEG]  # negatives: one wrong of two
    s = EvolveSettings(mix_blend=0.5, mix_hold_right=False)
    res = judge_errors(SST2, dev, preds, s, "dev", {POS: 1.0, NEG: 1.0})
    assert res["judge"] == "judge: dev (10 labelled rows beyond the seeds)" and res["labelled_rows"] == 10
    assert res["mix"]["blend"] == 0.5 and res["mix"]["original"] == {NEG: 0.5, POS: 0.5}
    assert res["category_weights"][NEG] > 0.5 > res["category_weights"][POS]
    plain = judge_errors(SST2, dev, preds, EvolveSettings(**MIX_OFF), "dev")
    shrunk = {NEG: (1 + 5 * 0.1) / 7, POS: (0 + 5 * 0.1) / 13}  # 5 prior rows at the slice's 0.1
    assert "mix" not in plain and plain["category_weights"] == {
        c: round(v + 0.1, 4) for c, v in shrunk.items()
    }
    cv = judge_errors(SST2, dev, preds, EvolveSettings(), "seeds_cv", folds=3)
    assert cv["judge"] == "judge: seeds_cv (3 folds; no labelled rows beyond the seeds)"
    assert (cv["labelled_rows"], cv["folds"]) == (0, 3)
    unseen = judge_errors(SST2, dev, preds, EvolveSettings(), "seeds_cv")  # train.include_seeds false
    assert unseen["judge"].startswith("judge: seeds_cv (no folds: the student did not train on the seeds")


# --- seeds_cv: folds of the seeds, no seed judged by a student trained on it -----------------------
def seeds(n_per: int, labels=(POS, NEG)) -> list[Example]:
    return [Example(f"Seed {lbl} number {i}.", lbl, lbl, lbl) for lbl in labels for i in range(n_per)]


def test_seed_folds_cover_every_seed_once_and_spread_the_labels():
    s = seeds(3, labels=("a", "b", "c", "d"))  # 12 seeds
    folds = seed_folds(s, 3, seed=0)
    assert len(folds) == 3 and sorted(i for f in folds for i in f) == list(range(12))
    assert [len(f) for f in folds] == [4, 4, 4]
    for f in folds:  # three of each label over three folds: one per fold
        assert sorted(s[i].answer for i in f) == ["a", "b", "c", "d"]
    assert seed_folds(s, 3, seed=0) == folds and seed_folds(s, 3, seed=1) != folds
    assert len(seed_folds(s[:2], 3, seed=0)) == 2  # at most one fold per seed


def test_a_folds_student_trains_on_everything_but_its_fold():
    s = seeds(2)
    generated = [Example("A fine film.", POS, POS, POS), Example("  seed POSITIVE number 0. ", POS, POS, POS)]
    train = s + generated
    held = [s[0], s[2]]
    got = fold_training(train, held)
    assert got == [s[1], s[3], generated[0]]  # the held seeds and a copy of one (case, spacing) are out


@pytest.fixture
def round_two(tmp_path, tiny_config, monkeypatch):
    """A run folder whose psi (round 1) is 'trained': 4 seeds + 4 generated rows; the judge of
    psi_round2 then runs with training and prediction stood in for (no model is loaded)."""
    from psilm import run as pipeline
    from psilm.stages.rounds import judge as J  # the judge's own names: it imports both at the top

    def open_run(train: dict | None = None, **evolve):
        cfg = load_config(data={**tiny_config, "arms": ["psi"], "train": train or {},
                                "evolve": {"rounds": 2, "judge": "seeds_cv", **evolve}})  # fmt: skip
        ctx = pipeline.prepare(cfg, tmp_path / "run", log=lambda _: None)
        rows = [
            {"id": f"g{i}", "input": f"generated review {i}", "output": lbl, "answer": lbl, "category": lbl}
            for i, lbl in enumerate([POS, NEG, POS, NEG])
        ]
        ctx.folder.rows("psi").parent.mkdir(parents=True, exist_ok=True)
        ctx.folder.rows("psi").write_text("".join(json.dumps(r) + "\n" for r in rows))
        ctx.folder.manifest["stages"]["train/psi"] = {"status": "done", "key": "psi-trained"}
        merged = ctx.folder.merged_model("psi")  # a stand-in for its model: a config and empty weights
        merged.mkdir(parents=True)
        (merged / "config.json").write_text('{"model_type": "llama"}')
        (merged / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
        return ctx

    trained: dict[str, set[str]] = {}  # model folder -> the inputs its student trained on
    judged: list[tuple[str, str]] = []  # (model folder, input) per prediction

    def train_model(task, examples, student, settings, out_dir, seed, progress=None):
        (out_dir / "merged").mkdir(parents=True)
        trained[str(out_dir / "merged")] = {e.input for e in examples}
        return {"n_train": len(examples), "train_tokens": 100 * len(examples)}

    def predict_examples(task, model, examples, settings, device="auto", on_progress=None, dtype="auto"):
        judged.extend((model, e.input) for e in examples)
        seen = trained.get(model, set())  # right on a row it trained on, wrong on one it did not
        preds = [e.answer if e.input in seen else (NEG if e.answer == POS else POS) for e in examples]
        return SimpleNamespace(
            preds=preds, scores=None, tokens={"prompt": 10 * len(examples), "completion": 0}
        )

    monkeypatch.setattr(J, "train_model", train_model)
    monkeypatch.setattr(J, "predict_examples", predict_examples)
    return SimpleNamespace(open=open_run, trained=trained, judged=judged)


def test_seeds_cv_judges_every_seed_with_a_student_that_never_trained_on_it(round_two):
    from psilm.run.plan import Step
    from psilm.run.runner import run_step

    ctx = round_two.open(cv_folds=3)  # 4 seeds: 3 folds (2, 1, 1)
    st = run_step(ctx, Step("judge", "psi_round2"))
    seeds_in = {s.input for s in ctx.seeds}
    assert sorted(i for _, i in round_two.judged) == sorted(seeds_in)  # every seed judged once
    assert len(round_two.trained) == 3
    everything = seeds_in | {f"generated review {i}" for i in range(4)}  # what psi trained on
    for model, trained_on in round_two.trained.items():
        fold = {text for m, text in round_two.judged if m == model}
        assert trained_on == everything - fold  # its student never saw the seeds it judged, saw the rest
    judge = json.loads(ctx.folder.judge("psi_round2").read_text())
    assert judge["accuracy"] == 0 and judge["on"] == "seeds_cv" and judge["labelled_rows"] == 0
    assert judge["judge"] == "judge: seeds_cv (3 folds; no labelled rows beyond the seeds)"
    assert st["judge"] == judge["judge"] and st["labelled_rows"] == 0
    assert st["student_tokens"]["trained"] == 100 * (7 + 7 + 6)  # each fold's rows, priced as trained
    assert not list(ctx.folder.arm("psi_round2").glob("judge_fold[0-9]*"))  # each fold's student removed
    folds = [json.loads(x) for x in ctx.folder.judge_folds("psi_round2").read_text().splitlines()]
    assert [f["fold"] for f in folds] == [0, 1, 2]


def test_seeds_cv_needs_no_fold_students_where_round_one_never_trained_on_the_seeds(round_two):
    from psilm.run.plan import Step
    from psilm.run.runner import run_step

    ctx = round_two.open(train={"include_seeds": False})
    st = run_step(ctx, Step("judge", "psi_round2"))
    assert round_two.trained == {}  # no fold trained: psi's own student judges the seeds
    assert {m for m, _ in round_two.judged} == {str(ctx.folder.merged_model("psi"))}
    assert len(round_two.judged) == 4 and st["labelled_rows"] == 0
    assert st["judge"].startswith("judge: seeds_cv (no folds: the student did not train on the seeds")
    assert ctx.folder.judge_folds("psi_round2").read_text() == ""  # no fold answered


def test_a_killed_seeds_cv_judge_resumes_at_the_next_fold(round_two, monkeypatch):
    from psilm.run.plan import Step
    from psilm.run.runner import run_step
    from psilm.stages.rounds import judge as J

    ctx = round_two.open(cv_folds=2)
    real, calls = J.train_model, []

    def killed_on_the_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(J, "train_model", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_step(ctx, Step("judge", "psi_round2"))
    assert ctx.folder.manifest["stages"]["judge/psi_round2"]["status"] == "failed"
    # the killed fold's student is gone
    assert not list(ctx.folder.arm("psi_round2").glob("judge_fold[0-9]*"))
    monkeypatch.setattr(J, "train_model", real)
    run_step(ctx, Step("judge", "psi_round2"))
    assert len(round_two.trained) == 2  # fold 0 once (before the kill), fold 1 once (after)
    assert json.loads(ctx.folder.judge("psi_round2").read_text())["n"] == 4


# --- bad settings: one line naming the setting and the fix, exit 2 ----------------------------------
@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"mix_blend": 1.5}, "evolve.mix_blend: Input should be less than or equal to 1"),
        ({"mix_blend": -0.1}, "evolve.mix_blend: Input should be greater than or equal to 0"),
        (
            {"mix_blend": 0.5, "error_mix": False},
            "evolve.mix_blend: 0.5 shapes the error mix, and "
            "evolve.error_mix is false; set evolve.error_mix=true, or drop evolve.mix_blend",
        ),  # fmt: skip
        ({"mix_hold_right": True, "error_mix": False}, "evolve.mix_hold_right: True shapes the error mix"),
        ({"judge": "cv"}, "evolve.judge: Input should be 'auto', 'dev', 'seeds' or 'seeds_cv'"),
        ({"cv_folds": 1}, "evolve.cv_folds: Input should be greater than or equal to 2"),
        ({"judge": "dev"}, "set data.train or evolve.judge=seeds_cv (no labelled rows beyond the seeds)"),
    ],
)
def test_bad_round_settings_are_one_line(tiny_config, over, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        load_config(data={**tiny_config, "evolve": {"rounds": 2, **over}})


def test_settings_the_task_or_seeds_cannot_serve():
    gsm8k = load_task("gsm8k")
    with pytest.raises(
        ConfigError, match="evolve.mix_blend: 0.5 shapes the error mix over the task's categories"
    ):
        check_task(gsm8k, EvolveSettings(mix_blend=0.5), 8)
    with pytest.raises(
        ConfigError, match="evolve.judge: seeds_cv holds out folds of the seeds, and there is 1 seed"
    ):
        check_task(gsm8k, EvolveSettings(judge="seeds_cv"), 1)
    check_task(SST2, EvolveSettings(judge="seeds_cv", mix_blend=0.5, mix_hold_right=True), 4)  # fine
    check_task(gsm8k, EvolveSettings(), 8)  # the defaults shape a mix gsm8k has none of: unused, no error
    check_task(SST2, EvolveSettings(), 1)  # auto falls back to the seeds with one seed


def test_the_defaults_are_the_policy_measured_over_three_seeds(tiny_config):
    """docs/evolve.md: judge auto = seeds_cv (two seeds or more), the mix half-way, the classes
    already right held, each round's student half the round before's (soup); a config can still ask
    for dev or the error mix alone."""
    s = EvolveSettings()
    assert (s.judge, s.mix_blend, s.mix_hold_right, s.soup) == ("auto", 0.5, True, 0.5)
    assert mix_asked(s) == {}
    assert mix_asked(EvolveSettings(mix_blend=0.5)) == {"mix_blend": 0.5}
    off = load_config(
        data={**tiny_config, "evolve": {"rounds": 2, "error_mix": False}}
    )  # no shaping asked: fine
    assert off.evolve.error_mix is False


def test_cli_mix_blend_on_a_task_without_categories_exits_2(tmp_path, tiny_config, write_jsonl, capsys):
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(1, 5)]
    cfg = {**tiny_config, "task": "gsm8k", "data": {"seeds": str(write_jsonl("g.jsonl", rows))},
           "arms": ["psi"], "evolve": {"rounds": 2, "mix_blend": 0.5}}  # fmt: skip
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evolve.mix_blend: 0.5" in err and "drop evolve.mix_blend" in err


# --- the report: per class accuracy per round, and which judge each round used ----------------------
def test_report_shows_accuracy_per_class_per_round_and_the_judge(tmp_path):
    from psilm.report import write_report

    run = make_run(tmp_path, ["direct", "psi"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["arms"] = ["direct", "psi", "psi_round2"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    manifest = json.loads((run / "manifest.json").read_text())
    line = "judge: seeds_cv (2 folds; no labelled rows beyond the seeds)"
    judge = {"on": "seeds_cv", "n": 4, "accuracy": 0.5, "labelled_rows": 0, "judge": line}
    manifest["stages"]["judge/psi_round2"] = {"status": "done", "key": "k", **judge}
    manifest["stages"]["train/psi_round2"] = {"status": "done", "key": "k", "n_train": 60}
    (run / "manifest.json").write_text(json.dumps(manifest))
    psi = json.loads((run / "arms/psi/metrics.json").read_text())
    psi["per_class"] = {POS: {"accuracy": 0.8, "n": 50}, NEG: {"accuracy": 0.6, "n": 50}}
    (run / "arms/psi/metrics.json").write_text(json.dumps(psi))
    (run / "arms/psi_round2").mkdir()
    (run / "arms/psi_round2/metrics.json").write_text(json.dumps({
        "accuracy": 0.55, "n": 100, "correct": 55, "ci95": [0.45, 0.65], "predictions": [],
        "per_class": {POS: {"accuracy": 0.3, "n": 50}, NEG: {"accuracy": 0.8, "n": 50}}}))  # fmt: skip
    write_report(run)
    md = (run / "report.md").read_text()
    assert "### Accuracy per class and round" in md
    assert f"| arm | round | {POS} | {NEG} |" in md
    assert "| psi | 1 | 80.0% | 60.0% |" in md
    assert "| psi | 2 | 30.0% (-50.0) | 80.0% (+20.0) |" in md  # the class that fell shows
    assert "- psi_round2: judge: seeds_cv (2 folds; no labelled rows beyond the seeds)" in md
    page = (run / "report.html").read_text()
    assert "Accuracy per class and round" in page and 'alt="accuracy per class and round"' in page
    assert "30.0% (-50.0)" in page
