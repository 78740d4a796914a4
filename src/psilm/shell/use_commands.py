"""The commands that use a finished run or set one up: report, predict, export, tasks, init, doctor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psilm import arms
from psilm.numbers import percent
from psilm.report import write_report
from psilm.shell import console
from psilm.shell.app import ArmOpt, QuietOpt, RunOpt, VerboseOpt, app, logger
from psilm.shell.doctor import main as doctor_main
from psilm.shell.init_task import write_config
from psilm.tasks import builtin_tasks
from psilm.use.export import export as export_run
from psilm.use.predict import predict_file


@app.command()
def report(run: RunOpt) -> None:
    """Write report.html (self-contained, plots embedded) and report.md from a run folder."""

    for path in write_report(run):
        print(path)


@app.command()
def predict(
    input_file: Annotated[Path, typer.Argument(help="JSONL of inputs, in the task's own fields.")],
    run: RunOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions JSONL to write.")],
    arm: ArmOpt = arms.PSI,
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch (default: the run's).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the run's).")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer new inputs with an arm's model: each row plus its prediction (and label probabilities)."""
    from contextlib import nullcontext

    logger(quiet, verbose)  # library output off the console (no run log: nothing is run here)
    with nullcontext() if quiet else console.bars() as bars:

        def bar(total: int):
            return bars.start(f"predict ({arm})", total) if bars is not None else (lambda n: None)

        res = predict_file(run, input_file, out, arm, batch_size, device, bar)
    acc = f"; accuracy {percent(res['accuracy'])} on its labelled rows" if res["accuracy"] is not None else ""
    print(f"{res['n']} predictions in {out}{acc}")


@app.command()
def export(
    run: RunOpt,
    to: Annotated[str, typer.Option("--to", help="dataset, hf, gguf or lm-eval.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (new, or empty).")],
    arm: ArmOpt = arms.PSI,
    quant: Annotated[
        str | None,
        typer.Option(help="gguf: the types to write, e.g. f16,q8_0,q4_k_m (f16, q8_0, q4_0, q4_k_m)."),
    ] = None,
) -> None:
    """Export an arm's data (dataset), its model (hf, gguf) or the test split (lm-eval), with a card."""

    folder = export_run(run, to, out, arm, quant)
    for path in sorted(p for p in folder.iterdir() if p.is_file() or p.name in ("data", "disk")):
        print(path)


@app.command()
def tasks() -> None:
    """List the built-in tasks."""

    for name, spec in sorted(builtin_tasks().items()):
        print(f"{name:8s} {spec['kind']:15s} {spec['description']}")


@app.command()
def init(
    data: Annotated[
        str,
        typer.Argument(
            help="A data file: JSONL, CSV, Parquet, a save_to_disk folder, or hf:NAME[:CONFIG]:SPLIT."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The YAML to write; default NAME.yaml here.")
    ] = None,
    test: Annotated[str | None, typer.Option(help="A held-out split to evaluate on.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write a run config from a data file: fields, input and target, kind, labels; CHECK comments."""

    path, task = write_config(data, out, test, force)
    inputs = task.get("input_fields") or [task["input_field"]]
    print(f"{path}: {task['kind']} task reading {inputs} -> `{task['target_field']}`", end="")
    print(f", labels {task['labels']}" if "labels" in task else "")
    print(f"read the CHECK comments in {path}, then: psilm run {path} --out runs/{task['name']}")


@app.command()
def doctor() -> None:
    """Print the CPU, llama.cpp's build and its check on this CPU, torch's threads, the extras."""

    raise typer.Exit(doctor_main())
