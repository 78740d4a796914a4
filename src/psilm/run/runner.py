"""An open run (Run) and how one of its steps runs (run_step): skip, resume or run, recorded.

A step is a stage (stages/base.py) for one arm or for the run. run_step reads what the stage
declares it reads, checked (a damaged input stops the step before anything changes), hashes it
into the step's key with the stage's name, version and key(), and asks the run folder (RunDir)
what to do: skip a step done with this key, resume one interrupted with it, or run it afresh
(outputs of another key moved aside). The stage's run() gets a StepIO: its inputs as plain data,
model callers whose raw answers are logged per step, and a way to write its outputs durably.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psilm import arms
from psilm.config import RunConfig
from psilm.durable import (
    JsonlLog,
    atomic_write_json,
    file_hash,
    fingerprint,
    is_main_process,
    storage_errno,
    storage_error,
    write_jsonl,
)
from psilm.emissions import remote_estimate, track
from psilm.errors import DataError, PsilmError
from psilm.llm import ModelSettings, load_backend
from psilm.llm.calls import ModelCaller
from psilm.llm.distributed import RayCaller
from psilm.numbers import duration
from psilm.run import rates
from psilm.run.folder import RunDir
from psilm.run.plan import Step, stage
from psilm.stages.base import Input, Stage
from psilm.tasks import Example, Task


@dataclass
class Run:
    """A run of a config over its folder: the config, the folder, the checked inputs."""

    cfg: RunConfig
    folder: RunDir
    task: Task
    seeds: list[Example]
    test: list[Example] | None
    category_weights: dict[str, float] | None = None  # generate.category_weights, `train` resolved
    log: Callable[[str], None] = print
    progress: Any = None  # psilm.shell.console.Bars while a console shows progress, else None
    # seeds.jsonl's hash as this config would write it, where the folder's file differs (psilm plan)
    new_seeds_hash: str | None = None

    @property
    def log_file(self) -> Path:
        """Library output and the trainer's loss records (the CLI routes them here)."""
        return self.folder.log

    def bar(self, label: str) -> Callable[[int], Callable[..., None]] | None:
        """A progress hook for a step's work: start(total) returns advance(n); None when quiet."""
        if self.progress is None:
            return None
        return lambda total: self.progress.start(label, total)

    def train_count(self, rnd: int = 1) -> int:
        """The rows every data arm of round `rnd` trains on: the smallest kept count (or generate.n)."""
        data = [a for a in self.cfg.arms if arms.ARMS[a].generated and arms.ARMS[a].round == rnd]
        kept = {a: len(self.folder.records(self.folder.rows(a))) for a in data}
        return arms.train_count(kept, self.cfg.generate.n)


