"""A full disk or a read-only run folder: one clear line, exit code 2, nothing half-written.

Real OS errors, no mocks: a disk fills up for a child process through RLIMIT_FSIZE (writes past
the limit fail with EFBIG, "File too large", as a full disk fails with ENOSPC), and a folder is
made read-only with chmod (as root, the child first drops the capabilities that override file
permissions). Afterwards every JSON file parses, logs hold whole records only, no temporary file
is left, and once space is back the same command finishes the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import resource
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path

import pytest
import yaml
from fault_proxy import QuietHTTPServer
from tiny import tiny_model, write_tiny_run_config

from psilm.durable import JsonlLog, atomic_write_text
from psilm.run.folder import RunDir

PRINCIPLES = str(resources.files("psilm").joinpath("demo", "sst2_principles.yaml"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


# --- child processes with a full disk or a read-only view ---------------------------------------
def disk_limit(nbytes: int) -> Callable[[], None]:
    """For preexec_fn: no file the child writes may grow past nbytes (EFBIG, like a full disk)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def without_root_override() -> None:
    """For preexec_fn: root drops CAP_DAC_OVERRIDE / READ_SEARCH / FOWNER, so chmod binds it too."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP: gone from the next exec on


def cli(*argv: str, preexec: Callable[[], None] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "psilm.shell.cli", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        preexec_fn=preexec,
        cwd=cwd,
        timeout=300,
    )


def one_error_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("psilm: error: "), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_nothing_half_written(run: Path) -> None:
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"
    assert not list(run.rglob("*.partial")), "a partial model folder was left behind"
    for path in run.rglob("*.json"):
        json.loads(path.read_text())
    for path in run.rglob("*.jsonl"):
        data = path.read_text()
        assert not data or data.endswith("\n"), f"{path}: torn last line"
        [json.loads(x) for x in data.splitlines()]


# --- durable.py: atomic writes and logs under a full disk -----------------------------------------
def test_store_writes_fail_whole_on_a_full_disk(tmp_path):
    old = {"kept": True}
    (tmp_path / "a.json").write_text(json.dumps(old))
    script = f"""
import json, sys
from psilm.errors import PsilmError
from psilm.durable import JsonlLog, atomic_write_json
try:
    atomic_write_json({str(tmp_path / "a.json")!r}, {{"big": "x" * 20000}})
except PsilmError as e:
    print("json:", e)
log = JsonlLog({str(tmp_path / "log.jsonl")!r})
try:
    for i in range(100):
        log.append({{"i": i, "pad": "y" * 700}})
except PsilmError as e:
    print("log:", e, len(log.records))
