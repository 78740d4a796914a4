"""The psilm command line: `psilm run`, `psilm demo`, and one command per stage."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from psilm.errors import PsilmError

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
ArmOpt = Annotated[str, typer.Option("--arm", help="Which arm: psi, direct, teacher, seed_only, human.")]


def _logger(quiet: bool):
    if quiet:
        return lambda msg: None
    console = _console()
    return lambda msg: console.print(msg, markup=False)


def _console():
    """One stderr console shared by log lines and progress bars, so they don't garble each other."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True, highlight=False)
    return _CONSOLE


_CONSOLE = None


def _open(run: Path, overrides: list[str] | None, quiet: bool):
    """Reopen a run folder from its resolved config."""
    from psilm.config import load_config
    from psilm.pipeline import prepare

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise PsilmError(
            f"{run}: not a run folder (no config.yaml); create one with `psilm run CONFIG --out {run}`"
        )
    return prepare(load_config(cfg_path, overrides), run, _logger(quiet))


@contextmanager
def _progress(ctx, quiet: bool):
    """Progress bars with rate and ETA for model calls; nothing when quiet."""
    if quiet:
        yield
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f}/s" if task.speed else "-/s")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=_console()) as progress:
        ctx.progress = progress
        try:
            yield
        finally:
            ctx.progress = None


def _print_table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['task']}: accuracy on {metrics.get('n_test', '?')} held-out test rows")
    for col in ("arm", "accuracy", "95% interval", "n"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, m in metrics["arms"].items():
        lo, hi = m["ci95"]
        table.add_row(arm, f"{m['accuracy']:.1%}", f"{lo:.1%} - {hi:.1%}", str(m["n"]))
    Console().print(table)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created or resumed).")],
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole pipeline: principles, generate, filter, train, evaluate, for every arm."""
    from psilm.config import load_config
    from psilm.pipeline import prepare, run_all
    from psilm.report import write_report

    cfg = load_config(config, set_)
    ctx = prepare(cfg, out, _logger(quiet))
    with _progress(ctx, quiet):
        metrics = run_all(ctx)
    if metrics["arms"]:
        _print_table(metrics)
    html_path, _ = write_report(out)
    print(f"run folder: {out}")
    print(f"report: {html_path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    teacher_url: Annotated[
        str | None, typer.Option(help="Use a real teacher: an OpenAI-compatible base URL.")
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option(help="The teacher's model name on that server.")
    ] = None,
    teacher_key_env: Annotated[
        str | None, typer.Option(help="Env variable holding the teacher's API key.")
    ] = None,
    self_teacher: Annotated[
        bool,
        typer.Option(help="Let the embedded 135M model write its own principles (weak; for comparison)."),
    ] = False,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The whole pipeline on the embedded model and the shipped SST-2 slice."""
    overrides = list(set_ or [])
    if teacher_url:
        if not teacher_model:
            raise PsilmError("--teacher-url needs --teacher-model (the model name the server knows)")
        overrides += [
            "principles.file=null",
            "models.teacher.backend=openai",
            f"models.teacher.base_url={teacher_url}",
            f"models.teacher.model={teacher_model}",
        ]
        if teacher_key_env:
            overrides.append(f"models.teacher.api_key_env={teacher_key_env}")
    elif self_teacher:
        overrides.append("principles.file=null")
    config_path = Path(str(resources.files("psilm").joinpath("demo", "sst2.yaml")))
    if not quiet:
        source = (
            f"teacher at {teacher_url}"
            if teacher_url
            else "the embedded 135M model as its own teacher"
            if self_teacher
            else "principles written by a person (psilm/demo/sst2_principles.yaml), standing in for a teacher"
        )
        print(f"psilm demo: SST-2 on the embedded SmolLM2-135M; principles from {source}", file=sys.stderr)
    run(config_path, out, overrides, quiet)


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of one run folder per seed.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: one full run each.")] = "0,1,2",
    compare: Annotated[str, typer.Option(help="The arm the paired differences start from.")] = "psi",
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a config over several seeds: mean accuracy per arm with 95% intervals, paired differences."""
    from psilm import bench as bench_mod

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise PsilmError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    result = bench_mod.bench(
        config, out, seed_list, set_, _logger(quiet), compare, wrap=lambda ctx: _progress(ctx, quiet)
    )
    print(bench_mod.markdown(result), end="")
    print(f"results: {out / 'bench.json'}")


# --- one command per stage -------------------------------------------------------------------
@app.command()
def principles(run: RunOpt, set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Write principles.json (teacher, or the configured principles file)."""
    from psilm.pipeline import stage_principles

    ps = stage_principles(_open(run, set_, quiet))
    print(f"{len(ps)} principles in {run / 'principles.json'}")


