"""Real model servers for tests: llama-cpp-python's OpenAI-compatible server on the embedded GGUF."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

MODEL_NAME = "smollm2-135m"  # the alias the server answers to (any name reaches its one model)


def free_port() -> int:
    """A port nothing listens on right now (and, once returned, a closed port to test against)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-n:].strip() or "(empty)"


def _models_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
            return r.status == 200 and "data" in json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def llama_server(
    n_ctx: int = 2048, n_threads: int = 1, timeout_s: float = 120.0
) -> Iterator[tuple[str, str]]:
    """Start `python -m llama_cpp.server` on the embedded model; yield (base_url, model name).

    One thread by default: llama.cpp's threads spin on barriers, so on a small shared machine
    (the test machine has 2 cores) more threads than free cores is several times slower.
    """
    from psilm.llm.llamacpp_check import ensure_works
    from psilm.llm.registry import resolve_model

    gguf = resolve_model("smollm2-135m").file
    assert gguf is not None and gguf.exists(), f"embedded GGUF not found: {gguf}"
    ensure_works(gguf, n_threads)  # a build that crashes here is one clear error, not a dead server
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf), "--model_alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
    ]  # fmt: skip
    # the server's output goes to a file, not a pipe: a full pipe would block the server
    with tempfile.TemporaryDirectory(prefix="psilm-llama-server-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                deadline = time.monotonic() + timeout_s
                while not _models_ready(base_url):
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"llama_cpp.server exited with code {proc.returncode} before it answered "
                            f"GET {base_url}/models; its output ends with:\n{_tail(log_path)}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"llama_cpp.server did not answer GET {base_url}/models within "
                            f"{timeout_s:g} s; its output ends with:\n{_tail(log_path)}"
                        )
                    time.sleep(0.2)
                yield base_url, MODEL_NAME
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
