"""The psilm command line: `psilm run`, `psilm demo`, and one command per stage."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from psilm import arms
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
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show the libraries' output (log lines, warnings, trainer records)."
    ),
]
ArmOpt = Annotated[str, typer.Option("--arm", help=f"Which arm: {', '.join(arms.NAMES)}.")]


def _logger(quiet: bool, verbose: bool):
    """Sets up the console for a command that works; returns the pipeline's log (a line per event).

    Library output goes to the run folder's psilm.log (and the console too when verbose); the
    pipeline's lines go to the console, unless quiet, and to psilm.log.
    """
    from psilm import console

    console.configure(verbose)
    return console.RUN_LOG.line if quiet else console.say


@contextmanager
def _session(ctx, quiet: bool):
    """While a run works: its log file open, and progress bars on the console unless quiet."""
    from psilm import console

    console.RUN_LOG.open(ctx.log_file, "psilm " + " ".join(_ARGV))
    if quiet:
        yield
        return
    with console.bars() as bars:
        ctx.progress = bars
        try:
            yield
        finally:
            ctx.progress = None


def _open(run: Path, overrides: list[str] | None, quiet: bool, verbose: bool):
    """Reopen a run folder from its resolved config."""
    from psilm.config import load_run_config
    from psilm.pipeline import prepare
    from psilm.store import Layout, check_root, require

    log = _logger(quiet, verbose)
    check_root(run)
    layout = Layout(run)
    if not layout.config.exists() and not layout.manifest_path.exists():
        raise PsilmError(
            f"{run}: not a run folder (no config.yaml); create one with `psilm run CONFIG --out {run}`"
        )
    require(layout, layout.manifest_path)  # a stage reads the record of the steps before it
    return prepare(load_run_config(run, overrides), run, log)


def _run_stage(run: Path, overrides, quiet: bool, verbose: bool, stage, *args):
    """A stage command's work: reopen the run folder, run one stage in a console session."""
    ctx = _open(run, overrides, quiet, verbose)
    with _session(ctx, quiet):
        return ctx, stage(ctx, *args)


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
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created or resumed).")],
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline: principles, generate, filter, train, evaluate, for every arm."""
    from psilm.config import load_config
    from psilm.pipeline import prepare, run_all
    from psilm.report import write_report

    log = _logger(quiet, verbose)
    cfg = load_config(config, set_)
    ctx = prepare(cfg, out, log)
    with _session(ctx, quiet):
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
    teacher: Annotated[
        bool,
        typer.Option(help="Let the embedded 1.5B teacher write the principles (psilm[teacher])."),
    ] = False,
    self_teacher: Annotated[
        bool,
        typer.Option(help="Let the embedded 135M model write its own principles (weak; for comparison)."),
    ] = False,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The whole pipeline on the embedded model and the shipped SST-2 slice."""
    overrides = list(set_ or [])
    if teacher_url or teacher or self_teacher:  # a teacher writes all three levels
        overrides += ["principles.file=null", "principles.levels=[task,category,error]"]
    if teacher_url:
        if not teacher_model:
            raise PsilmError("--teacher-url needs --teacher-model (the model name the server knows)")
        overrides += [
            "models.teacher.backend=openai",
            f"models.teacher.base_url={teacher_url}",
            f"models.teacher.model={teacher_model}",
        ]
        if teacher_key_env:
            overrides.append(f"models.teacher.api_key_env={teacher_key_env}")
    elif self_teacher:
        overrides += ["models.teacher.backend=transformers", "models.teacher.model=smollm2-135m"]
    elif teacher:
        overrides += ["models.teacher.backend=llamacpp", "models.teacher.model=qwen2.5-coder-1.5b"]
    config_path = Path(str(resources.files("psilm").joinpath("demo", "sst2.yaml")))
    if not quiet:
        source = (
            f"teacher at {teacher_url}"
            if teacher_url
            else "the embedded 135M model as its own teacher"
            if self_teacher
            else "the embedded teacher qwen2.5-coder-1.5b"
            if teacher
            else "a person (psilm/demo/sst2_principles.yaml), standing in for a teacher"
        )
        print(f"psilm demo: SST-2 on the embedded SmolLM2-135M; principles from {source}", file=sys.stderr)
    run(config_path, out, overrides, quiet, verbose)


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of one run folder per seed.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: one full run each.")] = "0,1,2",
    compare: Annotated[
        str | None,
        typer.Option(help="One arm against every other; default: each arm against its baseline (arms.py)."),
    ] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a config over several seeds: mean accuracy per arm with 95% intervals, paired differences."""
    from psilm import bench as bench_mod

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise PsilmError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    result = bench_mod.bench(
        config, out, seed_list, set_, _logger(quiet, verbose), compare, wrap=lambda ctx: _session(ctx, quiet)
    )
    print(bench_mod.markdown(result), end="")
    print(f"results: {out / 'bench.json'}")


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config (see configs/).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder: say which steps a run would skip.")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Print the steps a run of CONFIG takes, in order; with --out, which would run or be skipped."""
    from psilm.config import load_config
    from psilm.pipeline import peek, status
    from psilm.plan import plan as plan_steps

    def note(line: str) -> None:
        print(line, file=sys.stderr)

    cfg = load_config(config, set_)
    steps = plan_steps(cfg)
    ctx = peek(cfg, out, note)  # checks the inputs as a run would; reads the folder, writes nothing
    width = max((len(s.name) for s in steps), default=0)
    if out is None:
        for i, s in enumerate(steps, 1):
            after = f"  after {', '.join(s.needs)}" if s.needs else ""
            print(f"{i:3d}  {s.name:{width if after else 0}s}{after}")
        print(f"{len(steps)} steps; --out FOLDER says which a run there would skip")
        return
    rows = status(ctx, steps)
    for i, (s, mode, why) in enumerate(rows, 1):
        print(f"{i:3d}  {mode:4s}  {s.name:{width}s}  {why}")
    n_run = sum(mode == "run" for _, mode, _ in rows)
    print(f"{len(rows)} steps: {n_run} to run, {len(rows) - n_run} to skip ({out})")