@app.command()
def generate(run: RunOpt, arm: ArmOpt = "psi", set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Write candidates.jsonl for a data arm (psi, direct, teacher)."""
    from psilm.pipeline import DATA_ARMS, arm_dir, stage_generate

    if arm not in DATA_ARMS:
        raise PsilmError(f"--arm {arm}: generation runs for {sorted(DATA_ARMS)}")
    stage_generate(_open(run, set_, quiet), arm)
    print(f"candidates: {run / arm_dir(arm) / 'candidates.jsonl'}")


@app.command(name="filter")
def filter_(run: RunOpt, arm: ArmOpt = "psi", set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Write train.jsonl and filter_report.json for a data arm."""
    from psilm.pipeline import DATA_ARMS, arm_dir, stage_filter

    if arm not in DATA_ARMS:
        raise PsilmError(f"--arm {arm}: filtering runs for {sorted(DATA_ARMS)}")
    ctx = _open(run, set_, quiet)
    stage_filter(ctx, arm)
    st = ctx.run.stage(f"filter/{arm}")
    print(f"kept {st['n_kept']} of {st['n_in']}: {run / arm_dir(arm) / 'train.jsonl'}")


@app.command()
def train(run: RunOpt, arm: ArmOpt = "psi", set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Fine-tune the student for one arm (model/ under the arm's folder)."""
    from psilm.pipeline import TRAINED_ARMS, arm_dir, stage_train

    if arm not in TRAINED_ARMS:
        raise PsilmError(f"--arm {arm}: training runs for {TRAINED_ARMS}")
    stage_train(_open(run, set_, quiet), arm)
    print(f"model: {run / arm_dir(arm) / 'model'}")


@app.command()
def evaluate(run: RunOpt, arm: ArmOpt = "psi", set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Score one arm's model on the held-out test slice."""
    from psilm.pipeline import TRAINED_ARMS, stage_evaluate

    if arm not in ["zero_shot", *TRAINED_ARMS]:
        raise PsilmError(f"--arm {arm}: evaluation runs for {['zero_shot', *TRAINED_ARMS]}")
    res = stage_evaluate(_open(run, set_, quiet), arm)
    if res is None:
        raise PsilmError("data.test is not set in this run's config; nothing to evaluate on")
    lo, hi = res["ci95"]
    print(f"{arm}: accuracy {res['accuracy']:.1%} (95% CI {lo:.1%}-{hi:.1%}, n={res['n']})")


@app.command()
def report(run: RunOpt) -> None:
    """Write report.html (self-contained, plots embedded) and report.md from a run folder."""
    from psilm.report import write_report

    for path in write_report(run):
        print(path)


@app.command()
def predict(
    input_file: Annotated[Path, typer.Argument(help="JSONL of inputs, in the task's own fields.")],
    run: RunOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions JSONL to write.")],
    arm: ArmOpt = "psi",
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch (default: the run's).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the run's).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Answer new inputs with an arm's model: each row plus its prediction (and label probabilities)."""
    from types import SimpleNamespace

    from psilm.predict import predict_file

    holder = SimpleNamespace(progress=None)

    def bar(total: int):
        if holder.progress is None:
            return lambda n: None
        task_id = holder.progress.add_task(f"predict ({arm})", total=total)
        return lambda n: holder.progress.advance(task_id, n)

    with _progress(holder, quiet):
        res = predict_file(run, input_file, out, arm, batch_size, device, bar)
    acc = f"; accuracy {res['accuracy']:.1%} on its labelled rows" if res["accuracy"] is not None else ""
    print(f"{res['n']} predictions in {out}{acc}")


@app.command()
def export(
    run: RunOpt,
    to: Annotated[str, typer.Option("--to", help="dataset, hf, gguf or lm-eval.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (new, or empty).")],
    arm: ArmOpt = "psi",
) -> None:
    """Export an arm's data (dataset), its model (hf, gguf) or the test split (lm-eval), with a card."""
    from psilm.export import export as export_run

    folder = export_run(run, to, out, arm)
    for path in sorted(p for p in folder.iterdir() if p.is_file() or p.name in ("data", "disk")):
        print(path)


@app.command()
def tasks() -> None:
    """List the built-in tasks."""
    from psilm.tasks import builtin_tasks

    for name, spec in sorted(builtin_tasks().items()):
        print(f"{name:8s} {spec['kind']:15s} {spec['description']}")


def _quiet_libraries() -> None:
    """psilm draws its own progress; the libraries' bars and info logs would bury it."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Could not find a config file.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    import click

    _quiet_libraries()
    try:
        app(args=argv, standalone_mode=False)
    except PsilmError as e:
        print(f"psilm: error: {e}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("psilm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        print("psilm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    sys.exit(main())
