"""User errors end with one clear line on stderr and exit code 2, never a traceback."""

import json
import subprocess
import sys

import pytest
import yaml

from psilm.shell.cli import main


def run_cli(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def config_file(tmp_path, cfg: dict):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("psilm: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_missing_config_file(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "run", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "none.yaml", "not found")


def test_malformed_seeds_name_file_and_line(capsys, tmp_path, tiny_config):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good one", "label": "positive"}\n{"text": oops}\n')
    tiny_config["data"]["seeds"] = str(bad)
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "bad.jsonl:2", "invalid JSON")
    assert not (tmp_path / "r").exists()  # nothing written on bad input


def test_unlabeled_seed(capsys, tmp_path, tiny_config, write_jsonl):
    tiny_config["data"]["seeds"] = str(write_jsonl("s.jsonl", [{"text": "fine", "label": ""}]))
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "s.jsonl:1", "empty")


def test_empty_seeds(capsys, tmp_path, tiny_config):
    (tmp_path / "empty.jsonl").write_text("")
    tiny_config["data"]["seeds"] = str(tmp_path / "empty.jsonl")
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "empty.jsonl", "no rows")


def test_seed_missing_a_label(capsys, tmp_path, tiny_config, write_jsonl):
    tiny_config["data"]["seeds"] = str(write_jsonl("s.jsonl", [{"text": "great", "label": "positive"}]))
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "no seed for label", "negative")


def test_test_split_overlapping_seeds(capsys, tmp_path, tiny_config):
    tiny_config["data"]["test"] = tiny_config["data"]["seeds"]
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "also appear in the test split")


def test_unknown_task_kind(capsys, tmp_path, tiny_config):
    tiny_config["task"] = {"name": "x", "kind": "regression", "description": "d"}
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(tmp_path / "r"))
    assert rc == 2 and "task.kind" in err and "Traceback" not in err


def test_unknown_model_alias(capsys, tmp_path, tiny_config):
    from psilm.errors import BackendError
    from psilm.llm import ModelConfig, load_backend

    with pytest.raises(BackendError, match=r"unknown model 'smollm9'.*never downloaded"):
        load_backend(ModelConfig(model="smollm9"))


def test_unreachable_endpoint_is_a_clean_error(capsys, tmp_path, tiny_config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    tiny_config["models"] = {
        "teacher": {
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "m",
            "max_retries": 1,
            "timeout_s": 2,
        }
    }
    tiny_config["principles"] = {"levels": ["task"]}
    tiny_config["arms"] = ["psi"]
    run_dir = tmp_path / "r"
    rc, _, err = run_cli(capsys, "run", str(config_file(tmp_path, tiny_config)), "--out", str(run_dir), "-q")
    assert_one_line_error(rc, err, f"127.0.0.1:{port}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["principles"]["status"] == "failed"


def test_stage_command_on_a_non_run_folder(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "principles", "--run", str(tmp_path))
    assert_one_line_error(rc, err, "not a run folder")


def test_console_script_help_and_error_without_traceback(tmp_path):
    exe = [sys.executable, "-m", "psilm.shell.cli"]
    out = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("run", "demo", "principles", "generate", "filter", "train", "evaluate"):
        assert cmd in out
    res = subprocess.run(
        exe + ["run", str(tmp_path / "x.yaml"), "--out", str(tmp_path / "r")], capture_output=True, text=True
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr and "x.yaml" in res.stderr
