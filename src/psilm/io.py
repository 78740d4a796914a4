"""Reading JSONL and YAML input with errors that name the file and line."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from psilm.errors import DataError, PsilmError

MAX_LINE_BYTES = 1_000_000  # a longer line is almost surely not one example: refuse, don't choke


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines raise DataError.

    A UTF-8 byte order mark at the start (spreadsheet exports write one) is accepted.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a JSONL file")
    try:
        fh = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None
    with fh:
        lineno = 0
        while raw := _read_line(fh, path, lineno + 1):
            lineno += 1
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 (byte {e.start}); re-encode the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}; "
                    "each line must be one JSON object"
                )
            yield lineno, obj


def _read_line(fh, path: Path, lineno: int) -> bytes:
    """The next line, reading at most MAX_LINE_BYTES + 1 bytes of it (a huge line is not loaded)."""
    try:
        raw = fh.readline(MAX_LINE_BYTES + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_LINE_BYTES:
        raise DataError(
            f"{path}:{lineno}: line is over {MAX_LINE_BYTES:,} bytes; "
            "each line must hold one JSON object (is the file really JSONL?)"
        )
    return raw


def read_jsonl(path: str | Path) -> list[dict]:
    """All objects of a JSONL file; an empty file raises DataError."""
    rows = [obj for _, obj in iter_jsonl(path)]
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty)")
    return rows


def read_yaml(path: Path, error: type[PsilmError], what: str = "YAML") -> Any:
    """Parse a YAML (or JSON) file; a syntax error names the file and line, as `error`."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(f"{where}: invalid {what} ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8") from None