"""
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=disk_limit(8000), env=ENV
    )
    assert res.returncode == 0 and not res.stderr, res.stderr
    out = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert "a.json: cannot write (File too large)" in out["json"] and "free disk space" in out["json"]
    assert json.loads((tmp_path / "a.json").read_text()) == old  # the old file, untouched
    assert "log.jsonl: cannot write (File too large)" in out["log"]
    n = int(out["log"].rsplit(" ", 1)[1])
    assert 0 < n < 100
    assert_nothing_half_written(tmp_path)  # the partial line was rolled back
    assert [r["i"] for r in JsonlLog(tmp_path / "log.jsonl").records] == list(range(n))


def test_atomic_writes_keep_the_usual_file_mode(tmp_path):
    (tmp_path / "plain").write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain").stat().st_mode
    )
    (tmp_path / "atomic").chmod(0o640)
    atomic_write_text(tmp_path / "atomic", "y")  # an existing file keeps its mode
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == 0o640


def test_temp_files_of_killed_writers_are_swept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / "raw").mkdir()
    left = [
        tmp_path / f".manifest.json.{dead_pid}.1a2b3c4d.tmp",
        tmp_path / f".x.jsonl.{dead_pid}.00ff00ff.tmp",
    ]
    mine = tmp_path / "raw" / f".y.json.{os.getpid()}.deadbeef.tmp"  # a live writer's: kept
    for p in [*left, mine]:
        p.write_text("half")
    RunDir(tmp_path)
    assert not any(p.exists() for p in left) and mine.exists()


# --- a read-only run folder ------------------------------------------------------------------------
def test_read_only_run_folder(tmp_path):
    from psilm.config import load_config
    from psilm.run import prepare, run_stage

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        json.dumps({"text": "a joy to watch", "label": "positive"})
        + "\n"
        + json.dumps({"text": "a dull mess", "label": "negative"})
        + "\n"
    )
    cfg = {"task": "sst2", "data": {"seeds": str(seeds)}, "principles": {"file": PRINCIPLES}, "arms": ["psi"]}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    run_stage(prepare(load_config(config), run, log=lambda m: None), "principles")
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    for p in sorted(modes, reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(run / 'probe')!r}, 'w')"],
            preexec_fn=without_root_override,
            capture_output=True,
        )
        if probe.returncode == 0:
            pytest.skip("cannot make a folder read-only for this user (root without CAP_SETPCAP)")
        before = snapshot(run)
        for argv in (["run", str(config), "--out", str(run)], ["principles", "--run", str(run)]):
            res = cli(*argv, "-q", preexec=without_root_override)
            one_error_line(res, str(run / "config.yaml"), "cannot write (Permission denied)", "writable")
            assert snapshot(run) == before
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))
    # writable again: the same command goes on, and the finished stage is kept
    res = cli("principles", "--run", str(run))
    assert res.returncode == 0 and "[skip] principles" in res.stderr, res.stderr


# --- a disk that fills up during generation ----------------------------------------------------------
@contextlib.contextmanager
def long_answers(n_chars: int = 700) -> Iterator[tuple[str, list[int]]]:
    """An OpenAI-compatible stub answering every request (chat or raw completion) with a distinct text
    of n_chars."""
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(req.get("seed", -1))
            words = f"This film, review {req.get('seed')}, moved me with its warm and honest story. "
            text = (words * (n_chars // len(words) + 1))[:n_chars]
            if self.path.endswith("/chat/completions"):
                kind, choice = "chat.completion", {"message": {"role": "assistant", "content": text}}
            else:  # /completions: list prompts are raw text completions
                kind, choice = "text_completion", {"text": text}
            body = json.dumps(
                {
                    "id": "x",
                    "object": kind,
                    "created": 0,
                    "model": "stub",
                    "choices": [{"index": 0, "finish_reason": "stop", **choice}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 100, "total_tokens": 110},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    "n, limit, full_file",
    [(8, 4000, "raw/generate-psi-generator.jsonl"), (3, 4000, "arms/psi/candidates.jsonl")],
    ids=["raw-log-append", "atomic-candidates-write"],
)
def test_disk_full_during_generation_then_resume(tmp_path, n, limit, full_file):
    from psilm.config import load_config
    from psilm.run import prepare

    with long_answers() as (url, seen):
        gen = {"backend": "openai", "base_url": url, "model": "stub", "batch_size": 2, "max_concurrency": 1}
        config = write_tiny_run_config(tmp_path, Path("unused"), generate={"n": n})
        cfg = yaml.safe_load(config.read_text())
        cfg["models"] = {"generator": gen}
        config.write_text(yaml.safe_dump(cfg))
        run = tmp_path / "run"
        prepare(load_config(config), run, log=lambda m: None)

        res = cli("generate", "--run", str(run), "-q", preexec=disk_limit(limit))
        one_error_line(res, str(run / full_file), "cannot write (File too large)", "rerun")
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["stages"]["generate/psi"]["status"] == "failed"
        assert not (run / "arms/psi/candidates.jsonl").exists()
        assert_nothing_half_written(run)
        raw_path = run / "raw" / "generate-psi-generator.jsonl"
        kept = raw_path.read_bytes()
        assert kept  # what was answered before the disk filled up is on disk, whole

        res = cli("generate", "--run", str(run), "-q")  # space is back
        assert res.returncode == 0, res.stderr[-3000:]
    assert raw_path.read_bytes().startswith(kept)
    keys = [json.loads(x)["key"] for x in raw_path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == n  # each request once, none twice
    assert len((run / "arms/psi/candidates.jsonl").read_text().splitlines()) == n
    assert_nothing_half_written(run)


# --- a disk that fills up while the trained model is saved ---------------------------------------------
@pytest.mark.slow
def test_disk_full_while_saving_the_model(tmp_path_factory, tmp_path):
    from psilm.config import load_config
    from psilm.run import prepare

    config = write_tiny_run_config(tmp_path, tiny_model(tmp_path_factory), train={"max_steps": 1})
    run = tmp_path / "run"
    ctx = prepare(load_config(config), run, log=lambda m: None)
    rows = [
        {"input": s.input, "output": s.output, "answer": s.answer, "category": s.category} for s in ctx.seeds
    ]
    (run / "arms/psi").mkdir(parents=True)
    (run / "arms/psi/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    res = cli(
        "train", "--run", str(run), "-q", preexec=disk_limit(1_000_000)
    )  # the tokenizer alone is 3.5 MB
    one_error_line(res, str(run), "cannot write (File too large)", "rerun")
    assert json.loads((run / "manifest.json").read_text())["stages"]["train/psi"]["status"] == "failed"
    assert not (
        run / "arms/psi/model"
    ).exists()  # no half-saved model: it is renamed into place only when whole
    assert_nothing_half_written(run)
