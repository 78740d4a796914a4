"""The run folder: manifest, atomic writes, append-only JSONL, fingerprints.

Only this module and pipeline.py touch the run folder. Two write disciplines keep a killed run
resumable without losing or doubling a record:

- JSON files are written to a temporary file, fsynced, then renamed over the old one.
- JSONL logs are append-only, one record per line, flushed and fsynced per record; a torn last
  line (the process died mid-write) is cut off when the log is opened again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from psilm.errors import DataError, PsilmError

MANIFEST = "manifest.json"


# --- hashing -----------------------------------------------------------------------------
def fingerprint(obj: Any) -> str:
    """A short stable hash of JSON-able data (keys sorted, paths as strings)."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# --- atomic writes -------------------------------------------------------------------------
def _storage_error(path: Path, e: OSError) -> PsilmError:
    return PsilmError(f"{path}: cannot write ({e.strerror or e}); check free space and permissions")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise _storage_error(path, e) from None


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write a whole JSONL file atomically; returns the number of records."""
    lines = [json.dumps(r, ensure_ascii=False, default=str) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


# --- append-only logs ----------------------------------------------------------------------
class JsonlLog:
    """An append-only JSONL file; each record is on disk before append() returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = self._load()
        self._fh = None

    def _load(self) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1  # a torn last line has no newline: cut it off
        if good_end < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
        records = []
        for lineno, line in enumerate(data[:good_end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{self.path}:{lineno}: corrupt record; delete the line to resume") from None
        return records

    def append(self, record: dict) -> None:
        if self._fh is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            except OSError as e:
                raise _storage_error(self.path, e) from None
        try:
            self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as e:
            raise _storage_error(self.path, e) from None
        self.records.append(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the run folder --------------------------------------------------------------------------
class RunDir:
    """One run = one folder. The manifest records, per stage, what made each output."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST
        self.manifest: dict[str, Any] = self._load_manifest()

    def _load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return read_json(self.manifest_path)
        return {"psilm_version": _version(), "created": _now(), "stages": {}}

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def save_manifest(self) -> None:
        atomic_write_json(self.manifest_path, self.manifest)

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(name, {})

    def plan(self, name: str, key: str, outputs: list[str]) -> str:
        """'skip' (done with this key), 'resume' (interrupted with this key) or 'fresh'.

        When the key changed, the old outputs are moved aside under `.superseded/`, never
        overwritten silently.
        """
        st = self.manifest["stages"].get(name, {})
        if st.get("key") == key:
            if st.get("status") == "done" and all(self.path(o).exists() for o in outputs):
                return "skip"
            return "resume"
        present = [o for o in outputs + [f"raw/{name}.jsonl"] if self.path(o).exists()]
        if present:
            aside = self.path(
                ".superseded", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{st.get('key', 'nokey')}"
            )
            for o in present:
                dest = aside / o
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.path(o)), dest)
        return "fresh"

    def start(self, name: str, key: str, inputs: dict[str, str]) -> None:
        st = self.stage(name)
        if st.get("key") != key:
            st.clear()
        st.update(status="running", key=key, inputs=inputs, started=_now())
        self.save_manifest()

    def finish(self, name: str, **info: Any) -> None:
        st = self.stage(name)
        st.update(status="done", finished=_now(), **info)
        self.save_manifest()

    def fail(self, name: str, reason: str) -> None:
        st = self.stage(name)
        st.update(status="failed", error=reason, finished=_now())
        self.save_manifest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _version() -> str:
    from psilm import __version__

    return __version__
