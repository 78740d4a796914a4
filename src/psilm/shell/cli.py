"""The psilm command line: `psilm run`, `psilm demo`, and one command per stage."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from psilm import arms
from psilm.config import load_config
from psilm.errors import PsilmError
from psilm.llm.settings import TEACHER_ALIAS
from psilm.numbers import INTERVAL, duration, percent
from psilm.report import write_report
from psilm.run import bench as bench_mod
from psilm.run import peek, prepare, rates, run_all, run_stage, status
from psilm.run.folder import Layout, check_root, load_run_config, require
from psilm.run.plan import plan as plan_steps
from psilm.run.plan import stage
from psilm.shell import (
    console,
    use_commands,  # noqa: F401  (registers its commands on the app)
)
from psilm.shell.app import ArmOpt, QuietOpt, RunOpt, SetOpt, VerboseOpt, app, logger
from psilm.shell.console import RUN_LOG, coverage_table
from psilm.stages.evaluate import skew_note
from psilm.tasks import load_task


@contextmanager
def _session(ctx, quiet: bool):
    """While a run works: its log file open, and progress bars on the console unless quiet."""

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

    log = logger(quiet, verbose)
    check_root(run)
    layout = Layout(run)
    if not layout.config.exists() and not layout.manifest_path.exists():
        raise PsilmError(
            f"{run}: not a run folder (no config.yaml); create one with `psilm run CONFIG --out {run}`"
        )
    require(layout, layout.manifest_path)  # a stage reads the record of the steps before it
    return prepare(load_run_config(run, overrides), run, log)


def _print_table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['task']}: accuracy on {metrics.get('n_test', '?')} held-out test rows")
    for col in ("arm", "accuracy", INTERVAL, "n"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, m in metrics["arms"].items():
        lo, hi = m["ci95"]
        table.add_row(arm, f"{percent(m['accuracy'])}", f"{percent(lo)} - {percent(hi)}", str(m["n"]))
    Console().print(table)


def _warn_skew(metrics: dict) -> None:
    """One line per arm that answers one label for most test rows (after the report: a report
    that cannot be written stays the one error line)."""
    for arm, m in metrics["arms"].items():
        if line := skew_note(arm, m.get("per_class")):
            print(f"WARNING (evaluate): {line}", file=sys.stderr)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created or resumed).")],
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline: principles, generate, filter, train, evaluate, for every arm."""

    log = logger(quiet, verbose)
    cfg = load_config(config, set_)
    ctx = prepare(cfg, out, log)
    with _session(ctx, quiet):
        metrics = run_all(ctx)
    if metrics["arms"]:
        _print_table(metrics)
    html_path, _ = write_report(out)
    print(f"run folder: {out}")
    print(f"report: {html_path}")
    _warn_skew(metrics)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    teacher_url: Annotated[
        str | None, typer.Option(help="A teacher behind a server: an OpenAI-compatible base URL.")
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option(help="The teacher's model name on that server.")
    ] = None,
    teacher_key_env: Annotated[
        str | None, typer.Option(help="Env variable holding the teacher's API key.")
    ] = None,
    person: Annotated[
        bool, typer.Option(help="Principles from a person's file (psilm/demo/sst2_principles.yaml) instead.")
    ] = False,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The method on the shipped SST-2 slice: the embedded teacher writes the principles, the
    embedded 135M model writes the data and is the student."""

    overrides = list(set_ or [])
    source = f"the embedded teacher {TEACHER_ALIAS}"
    if person:
        overrides += ["principles.file=sst2_principles.yaml", "principles.levels=[category]"]
        source = "a person's file (psilm/demo/sst2_principles.yaml)"
    elif teacher_url:
        if not teacher_model:
            raise PsilmError("--teacher-url needs --teacher-model (the model name the server knows)")
        overrides += ["models.teacher.backend=openai", f"models.teacher.base_url={teacher_url}",
                      f"models.teacher.model={teacher_model}"]  # fmt: skip
        if teacher_key_env:
            overrides.append(f"models.teacher.api_key_env={teacher_key_env}")
        source = f"the teacher {teacher_model} at {teacher_url}"
    config_path = Path(str(resources.files("psilm").joinpath("demo", "sst2.yaml")))
    if not quiet:
        print(f"psilm demo: SST-2 on the embedded SmolLM2-135M; principles by {source}", file=sys.stderr)
    run(config_path, out, overrides, quiet, verbose)
    if not quiet:
        print(NEXT.format(out=out))


NEXT = """next:
  psilm predict new.jsonl --run {out} --out preds.jsonl    # the psi student on your own rows
  psilm export --run {out} --to gguf --out demo-gguf        # the student as GGUF for llama.cpp / Ollama
  psilm init your-data.jsonl -o task.yaml && psilm run task.yaml --out runs/task   # your own task"""


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
    """Run a config over several seeds: mean accuracy per arm with intervals, and paired differences."""

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise PsilmError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    result = bench_mod.bench(
        config, out, seed_list, set_, logger(quiet, verbose), compare, wrap=lambda ctx: _session(ctx, quiet)
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

    def note(line: str) -> None:
        print(line, file=sys.stderr)

    cfg = load_config(config, set_)
    steps = plan_steps(cfg)
    ctx = peek(cfg, out, note)  # checks the inputs as a run would; reads the folder, writes nothing
    width = max((len(s.name) for s in steps), default=0)
    task = ctx.task.name if ctx is not None else load_task(cfg.task).name  # the task's own rates first
    rows = status(ctx, steps) if out is not None else [(s, "run", "") for s in steps]
    left: list[tuple[float, float, float]] = []  # per step to run: estimate, fastest, slowest
    unknown = 0
    for i, (s, mode, why) in enumerate(rows, 1):
        work, seconds, span = workload(cfg, s, task)
        if mode == "run" and work:
            low, high = span or (seconds or 0.0, seconds or 0.0)
            left.append((seconds or 0.0, low, high))
            unknown += seconds is None
        if out is None:
            after = f"after {', '.join(s.needs)}" if s.needs else ""
            print(f"{i:3d}  {s.name:{width}s}  {after:{max(0, 40 - width)}s}  | {work}")
        else:
            print(f"{i:3d}  {mode:4s}  {s.name:{width}s}  {why}  | {work}")
    n_run = sum(mode == "run" for _, mode, _ in rows)
    timed = len(left) - unknown
    if not timed:
        took = (
            "no rate measured on this machine yet (psilm times each step it runs)"
            if unknown
            else "nothing to time"
        )
    else:
        took = f"about {duration(sum(t[0] for t in left))} on this machine"
        low, high = sum(t[1] for t in left), sum(t[2] for t in left)
        took += f" ({duration(low)} to {duration(high)} at other tasks' rates)" if low < high else ""
        took += f" for {timed} steps; {unknown} with no rate measured here yet" if unknown else ""
    where = f" ({out})" if out is not None else "; --out FOLDER says which a run there would skip"
    print(f"{len(rows)} steps: {n_run} to run, {len(rows) - n_run} to skip, {took}{where}")


def workload(cfg, step, task: str) -> tuple[str, float | None, tuple[float, float] | None]:
    """('smollm2-135m on llamacpp: 96 instances, ~1 min 20 s', seconds or None, the range where the
    task has no rate of its own yet) for a plan's line."""

    spec = arms.ARMS[step.arm] if step.arm else None
    work = stage(step.stage, step.arm).workload(cfg, spec)
    if work is None:
        return "", None, None
    model, units, unit = work
    seconds, span = rates.forecast(step.stage, model, units, unit, task)
    guess = f"~{duration(seconds)}" if seconds is not None else "no rate here yet"
    guess += f" (other tasks: {duration(span[0])} to {duration(span[1])})" if span else ""
    return f"{model}: {units:g} {unit}, {guess}", seconds, span


# --- one command per stage, from the stages the run machinery knows -------------------------------
def _said_principles(run, arm, st) -> str:
    coverage = st.get("coverage")
    if coverage:
        from rich.console import Console

        word = run.task.category_word
        Console().print(coverage_table(coverage, run.cfg.principles.per_category, word))
    return f"{st.get('n_principles', 0)} principles in {run.folder.principles}"


def _said_evaluate(run, arm, st) -> str:
    res = run.folder.read(run.folder.arm_metrics(arm))
    lo, hi = res["ci95"]
    return (
        f"{arm}: accuracy {percent(res['accuracy'])} ({INTERVAL} {percent(lo)}-{percent(hi)}, n={res['n']})"
    )


# name: (help, whether it takes --arm, what it prints when done)
STAGE_COMMANDS = {
    "principles": ("Write principles.json (the teacher, or the configured principles file).", False,
                   _said_principles),
    "generate": ("Write candidates.jsonl for an arm of generated data (psi, direct, teacher).", True,
                 lambda run, arm, st: f"candidates: {run.folder.candidates(arm)}"),
    "filter": ("Write train.jsonl and filter_report.json for an arm of generated data.", True,
               lambda run, arm, st: f"kept {st['n_kept']} of {st['n_in']}: {run.folder.rows(arm)}"),
    "train": ("Fine-tune the student for one arm (model/ under the arm's folder).", True,
              lambda run, arm, st: f"model: {run.folder.model(arm)}"),
    "evaluate": ("Score one arm's model on the held-out test slice.", True, _said_evaluate),
}  # fmt: skip


def _stage(name: str, folder: Path, arm: str | None, set_, quiet: bool, verbose: bool) -> None:

    if arm is not None:
        arms.require(arm, name)
    run = _open(folder, set_, quiet, verbose)
    if name == "evaluate" and run.test is None:
        raise PsilmError("data.test is not set in this run's config; nothing to evaluate on")
    with _session(run, quiet):
        st = run_stage(run, name, arm)
    print(STAGE_COMMANDS[name][2](run, arm, st))


def _stage_command(name: str, about: str, takes_arm: bool) -> None:
    if takes_arm:

        def command(run: RunOpt, arm: ArmOpt = arms.PSI, set_: SetOpt = None, quiet: QuietOpt = False,
                    verbose: VerboseOpt = False) -> None:  # fmt: skip
            _stage(name, run, arm, set_, quiet, verbose)
    else:

        def command(
            run: RunOpt, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False
        ) -> None:
            _stage(name, run, None, set_, quiet, verbose)

    app.command(name=name, help=about)(command)


for _name, (_about, _takes_arm, _) in STAGE_COMMANDS.items():
    _stage_command(_name, _about, _takes_arm)


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
