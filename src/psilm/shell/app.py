"""The command line's app and the options its commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psilm import arms

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a small model for one task from a handful of examples, with task principles.",
)

RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run folder made by `psilm run`.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a setting: KEY=VALUE (repeatable).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show the libraries' output (log lines, warnings, trainer records)."
    ),
]
ArmOpt = Annotated[str, typer.Option("--arm", help=f"Which arm: {', '.join(arms.NAMES)}.")]


def logger(quiet: bool, verbose: bool):
    """Sets up the console for a command that works; returns the pipeline's log (a line per event).

    Library output goes to the run folder's psilm.log (and the console too when verbose); the
    pipeline's lines go to the console, unless quiet, and to psilm.log.
    """
    from psilm.shell import console

    console.configure(verbose)
    return console.RUN_LOG.line if quiet else console.say
