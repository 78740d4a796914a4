"""Reading data and YAML with errors that name the file and line (or row).

Data rows come from JSONL (the default), CSV / TSV, Parquet, a folder written by `datasets`'
`save_to_disk`, or `hf:NAME[:CONFIG]:SPLIT` (the Hugging Face Hub, through `datasets`). Every
reader yields (where, row): `where` is 'file:line' for text files and 'file: row N' otherwise, so
a bad row is named the same way whatever the format.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from psilm.errors import DataError, PsilmError

MAX_LINE_BYTES = 1_000_000  # a longer line is almost surely not one example: refuse, don't choke
FORMATS = "JSONL, CSV, Parquet, a `save_to_disk` folder, or hf:NAME[:CONFIG]:SPLIT"
_CSV = {".csv": ",", ".tsv": "\t"}
_PARQUET = {".parquet", ".pq"}
_HF = re.compile(r"hf:(?P<name>[^:\[\]]+?)(?::(?P<config>[^:\[\]]+?))?:(?P<split>[^:\[\]]+(?:\[[^\]]*\])?)")
_TOO_DEEP = "nested too deeply (lists or objects inside each other thousands of times)"


# --- one entry point for every format ------------------------------------------------------------
def iter_rows(source: str | Path) -> Iterator[tuple[str, dict]]:
    """Yield (where, row) for every row of a data source; a malformed one raises DataError naming it."""
    text = str(source)
    if text.startswith("hf:"):
        yield from _iter_hf(text)
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        yield from _iter_saved(path)
        return
    suffix = path.suffix.lower()
    if suffix in _CSV:
        yield from _iter_csv(path, _CSV[suffix])
    elif suffix in _PARQUET:
        yield from _iter_parquet(path)
    else:
        for lineno, obj in iter_jsonl(path):
            yield f"{path}:{lineno}", obj


def read_rows(source: str | Path, limit: int | None = None) -> list[tuple[str, dict]]:
    """(where, row) pairs of a data source, at most `limit`; no row at all raises DataError."""
    rows = []
    for item in iter_rows(source):
        rows.append(item)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{source}: no rows (the file is empty)")
    return rows


# --- JSONL ---------------------------------------------------------------------------------------
def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines raise DataError.

    A UTF-8 byte order mark at the start (spreadsheet exports write one) is accepted.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a JSONL file")
    with _open(path, "rb") as fh:
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
            except RecursionError:  # json's decoder recurses once per level
                raise DataError(f"{path}:{lineno}: {_TOO_DEEP}; each line must be one JSON object") from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}; "
                    "each line must be one JSON object"
                )
            yield lineno, obj


def _open(path: Path, mode: str, **kw):
    try:
        return path.open(mode, **kw)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None


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


# --- CSV / TSV: a header line, then one row per record (values are text) -------------------------
def _iter_csv(path: Path, delimiter: str) -> Iterator[tuple[str, dict]]:
    kind = "CSV" if delimiter == "," else "TSV"
    with _open(path, "r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = None
            for values in reader:
                where = f"{path}:{reader.line_num}"
                if not any(v.strip() for v in values):
                    continue
                if any("\x00" in v for v in values):  # Python's csv reads NULs; text never holds one
                    raise DataError(f"{where}: holds a NUL byte; is the file really {kind}, not binary?")
                if header is None:
                    header = _csv_header(values, where, kind)
                    continue
                if len(values) != len(header):
                    raise DataError(
                        f"{where}: {len(values)} values but the header (line 1) names {len(header)} "
                        f"columns; is the file really {kind}? (a value holding the delimiter needs quotes)"
                    )
                yield where, dict(zip(header, values, strict=True))
        except csv.Error as e:
            where = f"{path}:{reader.line_num}"
            raise DataError(f"{where}: not valid {kind} ({e}); is the file really {kind}?") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None


def _csv_header(values: list[str], where: str, kind: str) -> list[str]:
    header = [v.strip() for v in values]
    if header[0].startswith(("{", "[")):
        raise DataError(f"{where}: looks like JSON, not a {kind} header; name the file .jsonl")
    if any(not h for h in header):
        raise DataError(f"{where}: the header has an empty column name; name every column")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{where}: the header names column(s) {dup} twice; give each column its own name")
    return header


# --- Parquet -------------------------------------------------------------------------------------
def _iter_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a Parquet file ({_first_line(e)}); is it really Parquet?") from None
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield f"{path}: row {n}", row
    except (pa.ArrowException, OSError) as e:
        where = f"{path}: row {n + 1}"
        raise DataError(f"{where}: cannot read ({_first_line(e)}); the file may be damaged") from None


# --- a folder written by datasets' save_to_disk --------------------------------------------------
def _iter_saved(path: Path) -> Iterator[tuple[str, dict]]:
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "dataset_info.json").is_file())
        raise DataError(
            f"{path}: holds several splits {splits}; give one of them, e.g. {path / (splits or ['train'])[0]}"
        )
    if not (path / "dataset_info.json").is_file() or not (path / "state.json").is_file():
        raise DataError(
            f"{path}: is a folder, but not a dataset saved with `save_to_disk` (no dataset_info.json "
            f"and state.json); give {FORMATS}"
        )
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001  a damaged folder fails in many library-specific ways
        raise DataError(f"{path}: cannot load the saved dataset ({_first_line(e)})") from None
    yield from _iter_dataset(ds, str(path))


def _iter_dataset(ds, where: str) -> Iterator[tuple[str, dict]]:
    for i, row in enumerate(ds, start=1):
        yield f"{where}: row {i}", row


# --- hf:NAME[:CONFIG]:SPLIT through datasets.load_dataset ----------------------------------------
def _iter_hf(source: str) -> Iterator[tuple[str, dict]]:
    m = _HF.fullmatch(source)
    if not m:
        raise DataError(
            f"{source}: expected hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT (e.g. hf:nyu-mll/glue:rte:train)"
        )
    import datasets
    from datasets.utils import logging as ds_logging
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hub_logging

    # the hub client logs every retry; psilm reports one line instead
    ds_logging.set_verbosity_error()
    ds_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()
    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not offline:  # an unreachable hub costs datasets many retries: ask once, quickly
        _probe(constants.ENDPOINT, source)
    try:
        ds = datasets.load_dataset(m["name"], m["config"], split=m["split"])
    except Exception as e:  # noqa: BLE001  the hub client raises many types; each becomes one line
        if offline and isinstance(e, ConnectionError):
            raise DataError(
                f"{source}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set so the hub "
                "is not asked; download it once with HF_HUB_OFFLINE unset, or give a local file "
                f"({FORMATS})"
            ) from None
        raise DataError(f"{source}: cannot load from the Hugging Face Hub ({_first_line(e)})") from None
    yield from _iter_dataset(ds, source)


def _probe(endpoint: str, source: str, timeout_s: float = 5.0) -> None:
    """Open (and close) one connection to the hub's host, or raise DataError saying it is unreachable."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        raise DataError(
            f"{source}: cannot reach the Hugging Face Hub at {endpoint} ({e.strerror or e}); check the "
            "network, set HF_HUB_OFFLINE=1 to use a copy already in the local cache, or give a local "
            f"file ({FORMATS})"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


# --- YAML ----------------------------------------------------------------------------------------
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
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise error(f"{path}: {_TOO_DEEP}") from None