# --- what a stage's run() gets --------------------------------------------------------------------
@dataclass
class StepIO:
    run: Run
    step: Step
    stage: Stage
    key: str = ""  # the step's key, once computed (a scratch folder's name carries it)
    callers: list[ModelCaller] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)  # folder artefacts being written

    def __post_init__(self) -> None:
        r = self.run
        self.cfg, self.task, self.seeds, self.test = r.cfg, r.task, r.seeds, r.test
        self.category_weights = r.category_weights
        self.arm = arms.ARMS[self.step.arm] if self.step.arm is not None else None

    def path(self, i: Input) -> Path:
        return self.run.folder.artefact(i.what, None if i.of_run else (i.arm or self.step.arm))

    def read(self, what: str, arm: str | None = None, of_run: bool = False) -> Any:
        """An input as plain data, checked: JSON, JSONL records, or a trained model's folder."""
        i = Input(what, arm, of_run)
        path, folder = self.path(i), self.run.folder
        if what == "model":
            return str(folder.trained_model(i.arm or self.step.arm))
        if not path.exists():
            raise DataError(f"{path}: missing; {folder.fix(path).say(path, False)}")
        return folder.records(path) if path.suffix == ".jsonl" else folder.read(path)

    def write(self, what: str, data: Any) -> None:
        """One of the step's outputs, written whole (a temporary file renamed)."""
        path = self.run.folder.artefact(what, self.step.arm)
        if path.suffix == ".jsonl":
            write_jsonl(path, data)
        else:
            atomic_write_json(path, data)

    def folder(self, what: str) -> Path:
        """Where a folder output (a model) is written; renamed into place when the step is done."""
        target = self.run.folder.artefact(what, self.step.arm)
        partial = target.with_name(f"{target.name}.partial")
        if is_main_process():
            shutil.rmtree(partial, ignore_errors=True)
        self.folders[what] = partial
        return partial

    def scratch(self, name: str) -> Path:
        """A folder of the step's own, inside its arm's folder (a fold student while it answers)."""
        return self.run.folder.arm(self.step.arm) / name

    def journal(self, what: str, needs: tuple[str, ...]) -> JsonlLog:
        """An output appended record by record, so a killed step resumes where it stopped."""
        return JsonlLog(self.run.folder.artefact(what, self.step.arm), needs=needs)

    def caller(self, role: str, model: ModelSettings) -> ModelCaller:
        """A model caller for one role; its raw answers go to raw/<step>-<role>.jsonl."""
        log = JsonlLog(self.run.folder.raw(self.step.name, role), needs=("key",))
        if model.executor == "ray":  # same blocks, records and resume rule, generated by Ray workers
            c = RayCaller(role, model, log, chunk=model.batch_size, remote=model.backend == "openai")
        else:
            remote = model.backend == "openai"
            c = ModelCaller(role, model.model, lambda: load_backend(model), log, chunk=model.batch_size,
                            remote=remote, json_constrained=model.json_constrained)  # fmt: skip
        self.callers.append(c)
        c.on_progress = self.run.bar(f"{self.step.name} ({role})")
        return c

    def bar(self, label: str):
        return self.run.bar(label)

    def log(self, line: str) -> None:
        self.run.log(line)

    def train_count(self, rnd: int) -> int:
        return self.run.train_count(rnd)


# --- running a step -------------------------------------------------------------------------------
def outputs(run: Run, step: Step, st: Stage) -> list[Path]:
    """The files a step's key stands for (a model: its merged config, written last)."""
    out = []
    for what in st.writes(run.cfg, arms.ARMS[step.arm] if step.arm else None):
        path = run.folder.artefact(what, step.arm)
        out.append(path / "merged" / "config.json" if what == "model" else path)
    return out


def key_of(io: StepIO) -> tuple[str, dict[str, Any]]:
    """(the step's key, its input hashes): its stage, version, key() and what it reads."""
    inputs: dict[str, str] = {}
    for i in io.stage.reads(io.cfg, io.arm):
        path, arm = io.path(i), None if i.of_run else (i.arm or io.step.arm)
        label = i.what if i.of_run or arm == io.step.arm else f"{i.what}/{arm}"
        if i.what == "model":  # a model stands for the training that made it
            st = io.run.folder.manifest["stages"].get(f"train/{arm}", {})
            if st.get("status") != "done":
                raise DataError(
                    f"{path / 'merged'}: not trained yet; run `psilm train --arm {arm}` (or psilm run)"
                )
            inputs[label] = st["key"]
        elif i.what == "seeds" and io.run.new_seeds_hash:
            inputs[label] = io.run.new_seeds_hash  # the seeds a run of this config would write
        else:
            io.read(i.what, i.arm, i.of_run)  # checked: a damaged input is no input to hash
            inputs[label] = file_hash(path)
    parts = {"stage": io.stage.name, "version": io.stage.version, "key": io.stage.key(io), "inputs": inputs}
    return fingerprint(parts), inputs


def step_key(run: Run, step: Step) -> tuple[str, list[Path]]:
    """(the key a run of the folder would give `step`, its outputs); reads, writes nothing."""
    st = stage(step.stage, step.arm)
    return key_of(StepIO(run, step, st))[0], outputs(run, step, st)


