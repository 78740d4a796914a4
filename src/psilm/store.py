"""The run folder: manifest, atomic writes, append-only JSONL, fingerprints.

Only this module and pipeline.py (with rounds.py) touch the run folder. Two write disciplines keep
a killed run resumable without losing or doubling a record:

- JSON files are written to a temporary file, fsynced, then renamed over the old one. The
  temporary file's name carries the writer's pid, so one left behind by a killed process is
  removed when the run folder is opened again.
- JSONL logs are append-only, one record per line, written and fsynced per record; a torn last
  line (the process died mid-write) is cut off when the log is opened again, and a failed write
  (disk full) is rolled back before the error is raised.

A write that fails for lack of space or permission raises PsilmError naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
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
    try:
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None
    return h.hexdigest()[:16]


# --- storage errors ------------------------------------------------------------------------
# errno values that mean "the disk or folder refuses the write", not "psilm has a bug"
STORAGE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO")
    if hasattr(errno, name)
)


def storage_error(path: str | Path, e: OSError | int) -> PsilmError:
    """A one-line user error for a write the disk or folder refused (an OSError or an errno)."""
    reason = os.strerror(e) if isinstance(e, int) else (e.strerror or str(e))
    return PsilmError(
        f"{path}: cannot write ({reason}); free disk space or make the folder writable, "
        "then rerun the same command to resume"
    )


# native libraries (tokenizers, safetensors) report OS errors as text, the Rust way
_NATIVE_OS_ERROR = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def storage_errno(e: BaseException) -> int | None:
    """The errno when `e`, or an error that caused it, is the disk or folder refusing a write."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in STORAGE_ERRNOS:
            return x.errno
        m = _NATIVE_OS_ERROR.search(str(x))
        if m and int(m.group(1) or m.group(2)) in STORAGE_ERRNOS:
            return int(m.group(1) or m.group(2))
        x = x.__cause__ or x.__context__
    return None


# --- who writes ----------------------------------------------------------------------------
def is_main_process() -> bool:
    """False on the other ranks of a multi-process launch (torchrun, accelerate, deepspeed).

    Only rank 0 writes to the run folder: the other ranks read it and compute (data-parallel
    training), and every write below is a no-op for them.
    """
    try:
        return int(os.environ.get("RANK") or 0) == 0
    except ValueError:
        return True


# --- atomic writes -------------------------------------------------------------------------
TMP_SUFFIX = ".tmp"


def atomic_write_text(path: str | Path, text: str) -> None:
    if not is_main_process():
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the pid in the name lets a later run remove what a killed writer left behind
        fd, tmp = _create_temp(path)
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
        raise storage_error(path, e) from None


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new `.NAME.PID.RANDOM.tmp` beside `path`, with the mode a plain write would give."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        except FileExistsError:
            continue
        try:
            os.chmod(fd, path.stat().st_mode & 0o777)  # an existing file keeps its mode
        except FileNotFoundError:
            pass
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp


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
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix or delete the file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; fix or delete the file") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None


def sweep_temp_files(root: str | Path) -> int:
    """Remove temporary files that atomic writes of now-dead processes left under `root`."""
    removed = 0
    for tmp in Path(root).rglob(f".*{TMP_SUFFIX}"):
        parts = tmp.name.rsplit(".", 3)  # ['.NAME', 'PID', 'RANDOM', 'tmp']
        if len(parts) != 4 or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass  # a read-only folder: harmless, the next writable run removes it
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


