"""Files that survive a killed process: atomic writes, append-only JSONL, fingerprints.

Two write disciplines keep a killed run resumable without losing or doubling a record:

- JSON files are written to a temporary file, fsynced, then renamed over the old one. The
  temporary file's name carries the writer's pid, so one left behind by a killed process is
  removed when the run folder is opened again.
- JSONL logs are append-only, one record per line, written and fsynced per record; a torn last
  line (the process died mid-write) is cut off when the log is opened again, and a failed write
  (disk full) is rolled back before the error is raised.

A write that fails for lack of space or permission raises PsilmError naming the file; a cache
entry that cannot be written (write_cache) is a note instead, and psilm goes on without it. Only
rank 0 of a multi-process launch writes. Nothing here knows the run folder's layout (store.py
does); the exports, predictions and model-call logs write through these too. Reading back is
readback.py's: every file psilm wrote is checked there before it is used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from psilm.errors import DataError, PsilmError


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


def text_hash(text: str) -> str:
    """file_hash of a file that holds `text` (UTF-8), before it is written."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- storage errors ------------------------------------------------------------------------
# errno values that mean "the disk or folder refuses the write", not "psilm has a bug"
STORAGE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO")
    if hasattr(errno, name)
)


def storage_error(path: str | Path, e: OSError | int) -> PsilmError:
    """A one-line user error for a write the disk or folder refused (an OSError or an errno)."""
    code = e if isinstance(e, int) else e.errno
    reason = os.strerror(e) if isinstance(e, int) else (e.strerror or str(e))
    if code == errno.EISDIR:  # no disk or permission problem: a folder where the file goes
        return PsilmError(f"{path}: cannot write ({reason}): a folder stands where psilm writes this "
                          "file; move it away, then rerun the same command")  # fmt: skip
    if code in (errno.ENOTDIR, errno.EEXIST):
        return PsilmError(f"{path}: cannot write ({reason}): a file stands where psilm needs a folder "
                          "on this path; move it away, then rerun the same command")  # fmt: skip
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
    try:
        _replace_with(Path(path), text)
    except OSError as e:
        raise storage_error(path, e) from None


def _replace_with(path: Path, text: str) -> None:
    """`path` now holds `text`, written beside it and renamed over it (OSError as it comes)."""
    if not is_main_process():
        return
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


# --- caches: psilm goes on without them ------------------------------------------------------
_noted: set[str] = set()


def note(message: str) -> None:
    """One line on stderr, once per process: something psilm works around, not an error."""
    if message not in _noted:
        _noted.add(message)
        print(f"psilm: note: {message}", file=sys.stderr, flush=True)


def write_cache(path: str | Path, text: str, without: str) -> bool:
    """Write a cache entry atomically. Where the cache cannot be written (a file in its folder's
    place, a read-only mount, a full disk) a note says so and what going on `without` it costs."""
    try:
        _replace_with(Path(path), text)
    except OSError as e:
        note(
            f"{path}: cannot write this cache entry ({e.strerror or e}); psilm goes on without it "
            f"({without}); point PSILM_CACHE at a writable folder to keep it"
        )
        return False
    return True


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
    """An append-only JSONL file; each record is on disk before append() returns. `needs`: the
    keys every record holds (a line without them is no record of this log's writer)."""

    def __init__(self, path: str | Path, needs: tuple[str, ...] = ()):
        self.path = Path(path)
        self.needs = needs
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
                record = json.loads(line)
            except (ValueError, RecursionError):  # bad JSON or bad UTF-8
                record = None
            if not isinstance(record, dict) or any(k not in record for k in self.needs):
                raise DataError(f"{self.path}:{lineno}: corrupt record; delete the line to resume")
            records.append(record)
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
