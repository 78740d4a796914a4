from pathlib import Path

import pytest
import yaml

from psilm.config import load_config
from psilm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_overrides_are_typed_and_nested(tiny_config):
    cfg = load_config(
        data=tiny_config,
        overrides=[
            "generate.n=50",
            "models.teacher.backend=openai",
            "principles.levels=[task]",
            "train.include_seeds=false",
        ],
    )
    assert cfg.generate.n == 50
    assert cfg.models.teacher.backend == "openai"
    assert cfg.principles.levels == ["task"]
    assert cfg.train.include_seeds is False


def test_generate_n_left_out_follows_the_task_s_labels(tiny_config):
    """Not set, generate.n is a number a label (a task of many labels is not left a few rows each),
    200 for a kind without labels; a number given is kept, and the run folder's config holds it."""
    from psilm.stages.generate.settings import PER_LABEL, UNLABELLED

    cfg = load_config(data=tiny_config)
    assert cfg.generate.n == PER_LABEL * 2  # sst2: two labels
    labels = [f"l{i}" for i in range(9)]
    many = dict(
        tiny_config, task={"name": "t", "kind": "classification", "description": "d", "labels": labels}
    )
    assert load_config(data=many).generate.n == PER_LABEL * 9
    assert load_config(data=dict(tiny_config, task="gsm8k")).generate.n == UNLABELLED
    assert load_config(data=tiny_config, overrides=["generate.n=7"]).generate.n == 7
    again = load_config(data=yaml.safe_load(cfg.to_yaml()))
    assert again.generate.n == PER_LABEL * 2


def test_unknown_key_is_named(tiny_config):
    tiny_config["generate"] = {"nn": 3}
    with pytest.raises(ConfigError, match=r"generate\.nn: unknown setting"):
        load_config(data=tiny_config)


def test_wrong_type_is_named(tiny_config):
    with pytest.raises(ConfigError, match=r"generate\.n: Input should be a valid integer"):
        load_config(data=tiny_config, overrides=["generate.n=lots"])


def test_negative_count_is_named(tiny_config):
    with pytest.raises(ConfigError, match=r"generate\.n: Input should be greater than 0"):
        load_config(data=tiny_config, overrides=["generate.n=-5"])


def test_unknown_task_lists_builtins(tiny_config):
    tiny_config["task"] = "sentiment"
    with pytest.raises(ConfigError, match=r"task: unknown task 'sentiment'.*sst2"):
        load_config(data=tiny_config)


def test_inline_task_needs_labels(tiny_config):
    tiny_config["task"] = {"name": "t", "kind": "classification", "description": "d", "labels": ["only"]}
    with pytest.raises(ConfigError, match=r"task: .*at least two labels"):
        load_config(data=tiny_config)


@pytest.mark.parametrize("writer", ["teacher", "file"])
def test_no_principle_levels_is_refused_whoever_writes_the_principles(tiny_config, writer):
    """A psi arm from no principles at all is refused in the config, for a teacher as for a file."""
    tiny_config["arms"] = ["psi"]
    tiny_config["principles"] = {"levels": []}
    if writer == "file":
        tiny_config["principles"]["file"] = str(REPO / "src/psilm/demo/sst2_principles.yaml")
    with pytest.raises(ConfigError, match=r"principles: levels is empty; list at least one of task"):
        load_config(data=tiny_config)


def test_student_must_be_trainable(tiny_config):
    with pytest.raises(ConfigError, match=r"models\.student: .*transformers"):
        load_config(data=tiny_config, overrides=["models.student.backend=openai"])


def test_seeds_or_pool_required():
    with pytest.raises(ConfigError, match=r"data: .*data\.seeds"):
        load_config(data={"task": "sst2", "data": {}})


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("task: sst2\ndata:\n  train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(p)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    p = tmp_path / "sub" / "c.yaml"
    p.parent.mkdir()
    p.write_text(yaml.safe_dump({"task": "sst2", "data": {"train": "../pool.jsonl"}}))
    cfg = load_config(p)
    assert cfg.data.train == (tmp_path / "pool.jsonl").resolve()


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):  # every one, so that a hand edit that breaks one is caught
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.data.test is not None and cfg.data.test.name == "test.jsonl"
    assert cfg.data.train.exists()


def test_resolved_config_round_trips(tiny_config, tmp_path):
    cfg = load_config(data=tiny_config, overrides=["generate.n=7"])
    p = tmp_path / "resolved.yaml"
    p.write_text(cfg.to_yaml())
    again = load_config(p)
    assert again == cfg