# --- one command per stage -------------------------------------------------------------------
@app.command()
def principles(
    run: RunOpt, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False
) -> None:
    """Write principles.json (teacher, or the configured principles file)."""
    from psilm.pipeline import stage_principles

    ctx, ps = _run_stage(run, set_, quiet, verbose, stage_principles)
    coverage = ctx.run.stage("principles").get("coverage")
    if coverage:
        from rich.console import Console

        from psilm.console import coverage_table

        word = ctx.task.category_word
        Console().print(coverage_table(coverage, ctx.cfg.principles.per_category, word))
    print(f"{len(ps)} principles in {ctx.run.principles}")


@app.command()
def generate(
    run: RunOpt,
    arm: ArmOpt = arms.PSI,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write candidates.jsonl for an arm of generated data (psi, direct, teacher)."""
    from psilm.pipeline import stage_generate

    arms.require(arm, "generate")
    ctx, _ = _run_stage(run, set_, quiet, verbose, stage_generate, arm)
    print(f"candidates: {ctx.run.candidates(arm)}")


@app.command(name="filter")
def filter_(
    run: RunOpt,
    arm: ArmOpt = arms.PSI,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write train.jsonl and filter_report.json for an arm of generated data."""
    from psilm.pipeline import stage_filter

    arms.require(arm, "filter")
    ctx, _ = _run_stage(run, set_, quiet, verbose, stage_filter, arm)
    st = ctx.run.stage(f"filter/{arm}")
    print(f"kept {st['n_kept']} of {st['n_in']}: {ctx.run.kept(arm)}")


@app.command()
def train(
    run: RunOpt,
    arm: ArmOpt = arms.PSI,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune the student for one arm (model/ under the arm's folder)."""
    from psilm.pipeline import stage_train

    arms.require(arm, "train")
    ctx, _ = _run_stage(run, set_, quiet, verbose, stage_train, arm)
    print(f"model: {ctx.run.model(arm)}")


@app.command()
def evaluate(
    run: RunOpt,
    arm: ArmOpt = arms.PSI,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score one arm's model on the held-out test slice."""
    from psilm.pipeline import stage_evaluate

    arms.require(arm, "evaluate")
    _, res = _run_stage(run, set_, quiet, verbose, stage_evaluate, arm)
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
    arm: ArmOpt = arms.PSI,
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch (default: the run's).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the run's).")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer new inputs with an arm's model: each row plus its prediction (and label probabilities)."""
    from contextlib import nullcontext

    from psilm import console
    from psilm.predict import predict_file

    _logger(quiet, verbose)  # library output off the console (no run log: nothing is run here)
    with nullcontext() if quiet else console.bars() as bars:

        def bar(total: int):
            return bars.start(f"predict ({arm})", total) if bars is not None else (lambda n: None)

        res = predict_file(run, input_file, out, arm, batch_size, device, bar)
    acc = f"; accuracy {res['accuracy']:.1%} on its labelled rows" if res["accuracy"] is not None else ""
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
    from psilm.export import export as export_run

    folder = export_run(run, to, out, arm, quant)
    for path in sorted(p for p in folder.iterdir() if p.is_file() or p.name in ("data", "disk")):
        print(path)


@app.command()
def tasks() -> None:
    """List the built-in tasks."""
    from psilm.tasks import builtin_tasks

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
    from psilm.init_task import write_config

    path, task = write_config(data, out, test, force)
    inputs = task.get("input_fields") or [task["input_field"]]
    print(f"{path}: {task['kind']} task reading {inputs} -> `{task['target_field']}`", end="")
    print(f", labels {task['labels']}" if "labels" in task else "")
    print(f"read the CHECK comments in {path}, then: psilm run {path} --out runs/{task['name']}")


@app.command()
def doctor() -> None:
    """Print the CPU, llama.cpp's build and its check on this CPU, torch's threads, the extras."""
    from psilm.doctor import main as doctor_main

    raise typer.Exit(doctor_main())


def _click_exceptions():
    """The click exception classes typer uses (a vendored copy in newer typer, else click itself)."""
    return sys.modules[typer.BadParameter.__module__]


def _usage_context(argv: list[str]):
    """A click context for the command named in argv, so an error can show its usage line."""
    group = typer.main.get_command(app)
    try:
        ctx = group.make_context("psilm", [], resilient_parsing=True)
        name = next((a for a in argv if not a.startswith("-")), None)
        cmd = group.get_command(ctx, name) if name else None
        return cmd.make_context(name, [], parent=ctx, resilient_parsing=True) if cmd else ctx
    except Exception:  # only the usage line is lost; the error itself is still shown
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2, never a traceback.

    Usage errors (no such command or option, a missing argument, a bad value) print click's
    usage line and one error line; bare `psilm` prints the help, as click does, with exit 2.
    """
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    click = _click_exceptions()
    try:
        code = app(args=argv, prog_name="psilm", standalone_mode=False)
    except PsilmError as e:
        print(f"psilm: error: {e}", file=sys.stderr)
        return 2
    except click.ClickException as e:  # usage errors: exit 2; NoArgsIsHelpError shows the help
        if isinstance(e, click.UsageError) and e.ctx is None:
            e.ctx = _usage_context(_ARGV)  # the parser leaves it out for an option's missing value
        e.show()
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    finally:
        from psilm.console import RUN_LOG

        RUN_LOG.close_file()
    if code == 130:  # typer turns Ctrl-C into an exit code when not standalone
        print("psilm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


_ARGV: list[str] = []

if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    sys.exit(main())
