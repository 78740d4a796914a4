"""Errors a user can act on. Each message names the file, line or setting and what to do.

The CLI turns any PsilmError into one line on stderr and exit code 2, with no traceback. This is the
bottom floor: it imports nothing of psilm, so every module can raise and word its errors from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class PsilmError(Exception):
    """Base class of every error meant for the user, not for a developer."""


class ConfigError(PsilmError):
    """A setting is missing, unknown or of the wrong type; the message names the key."""


class DataError(PsilmError):
    """An input file is missing or malformed; the message names the file and line."""


class BackendError(PsilmError):
    """A model could not be loaded or an endpoint could not be reached."""


class DamagedError(DataError):
    """A file psilm wrote (run folder, cache) is cut short, of another shape or unreadable; the
    message names the file and the command that writes it again. A missing file is a DataError."""


def format_validation_error(
    source: str, e: Any, explain: Callable[[Any], tuple[list[Any], str | None] | None] | None = None
) -> str:
    """Every problem of a pydantic ValidationError `e` on one line, each naming the key:
    'config.yaml: generate.n: ...; data: ...'. `explain(err)` may give an error's place and words
    instead (a model's settings say theirs in their backend's words: llm/settings.py)."""
    lines = []
    for err in e.errors():
        where, msg = (explain(err) if explain else None) or (err["loc"], None)
        loc = ".".join(str(p) for p in where if not str(p).startswith("function-after"))
        if msg is None:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling; see docs/configuration.md)"
            elif err["type"] == "missing":
                msg = "required setting is missing"
        lines.append(f"{loc or '(top level)'}: {' '.join(str(msg).split())}")
    return f"{source}: " + "; ".join(lines)