def run_step(run: Run, step: Step) -> dict[str, Any]:
    """Skip, resume or run one step; record status, key, duration and tokens in the manifest."""
    st = stage(step.stage, step.arm)
    io = StepIO(run, step, st)
    key, inputs = key_of(io)
    io.key = key
    outs = outputs(run, step, st)
    folder, name = run.folder, step.name
    if not folder.done(name, key, outs):
        st.check(io)
    before = folder.manifest["stages"].get(name, {})
    mode = folder.decide(name, key, outs)
    if mode == "skip":
        entry = folder.stage(name)
        if st.editable and entry.get("output_hash") and file_hash(outs[0]) != entry["output_hash"]:
            folder.read(outs[0])  # a damaged file is no edit to keep
            run.log(f"[keep] {name}: {outs[0].name} was edited by hand; using it as is")
            entry.update(edited=True, output_hash=file_hash(outs[0]))
            folder.save_manifest()
        else:
            run.log(f"[skip] {name}: inputs and settings unchanged")
        return entry
    if mode == "fresh" and before.get("key"):
        run.log(f"[run] {name}: {changed(before, st)}; the old outputs are in .superseded/")
    folder.start(name, key, st.version, inputs)
    bar = run.progress.stage(name) if run.progress else nullcontext()
    main = is_main_process()
    try:
        with bar, track(run.cfg.emissions, name) as ledger:
            info = st.run(io)
        for what, partial in io.folders.items():  # folder outputs: whole, or not there at all
            target = folder.artefact(what, step.arm)
            if main:
                shutil.rmtree(target, ignore_errors=True)
                partial.rename(target)
    except BaseException as e:
        if main:
            for partial in io.folders.values():
                shutil.rmtree(partial, ignore_errors=True)  # gives a full disk its space back
        if isinstance(e, PsilmError):
            folder.fail(name, str(e))
            raise
        if isinstance(e, KeyboardInterrupt):
            folder.fail(name, "interrupted; rerun the same command to resume")
            raise
        if isinstance(e, Exception) and (code := storage_errno(e)) is not None:
            err = storage_error(getattr(e, "filename", None) or folder.root, code)
            folder.fail(name, str(err))
            raise err from None
        raise
    finally:
        for c in io.callers:
            c.close()
    info.update(ledger)
    if st.editable:  # a later hand edit is kept, not overwritten
        info["output_hash"] = file_hash(outs[0])
    tokens, calls, remote = {}, 0, []
    for c in io.callers:
        tokens[c.role] = dict(c.tokens)
        calls += c.new_calls
        if c.remote:
            remote.append(remote_estimate(run.cfg.emissions, c.tokens["prompt"] + c.tokens["completion"]))
    info.update(tokens=tokens, model_calls=calls)
    if remote:
        info["remote_energy"] = remote
    folder.finish(name, **info)
    if mode == "fresh" and (work := st.workload(run.cfg, io.arm)) and info.get("duration_s"):
        rates.record(st.name, *work, info["duration_s"], run.task.name)  # psilm plan reads it
    run.log(stage_summary(name, folder.stage(name), resumed=mode == "resume"))
    return folder.stage(name)


def changed(entry: dict[str, Any], st: Stage) -> str:
    """Why a step done before runs again: its stage's version, or what it reads or is set to."""
    if "version" not in entry:
        return "made by a psilm before step versions, so its key is of another kind"
    if entry["version"] != st.version:
        return f"its stage's version changed ({entry['version']} -> {st.version})"
    return "its inputs or settings changed"


def stage_summary(name: str, st: dict[str, Any], resumed: bool = False) -> str:
    """e.g. 'generate/psi: 96 instances, 12.3 s', from a finished step's manifest entry."""
    kind, _, arm = name.partition("/")
    try:
        what = stage(kind, arm or None).summary(st)
    except (KeyError, TypeError, ValueError):  # an entry without the facts its stage writes
        what = ""
    took = st.get("duration_s")
    parts = [what] if what else []
    if isinstance(took, int | float):
        parts.append(duration(took))
    return f"{name}: {', '.join(parts) or 'done'}" + (" (resumed)" if resumed else "")


def run_steps(run: Run, planned: list[Step]) -> None:
    """Each step in order, each keyed only when the ones before it are done."""
    for step in planned:
        run_step(run, step)
