"""API keys come only from environment variables and never reach the run folder, logs or errors.

The endpoint here is a hostile stub: it echoes the Authorization header back in its answers and
in its error bodies, the worst a server can do with a key. The key must still appear nowhere:
not in any file of the run folder (config, manifest, raw logs, principles, candidates, report),
not on stdout or stderr, not in error messages.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path

import pytest
import yaml
from fault_proxy import QuietHTTPServer

from psilm.llm import openai_backend as ob
from psilm.shell.cli import main

SECRET = "sk-psilm-test-5f2c9a81d7e64b3a-DO-NOT-LEAK"
ENV = "PSILM_TEST_SECRET_KEY"


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, dict]]:
    """An OpenAI-compatible stub that puts the caller's Authorization header in every answer (chat or
    raw completion)."""
    state = {"mode": "echo", "auth": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization", "")
            state["auth"].append(auth)
            if state["mode"] == "echo":
                text = f"1. Judge the whole review, not one word (sent with {auth}).\n2. {auth} is your key."
                if self.path.endswith("/chat/completions"):
                    kind, choice = "chat.completion", {"message": {"role": "assistant", "content": text}}
                else:  # /completions: list prompts are raw text completions
                    kind, choice = "text_completion", {"text": text}
                body = {
                    "id": "x", "object": kind, "created": 0, "model": "stub",
                    "choices": [{"index": 0, "finish_reason": "stop", **choice}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
                }  # fmt: skip
                status = 200
            else:
                status = int(state["mode"])
                body = {"error": {"message": f"rejected {auth} (key {auth.removeprefix('Bearer ')})"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def remote(url: str) -> dict:
    return {"backend": "openai", "base_url": url, "model": "stub", "api_key_env": ENV, "max_retries": 1}


def write_config(tmp: Path, url: str) -> Path:
    rows = [
        json.loads(x)
        for x in resources.files("psilm").joinpath("demo", "sst2_train.jsonl").read_text().splitlines()
    ]
    pos = [r for r in rows if r["label"] == "positive"][:2]
    neg = [r for r in rows if r["label"] == "negative"][:2]
    (tmp / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pos + neg))
    cfg = {
        "task": "sst2",
        "data": {"seeds": "seeds.jsonl"},
        "models": {"teacher": remote(url), "generator": remote(url)},
        "principles": {"levels": ["task"]},
        "generate": {"n": 4, "max_tokens": 16},
        "arms": ["psi"],
        "emissions": {"enabled": False},
    }
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_nowhere(run: Path, *texts: str) -> None:
    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for t in texts:
        assert SECRET not in t


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "BACKOFF_BASE_S", 0.01)


def test_key_reaches_the_server_but_nothing_else(tmp_path, monkeypatch, capfd, fast_backoff):
    from psilm.config import load_config
    from psilm.run import prepare

    monkeypatch.setenv(ENV, SECRET)
    run = tmp_path / "run"
    with echo_server() as (url, state):
        prepare(load_config(write_config(tmp_path, url)), run)
        for argv in (["principles"], ["generate"], ["filter"], ["report"]):
            assert main([argv[0], "--run", str(run)]) == 0, capfd.readouterr().err
        out, err = capfd.readouterr()
        assert state["auth"] and all(a == f"Bearer {SECRET}" for a in state["auth"])  # it was sent

        # the answers carried the key: what was kept has it masked
        principles = json.loads((run / "principles.json").read_text())["principles"]
        assert principles and any("Bearer *" in p["text"] for p in principles)  # markdown stars trimmed
        raw = (run / "raw" / "generate-psi-generator.jsonl").read_text()
        assert "Bearer ***" in raw
        assert ENV in (run / "config.yaml").read_text()  # the variable's name is all that is stored
        assert_nowhere(run, out, err)

        # a server that rejects the key and quotes it back: one line, the variable named, no key
        for mode, needle in (("401", f"environment variable {ENV}"), ("500", "2 attempt(s)")):
            state["mode"] = mode
            rc = main(["generate", "--run", str(run), "--set", "generate.n=6", "-q"])
            out, err = capfd.readouterr()
            assert rc == 2 and needle in err and "***" in err, err
            assert len(err.strip().splitlines()) == 1
            manifest = json.loads((run / "manifest.json").read_text())
            assert "***" in manifest["stages"]["generate/psi"]["error"]
            assert_nowhere(run, out, err)


def test_unset_key_variable_is_named(tmp_path, monkeypatch, capfd):
    from psilm.config import load_config
    from psilm.run import prepare

    monkeypatch.delenv(ENV, raising=False)
    run = tmp_path / "run"
    with echo_server() as (url, state):
        prepare(load_config(write_config(tmp_path, url)), run)
        assert main(["principles", "--run", str(run), "-q"]) == 2
        err = capfd.readouterr().err
    assert f"environment variable {ENV} is unset" in err and f"export {ENV}=" in err
    assert not state["auth"]  # nothing was sent without a key


@pytest.mark.parametrize(
    "models, needle",
    [
        ({"teacher": {"api_key": SECRET}}, "models.teacher.api_key: unknown setting"),
        ({"generator": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_env": SECRET}},
         "api_key_env must be the name of an environment variable"),
        ({"teacher": {"backend": "openai", "base_url": f"http://user:{SECRET}@127.0.0.1:9/v1"}},
         "base_url must not hold credentials"),
    ],
    ids=["key-in-config", "key-instead-of-variable-name", "key-in-url"],
)  # fmt: skip
def test_a_key_written_into_the_config_is_refused_unechoed(tmp_path, capfd, models, needle):
    path = write_config(tmp_path, "http://127.0.0.1:9/v1")
    cfg = yaml.safe_load(path.read_text())
    cfg["models"] = models
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run)]) == 2
    out, err = capfd.readouterr()
    assert needle in err and len(err.strip().splitlines()) == 1
    assert SECRET not in out + err
    assert not run.exists()  # refused before anything is written
    # the same through --set
    key, value = next(iter(models.items()))
    flat = [f"models.{key}.{k}={v}" for k, v in value.items()]
    assert main(["run", str(write_config(tmp_path, "http://127.0.0.1:9/v1")), "--out", str(run)]
                + [x for f in flat for x in ("--set", f)]) == 2  # fmt: skip
    out, err = capfd.readouterr()
    assert SECRET not in out + err and not run.exists()