# --- append-only logs ----------------------------------------------------------------------
class JsonlLog:
    """An append-only JSONL file; each record is on disk before append() returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = self._load()

    def _load(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
            good_end = data.rfind(b"\n") + 1  # a torn last line has no newline: cut it off
            if good_end < len(data) and is_main_process():
                with self.path.open("r+b") as fh:
                    fh.truncate(good_end)
        except OSError as e:
            raise storage_error(self.path, e) from None
        records = []
        for lineno, line in enumerate(data[:good_end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:  # bad JSON or bad UTF-8
                raise DataError(f"{self.path}:{lineno}: corrupt record; delete the line to resume") from None
        return records

    def append(self, record: dict) -> None:
        if not is_main_process():
            self.records.append(record)
            return
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise storage_error(self.path, e) from None
        # unbuffered, one open per record: nothing is left in a buffer to be written (or fail) later
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as e:
                with contextlib.suppress(OSError):  # else the torn line is cut when the log is reopened
                    os.ftruncate(fd, start)  # roll back a partial line: the log holds whole records
                raise storage_error(self.path, e) from None
        finally:
            os.close(fd)
        self.records.append(record)

    def close(self) -> None:
        """Nothing to release: the file is opened per record. Kept for `with` and callers."""

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the run folder --------------------------------------------------------------------------
# psi's files sat at the top of the run folder before every arm had its own folder under arms/
_OLD_LAYOUT = ("candidates.jsonl", "train.jsonl", "filter_report.json", "model")


class Layout:
    """Where each file of a run folder lives: spelled here and nowhere else. Only paths, no I/O.

    config.yaml  seeds.jsonl  principles.json  manifest.json  metrics.json  report.html/.md
    psilm.log                           the console's lines, library output, the trainer's records
    raw/<stage>-<role>.jsonl            every model response, the cache a resumed stage reads
    arms/<arm>/candidates.jsonl         generated arms: what the generator wrote
    arms/<arm>/train.jsonl              ... what the filters kept
    arms/<arm>/filter_report.json       ... and why the rest went
    arms/<arm>/model/                   trained arms: adapter/ and merged/
    arms/<arm>/metrics.json             every arm: its scores on the test rows
    round arms (psi_round2, ...; evolve.rounds), besides the files above:
    arms/<arm>/judge.json               the previous round's student on the judge slice: errors, weights
    arms/<arm>/principles.json          psi rounds: the principles generation reads, with this round's
    arms/<arm>/new.jsonl                this round's candidates that passed the filters
    arms/<arm>/check_report.json        what the student's check kept; train.jsonl = old rows + kept new
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def seeds(self) -> Path:
        return self.root / "seeds.jsonl"

    @property
    def log(self) -> Path:
        """The run's log: the console's lines with times, library output, the trainer's records."""
        return self.root / "psilm.log"

    @property
    def principles(self) -> Path:
        return self.root / "principles.json"

    @property
    def metrics(self) -> Path:
        """Every evaluated arm's scores (less per-row predictions), once the run is through."""
        return self.root / "metrics.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    def raw(self, stage: str, role: str) -> Path:
        return self.root / "raw" / f"{stage.replace('/', '-')}-{role}.jsonl"

    def arm(self, arm: str) -> Path:
        return self.root / "arms" / arm

    def candidates(self, arm: str) -> Path:
        return self.arm(arm) / "candidates.jsonl"

    def kept(self, arm: str) -> Path:
        """The rows the filters kept: what a generated arm trains on."""
        return self.arm(arm) / "train.jsonl"

    def filter_report(self, arm: str) -> Path:
        return self.arm(arm) / "filter_report.json"

    def model(self, arm: str) -> Path:
        return self.arm(arm) / "model"

    def merged_model(self, arm: str) -> Path:
        """The plain Hugging Face folder that evaluation loads."""
        return self.model(arm) / "merged"

    def arm_metrics(self, arm: str) -> Path:
        return self.arm(arm) / "metrics.json"

    # --- round arms (evolve.rounds)
    def judge(self, arm: str) -> Path:
        return self.arm(arm) / "judge.json"

    def arm_principles(self, arm: str) -> Path:
        return self.arm(arm) / "principles.json"

    def new_rows(self, arm: str) -> Path:
        """A round arm's new candidates that passed the filters, before the student's check."""
        return self.arm(arm) / "new.jsonl"

    def check_report(self, arm: str) -> Path:
        return self.arm(arm) / "check_report.json"


class RunDir(Layout):
    """One run = one folder (its Layout). The manifest records, per stage, what made each output.

    read_only: open a finished (or running) run to read it: the folder must be a run folder, and
    nothing is swept.
    """

    def __init__(self, root: str | Path, read_only: bool = False):
        super().__init__(root)
        if read_only and not (self.manifest_path.is_file() and self.config.is_file()):
            raise PsilmError(
                f"{self.root}: not a run folder (no manifest.json / config.yaml); run `psilm run` first"
            )
        self._check_layout()
        self.manifest: dict[str, Any] = self._load_manifest()
        if not read_only and self.root.is_dir() and is_main_process():
            sweep_temp_files(self.root)

    def _check_layout(self) -> None:
        if self.manifest_path.is_file() and any((self.root / p).exists() for p in _OLD_LAYOUT):
            raise DataError(
                f"{self.root}: made by an older psilm (the psi arm's files at the top of the folder, "
                "not under arms/psi/); run again into a new folder (--out NEW_FOLDER)"
            )

    def _load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return read_json(self.manifest_path)
        return {"psilm_version": _version(), "created": _now(), "stages": {}}

    # --- the manifest
    def save_manifest(self) -> None:
        atomic_write_json(self.manifest_path, self.manifest)

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(name, {})

    def plan(self, name: str, key: str, outputs: list[Path]) -> str:
        """'skip' (done with this key), 'resume' (interrupted with this key) or 'fresh'.

        `outputs` are paths this RunDir gave. When the key changed, the old outputs are moved
        aside under `.superseded/`, never overwritten silently. Raw model responses stay: they are
        keyed by request, so a changed stage reuses every answer it still asks for.
        """
        st = self.manifest["stages"].get(name, {})
        paths = list(outputs)
        if st.get("key") == key:
            if st.get("status") == "done" and all(p.exists() for p in paths):
                return "skip"
            return "resume"
        present = [p for p in paths if p.exists()]
        if present and is_main_process():
            aside = self.path(
                ".superseded", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{st.get('key', 'nokey')}"
            )
            for o in present:
                dest = aside / o.relative_to(self.root)
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(o), dest)
                except OSError as e:
                    raise storage_error(dest, e) from None
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
