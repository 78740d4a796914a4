"""Reading back what psilm wrote: the run folder's files and the cache's entries, checked.

A file psilm wrote may be damaged afterwards: cut short by a full disk or a cut copy, replaced
by something else, or edited by hand into another shape. Every file psilm reads back goes through
here: it is parsed and checked against its kind's shape (SHAPES: the top-level type and the keys
the code then reads), and anything else becomes one DamagedError line naming the file, what is
wrong and what writes it again (a Fix). Nothing is written while reading. A missing file is a
plain DataError, so a caller that can make it again (a step that resumes) tells the two apart.

Model files are checked by their headers and sizes before they load (modelfiles.py).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic reads typing's own only from Python 3.12

from psilm.errors import DamagedError, DataError


# --- what to do about a damaged file ------------------------------------------------------------
@dataclass(frozen=True)
class Fix:
    """The command that writes a file again, and what must be deleted first (a damaged output of
    a finished step is otherwise skipped as done); for one line of advice."""

    command: str
    remove: Path | None = None
    then: str = ""

    def say(self, path: Path, damaged: bool) -> str:
        what = ""
        if damaged and self.remove is not None:
            what = f"delete {'it' if self.remove == path else shlex.quote(str(self.remove))} and "
        then = f" ({self.then})" if self.then else ""
        return f"{what}rerun `{self.command}`, which writes it again{then}"


Advice = Fix | str  # a str: the same words whether the file is damaged or missing (caches)


def advice(fix: Advice, path: Path, damaged: bool) -> str:
    """The words of `fix` for `path`, damaged or missing."""
    return fix if isinstance(fix, str) else fix.say(path, damaged)


# --- shapes: what psilm writes, as far as the code reads it -------------------------------------
class Principle(TypedDict):
    id: str
    level: str
    text: str
    use: str
    category: NotRequired[str | None]


class PrinciplesFile(TypedDict):
    principles: list[Principle]
    warning: NotRequired[str | None]


class Stage(TypedDict, total=False):
    status: str
    key: str
    output_hash: str
    n_in: int
    n_kept: int
    tokens: dict[str, dict[str, float]]
    duration_s: float | None
    energy_kwh: float | None
    co2_kg: float | None
    model_calls: int
    merged_files: dict[str, int]


class Manifest(TypedDict):
    stages: dict[str, Stage]
    arms: NotRequired[dict[str, dict]]


class ArmMetrics(TypedDict):
    accuracy: float
    n: int
    ci95: list[float]
    predictions: list[dict]
    per_class: NotRequired[dict[str, Any]]


class RunMetrics(TypedDict):
    arms: dict[str, dict]
    task: NotRequired[str]
    n_test: NotRequired[int | None]
    train_count: NotRequired[int | None]


class FilterReport(TypedDict):
    n_in: int
    n_kept: int
    dropped: dict[str, int]
    warning: NotRequired[str | None]


class Judge(TypedDict):
    mistakes: list[dict]
    category_weights: NotRequired[dict[str, float] | None]


class Candidate(TypedDict):
    id: str
    input: Any
    answer: Any


class Row(TypedDict):  # a row a student trains on
    input: Any
    output: Any
    answer: Any


class Verdict(TypedDict):
    ok: bool
    returncode: int
    system_info: str
    error: str


class LlamaCppChecks(TypedDict):
    files: dict[str, str]
    checks: dict[str, Verdict]


class HFConfig(TypedDict):
    model_type: str


# kind -> (what it is, in words; its shape: one object, or each line's for JSONL)
SHAPES: dict[str, tuple[str, Any]] = {
    "manifest": ("run manifest", Manifest),
    "principles": ("principles file", PrinciplesFile),
    "arm_metrics": ("metrics of an arm", ArmMetrics),
    "run_metrics": ("metrics of a run", RunMetrics),
    "filter_report": ("filter report", FilterReport),
    "check_report": ("check report", dict[str, Any]),
    "judge": ("judge record", Judge),
    "candidates": ("candidate record", Candidate),
    "rows": ("training row", Row),
    "records": ("record", dict[str, Any]),
    "llamacpp_checks": ("llama.cpp check record", LlamaCppChecks),
    "hf_config": ("model config", HFConfig),
    "json": ("JSON object", dict[str, Any]),
}


@cache
def _adapter(kind: str) -> TypeAdapter:
    return TypeAdapter(SHAPES[kind][1])


# --- reading -----------------------------------------------------------------------------------
def read_bytes(path: str | Path, fix: Advice) -> bytes:
    """The file's bytes; DataError when it is missing or cannot be read, naming what to do."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {advice(fix, path, False)}") from None
    except IsADirectoryError:
        raise DamagedError(f"{path}: is a folder, not a file; {advice(fix, path, True)}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None


def read_text(path: str | Path, fix: Advice) -> str:
    path = Path(path)
    data = read_bytes(path, fix)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(path, f"not text (a non-UTF-8 byte at {e.start})", fix) from None


def read_json(path: str | Path, kind: str, fix: Advice) -> Any:
    """A JSON file psilm wrote, checked against the shape of `kind` (SHAPES)."""
    path = Path(path)
    text = read_text(path, fix)
    if not text.strip():
        raise damaged(path, "empty (cut short)", fix)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise damaged(path, f"cut short or damaged (not valid JSON from line {e.lineno})", fix) from None
    except RecursionError:
        raise damaged(path, "nested too deeply to be psilm's", fix) from None
    check(obj, kind, path, fix)
    return obj


def read_records(path: str | Path, kind: str, fix: Advice) -> list[dict]:
    """A JSONL file psilm wrote whole (write_jsonl): every line one object of the shape of `kind`."""
    path = Path(path)
    text = read_text(path, fix)
    if text and not text.endswith("\n"):  # write_jsonl ends every line; a cut file does not
        raise damaged(path, f"cut short (line {text.count(chr(10)) + 1} has no end)", fix)
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise damaged(path, f"line {lineno} is not JSON", fix) from None
        check(obj, kind, path, fix, where=f"line {lineno}")
        records.append(obj)
    return records


def read_yaml_mapping(path: str | Path, required: Iterable[str], fix: Advice) -> dict:
    """A YAML file psilm wrote as a mapping (a run's config.yaml): every `required` key present,
    since a cut file parses as YAML too, only shorter."""
    import yaml

    path = Path(path)
    text = read_text(path, fix)
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise damaged(path, f"cut short or damaged (invalid YAML{line})", fix) from None
    except RecursionError:
        raise damaged(path, "nested too deeply to be psilm's", fix) from None
    if not isinstance(obj, dict):
        raise damaged(path, f"holds {_type(obj)}, not the mapping of settings psilm writes", fix)
    missing = [k for k in required if k not in obj]
    if missing or not text.endswith("\n"):
        raise damaged(path, f"cut short (no {', '.join(missing) or 'end of its last line'})", fix)
    return obj


def check(obj: Any, kind: str, path: Path, fix: Advice, where: str = "") -> None:
    """DamagedError unless `obj` has the shape of `kind`; `where`: a place inside the file."""
    try:
        _adapter(kind).validate_python(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        inside = " ".join(x for x in (where, loc) if x)
        detail = f"{inside}: {err['msg']}" if inside else err["msg"]
        if not err["loc"] and not where:
            detail = f"holds {_type(obj)}"
        more = f", and {e.error_count() - 1} more" if e.error_count() > 1 else ""
        raise damaged(path, f"not the {SHAPES[kind][0]} psilm writes ({detail}{more})", fix) from None


def damaged(path: Path, what: str, fix: Advice) -> DamagedError:
    return DamagedError(f"{path}: {what}; {advice(fix, path, True)}")


def _type(obj: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}.get(
        type(obj), "null" if obj is None else type(obj).__name__
    )
