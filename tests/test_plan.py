"""The plan: the ordered (stage, arm) steps of a config, and `psilm plan` against a run folder."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny import tiny_model, write_tiny_run_config
from trained_run import trained_run

from psilm.config import load_config
from psilm.run.plan import plan, plan_for
from psilm.shell.cli import main


def names(steps) -> list[str]:
    return [s.name for s in steps]


def test_default_arms_data_first_then_training_then_evaluation(tiny_config):
    steps = plan(load_config(data=tiny_config))
    assert names(steps) == [
        "generate/direct", "filter/direct",
        "principles", "generate/psi", "filter/psi",  # principles: just before the first arm that reads them
        "train/seed_only", "train/direct", "train/psi",
        "evaluate/zero_shot", "evaluate/seed_only", "evaluate/direct", "evaluate/psi",
    ]  # fmt: skip
    needs = {s.name: s.needs for s in steps}
    assert needs["generate/psi"] == ("principles",) and needs["generate/direct"] == ()
    # equal counts: a data arm trains on as many rows as the smallest data arm kept
    assert set(needs["train/psi"]) == {"filter/psi", "filter/direct"} and needs["train/seed_only"] == ()
    assert needs["evaluate/psi"] == ("train/psi",) and needs["evaluate/zero_shot"] == ()


def test_without_test_rows_nothing_is_evaluated(tiny_config):
    cfg = load_config(data={**tiny_config, "data": {**tiny_config["data"], "test": None}})
    assert not [s for s in plan(cfg) if s.stage == "evaluate"]


def test_two_rounds_judge_and_principles_are_steps_of_their_own(tiny_config):
    cfg = load_config(data={**tiny_config, "arms": ["direct", "psi"], "evolve": {"rounds": 2}})
    steps = plan(cfg)
    assert names(steps) == [
        "generate/direct", "filter/direct", "principles", "generate/psi", "filter/psi",
        "train/direct", "train/psi", "evaluate/direct", "evaluate/psi",
        "judge/direct_round2", "generate/direct_round2", "filter/direct_round2", "check/direct_round2",
        "judge/psi_round2", "principles/psi_round2", "generate/psi_round2", "filter/psi_round2",
        "check/psi_round2",
        "train/direct_round2", "train/psi_round2", "evaluate/direct_round2", "evaluate/psi_round2",
    ]  # fmt: skip
    needs = {s.name: s.needs for s in steps}
    assert set(needs["judge/psi_round2"]) == {"train/psi", "filter/psi"}  # fold students train on its rows
    assert needs["principles/psi_round2"] == ("principles", "judge/psi_round2")
    assert needs["generate/psi_round2"] == ("judge/psi_round2", "principles/psi_round2")
    assert set(needs["check/psi_round2"]) == {"filter/psi_round2", "train/psi", "filter/direct", "filter/psi"}
    for i, s in enumerate(steps):  # a step comes after every step it reads
        assert set(s.needs) <= set(names(steps[:i])), s.name


def test_a_stage_command_runs_the_steps_that_prepare_its_inputs(tiny_config):
    cfg = load_config(data={**tiny_config, "arms": ["direct", "psi"], "evolve": {"rounds": 2}})
    assert names(plan_for(cfg, "generate", "psi")) == ["principles", "generate/psi"]
    assert names(plan_for(cfg, "generate", "direct")) == ["generate/direct"]
    assert names(plan_for(cfg, "generate", "psi_round2")) == [
        "principles",
        "judge/psi_round2",
        "principles/psi_round2",
        "generate/psi_round2",
    ]
    assert names(plan_for(cfg, "train", "psi")) == ["train/psi"]  # trains on what is there
    assert names(plan_for(cfg, "generate", "teacher")) == ["principles", "generate/teacher"]  # not in arms


def test_plan_prints_the_steps_in_order(tmp_path, tiny_config, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    assert main(["plan", str(config), "--set", "evolve.rounds=2", "--set", "arms=[direct,psi]"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[:-1]] == names(
        plan(load_config(config, ["evolve.rounds=2", "arms=[direct,psi]"]))
    )
    assert out[-1].startswith("22 steps: 22 to run, 0 to skip")
    assert not (tmp_path / "manifest.json").exists()


def test_a_task_not_run_here_is_estimated_with_the_range_over_tasks(
    tmp_path, tiny_config, capsys, monkeypatch
):
    from psilm import arms
    from psilm.run import rates
    from psilm.run.plan import stage

    monkeypatch.setattr(rates, "_path", lambda: tmp_path / "rates.json")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    cfg = load_config(config, ["arms=[direct]"])
    model, units, unit = stage("generate", "direct").workload(cfg, arms.ARMS["direct"])

    def generate_line() -> tuple[str, str]:
        assert main(["plan", str(config), "--set", "arms=[direct]"]) == 0
        out = capsys.readouterr().out.splitlines()
        return next(line for line in out if "generate/direct" in line), out[-1]

    rates.record("generate", model, units, unit, 10.0, "short")  # two other tasks: 10 s and 60 s
    rates.record("generate", model, units, unit, 60.0, "long")
    line, total = generate_line()
    assert (
        "(other tasks: 10.0 s to 1 min 0 s)" in line
        and "(10.0 s to 1 min 0 s at other tasks' rates)" in total
    )
    rates.record("generate", model, units, unit, 30.0, "sst2")  # the task's own rate: no range
    line, total = generate_line()
    assert line.endswith("~30.0 s") and "other tasks" not in total


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", "missing.yaml"], "psilm: error: missing.yaml: config file not found"),
        (["plan", "{config}", "--set", "generate.n=-1"], "generate.n"),
        (["plan", "{config}", "--out", "{notafolder}"], "not a run folder"),
    ],
)
def test_plan_bad_input_is_one_line_exit_2(tmp_path, tiny_config, capsys, args, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    odd = tmp_path / "odd"  # a manifest but no config.yaml: not a run folder
    odd.mkdir()
    (odd / "manifest.json").write_text("{}")
    args = [a.format(config=config, notafolder=odd) for a in args]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err and "Traceback" not in captured.err


# --- against a finished run folder --------------------------------------------------------------------
def _plan_rows(capsys, *args) -> dict[str, tuple[str, str]]:
    assert main(["plan", *map(str, args)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {}
    for line in lines[:-1]:
        _, mode, name, why = line.split("  | ")[0].split(None, 3)
        rows[name] = (mode, why)
    return rows


@pytest.mark.slow
def test_plan_of_a_finished_run_skips_every_step_and_writes_nothing(tmp_path_factory, capsys):
    run = trained_run(tmp_path_factory)
    capsys.readouterr()  # what building the run printed
    config = run.parent / "cfg" / "config.yaml"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    rows = _plan_rows(capsys, config, "--out", run)
    assert list(rows) == ["principles", "generate/psi", "filter/psi", "train/psi", "evaluate/zero_shot",
                          "evaluate/psi"]  # fmt: skip
    assert {mode for mode, _ in rows.values()} == {"skip"}
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    # a changed training setting: training and what reads the model run again, the data is kept
    rows = _plan_rows(capsys, config, "--out", run, "--set", "train.epochs=2")
    assert rows["generate/psi"][0] == rows["filter/psi"][0] == rows["evaluate/zero_shot"][0] == "skip"
    assert rows["train/psi"] == ("run", "inputs or settings changed")
    assert rows["evaluate/psi"] == ("run", "after train/psi")

    # other seed rows: the steps that read them run again, though the folder's seeds.jsonl is the old one
    seeds = run.parent / "cfg" / "seeds.jsonl"
    other = tmp_path_factory.mktemp("plan") / "seeds.jsonl"
    other.write_text("".join(reversed(seeds.read_text().splitlines(keepends=True))))
    rows = _plan_rows(capsys, config, "--out", run, "--set", f"data.seeds={other}")
    assert rows["principles"] == ("run", "inputs or settings changed")
    assert rows["generate/psi"] == ("run", "after principles")
    assert rows["filter/psi"] == ("run", "after generate/psi") and rows["evaluate/zero_shot"][0] == "skip"
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    rows = _plan_rows(capsys, config, "--out", run.parent / "elsewhere")
    assert {why for _, why in rows.values()} == {"no run folder yet"}


@pytest.mark.slow
def test_a_stage_command_on_a_fresh_folder_runs_the_principles_first(tmp_path, tmp_path_factory, capsys):
    config = write_tiny_run_config(tmp_path / "cfg", tiny_model(tmp_path_factory), generate={"n": 4})
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "-q", "--set", "arms=[zero_shot]"]) == 0
    assert main(["generate", "--run", str(out), "--arm", "psi", "-q"]) == 0
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["principles"]["status"] == stages["generate/psi"]["status"] == "done"
