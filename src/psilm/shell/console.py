"""What a person sees while psilm works, and what goes to the run folder's log file instead.

The console shows a progress bar per running stage and per model call, then one summary line per
stage. Library log lines, warnings, progress bars and the trainer's loss records go to the run
folder's log file (psilm.log); with `verbose` they reach the console as well. The run folder's
path comes from the caller (the CLI, from the pipeline's context): nothing here knows its layout.
rich and the ML libraries are imported only when a run sets up its console.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_CONSOLE = None


def console():
    """One stderr console shared by log lines and progress bars, so they don't garble each other."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True, highlight=False)
    return _CONSOLE


# --- the run folder's log file ----------------------------------------------------------------
class RunLog(logging.Handler):
    """Appends every record to the run's log file; lines logged before it is opened wait in memory.

    The file is created by its first line, so a command that fails before doing anything leaves
    the run folder untouched. A log file must never stop a run: if writing to it fails (a full
    disk), it stops writing and the stage that needs the disk reports the error itself.
    """

    EARLY_LINES = 2000  # what prepare and config loading may log before the run folder exists

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        self.path: Path | None = None
        self._file: IO[str] | None = None
        self._header = ""
        self._broken = False
        self._early: list[str] = []

    def open(self, path: Path, title: str = "") -> None:
        early = self._early
        self.close_file()
        self.path = path
        self._header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}".rstrip()
        for line in early:
            self.write(line)

    def line(self, message: str) -> None:
        """A pipeline line (what the console shows), stamped like the records around it."""
        self.write(f"{time.strftime('%H:%M:%S')} psilm: {message}")

    def write(self, line: str) -> None:
        if self.path is None:
            if len(self._early) < self.EARLY_LINES:
                self._early.append(line)
            return
        if self._broken:
            return
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (until close_file)
                self._file.write(self._header + "\n")
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError):
            self._broken, self._file = True, None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a library's malformed log call is no reason to stop a run
            line = f"{record.name}: {record.msg!r} {record.args!r}"
        self.write(line)

    def close_file(self) -> None:
        """Stop writing to the file; lines logged until the next open() wait in memory for it."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file, self.path, self._broken = None, None, False
        self._early = []


class _ConsoleLog(logging.Handler):
    """--verbose: library records on the console, printed above the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        console().print(self.format(record), markup=False, highlight=False)


RUN_LOG = RunLog()


def say(message: str) -> None:
    """A pipeline line: on the console and in the run log."""
    console().print(message, markup=False, soft_wrap=True)  # the terminal wraps; a captured log stays whole
    RUN_LOG.line(message)


def configure(verbose: bool) -> None:
    """Route library output to the run log (and the console when verbose). Safe to call again."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when datasets loads
    RUN_LOG.close_file()
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, RunLog | _ConsoleLog):
            root.removeHandler(h)
    root.addHandler(RUN_LOG)
    if verbose:
        shown = _ConsoleLog(logging.INFO)
        shown.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(shown)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings become records: the log file, not the console
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_default_handler()  # its own stderr handler; records reach ours instead
    hf_logging.enable_propagation()
    if verbose:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    import sys

    if "datasets" in sys.modules:  # already loaded: the variable above came too late
        import datasets

        datasets.enable_progress_bars() if verbose else datasets.disable_progress_bars()


# --- progress bars ------------------------------------------------------------------------------
class Bars:
    """Progress bars: one per running stage (elapsed time), one per model call (count, rate, ETA).

    A bar leaves the screen when it is full; the stage's summary line takes its place.
    """

    def __init__(self, progress: Any):
        self._progress = progress

    def start(self, label: str, total: int | None) -> Callable[..., None]:
        """A new bar; returns advance(n=1, note=...) (note: text after the bar, e.g. the loss)."""
        p = self._progress
        task = p.add_task(label, total=total, note="")
        done = False

        def advance(n: int = 1, **fields: Any) -> None:
            nonlocal done
            if done:
                return
            p.update(task, advance=n, **fields)
            if total is not None and p.tasks[_index(p, task)].completed >= total:
                done = True
                p.remove_task(task)

        return advance

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        task = self._progress.add_task(label, total=None, note="")
        try:
            yield
        finally:
            self._progress.remove_task(task)


def _index(progress: Any, task_id: Any) -> int:
    return next(i for i, t in enumerate(progress.tasks) if t.id == task_id)


@contextmanager
def bars() -> Iterator[Bars]:
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task) -> Text:
            return Text("" if task.total is None else f"{int(task.completed)}/{int(task.total)}")

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            if task.total is None:
                return Text("")
            return Text(f"{task.speed:.2f}/s" if task.speed else "-/s")

    class Remaining(ProgressColumn):
        max_refresh = 0.5

        def render(self, task) -> Text:
            if task.total is None:
                return Text("")
            left = task.time_remaining
            return Text("eta -:--" if left is None else f"eta {_clock(left)}")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        Count(),
        Rate(),
        Remaining(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    ]
    with Progress(*columns, console=console()) as progress:
        yield Bars(progress)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# --- the principles' coverage, per category --------------------------------------------------------
def coverage_table(coverage: dict[str, dict], cap: int, word: str = "label"):
    """A rich Table: per category, create principles kept (of `cap`) and what was dropped, and why."""
    from rich.table import Table

    table = Table(title=f"category principles per {word} (kept of {cap})")
    for col in (word, "kept", "dropped, by reason"):
        table.add_column(col, justify="right" if col == "kept" else "left")
    for name, c in coverage.items():
        why = ", ".join(f"{n} {r.replace('example_', '').replace('_', ' ')}" for r, n in c["dropped"].items())
        kept = f"[red]{c['kept']}[/red]" if c["short"] else str(c["kept"])
        table.add_row(name, kept, why or "-")
    return table
