"""Before a process trusts llama.cpp: decode a few tokens in a child process, once per machine.

A llama.cpp build that does not suit the CPU (a native build with AMX on some Intel Xeons) dies of
a signal inside the first matrix product, taking the whole Python process with it. So before psilm
loads a GGUF through llama-cpp-python in a process, a child process (same interpreter, same import
path) loads that file with the same threads and decodes a few tokens. Its verdict is kept in
$PSILM_CACHE/llamacpp-checks.json, keyed by the library's build (its version and the hash of its
shared libraries), the model file's hash and the thread count: it costs a few seconds once per
machine, not per run. A record that is damaged, or a cache that cannot be written, costs a check
per process and a note, nothing else.

When the child dies, psilm stops with one line (BackendError, exit 2) that says what crashed and
how to rebuild llama-cpp-python for this CPU. It does not fall back to another backend: the
transformers backend reads the same GGUF dequantized, about half as fast, and samples other rows,
so a silent switch would change a run's data and cost; `backend: transformers` is one setting
away for a user who wants it (docs/backends.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from psilm.durable import file_hash, note, write_cache
from psilm.errors import BackendError, DamagedError, DataError
from psilm.llm.llamacpp_build import rebuild_command
from psilm.llm.registry import cache_dir
from psilm.readback import read_json

TIMEOUT_S = 600  # loading a model and decoding 4 tokens, with room for the slowest CPU and disk

# run in the child: load, decode a few tokens, say what the build is
_CHILD = """
import sys
import llama_cpp
path, threads = sys.argv[1], int(sys.argv[2])
llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_batch=64, n_threads=threads,
                      n_threads_batch=threads, verbose=False)
llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
llm.close()
print(llama_cpp.llama_print_system_info().decode(errors="replace"))
"""

_lock = threading.Lock()
_checked: set[str] = set()  # keys already known good in this process


def library_build() -> str:
    """llama-cpp-python's version and a hash of its files' bytes: a rebuild is a new build.
    Raises BackendError where llama-cpp-python is not installed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the llamacpp backend needs llama-cpp-python: pip install 'psilm[llamacpp]'")
    folder = Path(list(spec.submodule_search_locations)[0])
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and (f.name == "__init__.py" or ".so" in f.suffixes or f.suffix in (".dylib", ".dll")):
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(file_hash(f).encode())
    return h.hexdigest()[:16]


def _store() -> Path:
    return cache_dir() / "llamacpp-checks.json"


def _read_store() -> dict:
    again = "psilm checks llama.cpp again and writes it anew"
    try:
        return read_json(_store(), "llamacpp_checks", again)
    except DamagedError as e:
        note(str(e))
    except DataError:
        pass  # not there yet (or unreadable: writing it says why)
    return {"files": {}, "checks": {}}


def model_hash(path: Path, store: dict) -> str:
    """The file's sha256, remembered by its path, size and mtime (a 1 GB file hashes once)."""
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    files = store.setdefault("files", {})
    if ident not in files:
        files[ident] = file_hash(path)
    return files[ident]


def crash_line(what: str, returncode: int) -> str:
    """One line for a llama.cpp child that died of a signal (or failed), with the fix."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"died of {name}"
    elif returncode == 124:
        how = f"gave no answer within {TIMEOUT_S} s"
    else:
        how = f"failed (exit {returncode})"
    return (
        f"llama.cpp {how} while {what}: this build of llama-cpp-python does not run on this machine "
        "(often a native build with AMX on an Intel Xeon, or one built by a compiler whose C++ "
        f"library differs from the system's); rebuild it: {rebuild_command()} (with CC/CXX set to the "
        "system's gcc/g++ if they point elsewhere); or set backend: transformers for this model"
    )


def verdict(model: Path, n_threads: int, build: str | None = None) -> dict:
    """The cached (or fresh) verdict for this build (library_build(), computed when not given),
    model file and thread count: {"ok": bool, "returncode": int, "system_info": str, "error": str}."""
    build = build or library_build()
    with _lock:
        store = _read_store()
        key = f"{build}|{model_hash(model, store)}|{n_threads}"
        if key in store.get("checks", {}):
            return store["checks"][key]
        result = _run_child(model, n_threads)
        if result["ok"] or result["returncode"] < 0:  # a Python error (a bad file) is not a verdict
            store.setdefault("checks", {})[key] = result
            text = json.dumps(store, indent=2) + "\n"
            write_cache(_store(), text, "llama.cpp is checked once in each process")
        return result


def _run_child(model: Path, n_threads: int) -> dict:
    # the child imports what this process would: the same interpreter and the same import path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(model), str(n_threads)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "returncode": 124, "system_info": "", "error": f"no answer within {TIMEOUT_S} s"}
    lines = (proc.stdout or "").strip().splitlines()
    errs = (proc.stderr or "").strip().splitlines()
    return {
        "ok": proc.returncode == 0,
        "returncode": proc.returncode,
        "system_info": lines[-1] if proc.returncode == 0 and lines else "",
        "error": errs[-1] if errs else "",
    }


def ensure_works(model: Path, n_threads: int) -> None:
    """Return if llama.cpp decodes `model` with `n_threads` here; else BackendError, one line."""
    build = library_build()
    memo = f"{build}|{model}|{n_threads}"
    if memo in _checked:
        return
    result = verdict(model, n_threads, build)
    code = int(result["returncode"])
    if code < 0 or code == 124:  # a signal, or no answer
        what = f"decoding a few tokens of {model.name} with {n_threads} thread(s)"
        raise BackendError(crash_line(what, code))
    if result["ok"]:
        _checked.add(memo)
    # else the child raised (a file llama.cpp cannot read): the caller's own load says why
