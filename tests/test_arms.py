"""The arms table and the policy of what each arm trains on (plain data, no model)."""

from __future__ import annotations

import pytest

from psilm import arms
from psilm.config import load_config
from psilm.errors import ConfigError, DataError
from psilm.run.folder import Layout
from psilm.tasks import Example


def ex(text: str, label: str = "positive") -> Example:
    return Example(text, label, label, label)


def test_the_table_answers_what_the_pipeline_asks():
    a = arms.ARMS
    first = [n for n in arms.NAMES if a[n].round == 1]
    assert [n for n in first if a[n].generated] == ["direct", "psi", "teacher"]
    assert [n for n in arms.NAMES if not a[n].trained] == ["zero_shot", "teacher_answers"]
    assert [n for n in arms.NAMES if a[n].answers == "teacher"] == ["teacher_answers"]
    assert [n for n in first if a[n].uses_principles] == ["psi", "teacher"]
    assert (a["psi"].mode, a["teacher"].mode, a["direct"].mode) == ("psi", "psi", "direct")
    assert a["teacher"].writer == "teacher" and a["psi"].writer == "generator"
    assert [n for n in first if a[n].shares_count] == ["direct", "psi", "teacher", "human"]
    assert all(b is None or b in a for b in (x.compared_with for x in a.values()))
    # round arms: after the round-1 arms, each compared with (and built on) the round before
    assert arms.NAMES[len(first) : len(first) + 4] == (
        "direct_round2",
        "psi_round2",
        "direct_round3",
        "psi_round3",
    )
    r3 = a["psi_round3"]
    assert (r3.round, r3.base, r3.previous, r3.compared_with, r3.mode) == (
        3,
        "psi",
        "psi_round2",
        "psi_round2",
        "psi",
    )
    assert a["psi_round2"].previous == "psi" and a["direct_round2"].mode == "direct"
    assert arms.rounds_of(["zero_shot", "psi"], 3) == ["zero_shot", "psi", "psi_round2", "psi_round3"]
    assert arms.rounds_of(["psi", "direct"], 1) == ["psi", "direct"]


def test_config_reads_the_table(tiny_config):
    tiny_config.pop("arms", None)
    assert load_config(data=tiny_config).arms == list(arms.DEFAULT)
    with pytest.raises(ConfigError, match=r"arms\.1: unknown arm 'gpt'; arms are zero_shot, seed_only"):
        load_config(data={**tiny_config, "arms": ["psi", "gpt"]})


def test_order_baselines_and_stage_checks():
    assert arms.order(["human", "psi", "bogus", "zero_shot"]) == ["zero_shot", "psi", "human"]
    assert arms.baselines(["psi", "direct", "zero_shot", "human"]) == [("psi", "direct"), ("human", "psi")]
    assert arms.require("teacher", "generate").writer == "teacher"
    with pytest.raises(ConfigError, match="--arm human: filter runs for direct, psi, teacher$"):
        arms.require("human", "filter")
    with pytest.raises(ConfigError, match="--arm nope: evaluate runs for zero_shot, seed_only"):
        arms.require("nope", "evaluate")
    with pytest.raises(
        ConfigError, match="--arm psi_round2: a round arm's stages run in order under `psilm run`"
    ):
        arms.require("psi_round2", "train")


def test_every_arm_has_the_same_layout(tmp_path):
    run = Layout(tmp_path)
    for name in arms.NAMES:
        files = [run.candidates(name), run.rows(name), run.filter_report(name), run.model(name)]
        assert {p.parent for p in files} == {tmp_path / "arms" / name}
        assert run.arm_metrics(name).parent == tmp_path / "arms" / name
    assert run.merged_model("psi") == tmp_path / "arms" / "psi" / "model" / "merged"


def test_human_pool_drops_seeds_and_test_rows_as_data_without_does():
    pool = [ex("A warm film"), ex("a  WARM film "), ex("Dull", "negative"), ex("Fine"), ex("Great")]
    got = arms.human_pool(pool, seeds=[ex("fine")], test=[ex("a warm film")])
    assert [e.input for e in got] == ["Dull", "Great"]  # case and spacing ignored, order kept


def test_train_rows_per_arm():
    seeds = [ex("s1"), ex("s2", "negative")]
    kept = [{"input": f"g{i}", "output": "positive", "answer": "positive"} for i in range(5)]
    pool = [ex(f"h{i}") for i in range(10)]
    a = arms.ARMS

    def rows(name, n=3, include=False, **kw):
        return [e.input for e in arms.train_rows(a[name], n, seeds, include, 0, **kw)]

    assert rows("seed_only", include=True) == ["s1", "s2"]  # seeds once, whatever the count
    assert rows("psi", kept=kept) == ["g0", "g1", "g2"]  # cut to the equal count
    assert rows("direct", include=True, kept=kept) == ["s1", "s2", "g0", "g1", "g2"]
    human = rows("human", pool=pool)
    assert len(human) == 3 and set(human) <= {e.input for e in pool} and human == rows("human", pool=pool)
    with pytest.raises(DataError, match="human arm needs data.train"):
        rows("human")
    assert arms.train_count({"psi": 7, "direct": 4}, fallback=96) == 4
    assert arms.train_count({}, fallback=96) == 96
