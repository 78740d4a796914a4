"""Crash safety: SIGKILL `psilm run` at random moments, rerun it, and get an uninterrupted run's files.

The run uses a tiny randomly initialised model as generator and student (tests/tiny.py): seeded
generation and training on it are deterministic on CPU, so a run that was killed and resumed
any number of times must end with byte-identical principles, candidates, filtered data, filter
report and metrics, the same training losses and adapter weights, and raw logs holding every
request exactly once. The kill moments are drawn from a seeded generator and spread over
start-up, generation (by raw records written), the step from generation to filtering, training
and evaluation, watched through the manifest's stage statuses.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import tiny_model, write_tiny_run_config

pytestmark = pytest.mark.slow

N_GENERATE = 24  # instances; the generator writes them in blocks of 4 (batch_size)
PSI = "arms/psi/"
COMPARED = [
    "principles.json",
    "seeds.jsonl",
    *(PSI + f for f in ("candidates.jsonl", "train.jsonl", "filter_report.json")),
]
METRICS = ["arms/psi/metrics.json", "metrics.json"]  # equal but for timings and the model's path
VOLATILE = {"model", "duration_s", "load_s"}
RAW = "raw/generate-psi-generator.jsonl"
PROGRESS = [  # the points of a run, in order, as the manifest shows them
    (stage, status)
    for stage in ("generate/psi", "filter/psi", "train/psi", "evaluate/psi")
    for status in ("running", "done")
]


# --- one `psilm run` in its own process group --------------------------------------------------
class Run:
    def __init__(self, config: Path, out: Path, logs: Path, n: int):
        self.out = out
        log = out / "psilm.log"  # the trainer's loss lines go there (with -q, not to the console)
        self.log_from = log.stat().st_size if log.exists() else 0  # what earlier processes wrote
        # one thread: the same arithmetic in every process (and no fight with the test for 2 cores)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",  # the trainer's loss lines reach out_path as they are printed
        }
        self.err_path, self.out_path = logs / f"run-{n}.err", logs / f"run-{n}.out"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as stdout:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "psilm.shell.cli", "run", str(config), "--out", str(out), "-q"],
                stdout=stdout,
                stderr=err,
                env=env,
                start_new_session=True,  # its own process group: the kill reaches every child
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def stages(self) -> dict:
        try:
            return json.loads((self.out / "manifest.json").read_text())["stages"]
        except (OSError, ValueError, KeyError):
            return {}  # not written yet (it is replaced atomically, so never half-read)

    def reached(self, stage: str, status: str) -> bool:
        """This process (not an earlier one) has brought `stage` to `status`: the manifest names
        the process that started a stage (a resumed stage's entry can otherwise equal the killed
        process's, when both started it in the same second)."""
        st = self.stages().get(stage, {})
        return st.get("status") == status and st.get("pid") == self.proc.pid

    def progress(self) -> int:
        """How far this process got in PROGRESS (-1: nowhere yet); skipped stages do not count."""
        return max(
            (i for i, (stage, status) in enumerate(PROGRESS) if self.reached(stage, status)), default=-1
        )

    def at_or_after(self, stage: str, status: str):
        """A condition: this process is at that point, or past it (a point already behind us by
        the time we look, or done by an earlier process, never makes us wait for the end)."""
        point = PROGRESS.index((stage, status))
        return lambda: self.progress() >= point

    def busy_with(self) -> list[str]:
        """Stages this process has started and not finished."""
        return [
            s
            for s, st in self.stages().items()
            if st.get("status") == "running" and st.get("pid") == self.proc.pid
        ]

    def output(self) -> bytes:
        """What this process has written: its console, and its part of the run folder's psilm.log."""
        try:
            with open(self.out / "psilm.log", "rb") as f:
                f.seek(self.log_from)
                log = f.read()
        except OSError:
            log = b""
        return self.out_path.read_bytes() + log

    def steps_done(self) -> int:
        """Optimizer steps this process has finished (the trainer logs a loss after each)."""
        return self.output().count(b"{'loss'")

    def training_over(self) -> bool:
        """Training has ended and the model is being saved."""
        return b"train_runtime" in self.output()

    def raw_count(self) -> int:
        try:
            return (self.out / RAW).read_bytes().count(b"\n")
        except OSError:
            return 0

    def wait_until(self, cond, timeout: float = 120.0) -> bool:
        """Poll until cond() holds (True) or the process ends first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return False
            if cond():
                return True
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting; stderr: {self.err_path.read_text()[-2000:]}")

    def hold(self, seconds: float, until=None) -> None:
        """Sleep `seconds`, or less: until `until()` holds (the moment aimed at is passing)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until()):
            time.sleep(0.005)

    def kill(self) -> bool:
        """SIGKILL the whole process group; False if it had already finished."""
        if not self.running():
            return False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return True

    def finish(self, timeout: float = 300.0) -> int:
        return self.proc.wait(timeout=timeout)


def complete_lines(path: Path) -> bytes:
    data = path.read_bytes() if path.exists() else b""
    return data[: data.rfind(b"\n") + 1]


def raw_records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / RAW).read_text().splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    model = tiny_model(tmp_path_factory)
    # one test row per batch: evaluation lasts long enough for a kill to land in it
    config = write_tiny_run_config(
        base / "cfg", model, generate={"n": N_GENERATE}, evaluate={"batch_size": 1}
    )
    logs = base / "logs"
    logs.mkdir()
    return base, config, logs


def test_killed_runs_resume_to_the_uninterrupted_result(setup):
    base, config, logs = setup
    out, reference = base / "killed", base / "reference"
    # the uninterrupted run goes alongside (one thread each: 2 cores are enough)
    ref_run = Run(config, reference, logs, 0)
    rng = random.Random(20250705)

    # (what to wait for, then how long to wait before SIGKILL): drawn once, in run order
    def during_generation(run: Run):
        k = min(N_GENERATE - 1, run.raw_count() + rng.randint(1, 6))
        return lambda: run.raw_count() >= k, 0.0

    def after_generation(run: Run):
        return run.at_or_after("generate/psi", "done"), 0.0

    def at_filtering(run: Run):  # filtering takes milliseconds: at it, or just after it
        return run.at_or_after("filter/psi", "running"), 0.0

    # training: while the student is loaded, after the k-th optimizer step, while it is saved;
    # watched through the trainer's own output, so the moment does not depend on the machine
    trained = PROGRESS.index(("train/psi", "done"))

    def after_step(run: Run, k: int):
        """A condition: this process has finished k optimizer steps, or training altogether."""
        return lambda: run.steps_done() >= k or run.progress() >= trained

    def loading_the_student(run: Run):
        # the delay ends early at the first optimizer step: on a fast machine the tiny student
        # trains (and is evaluated) within a second, and a kill after the run's end lands nowhere
        return run.at_or_after("train/psi", "running"), rng.uniform(0.0, 1.0), after_step(run, 1)

    def mid_training(run: Run):
        return after_step(run, rng.randint(1, 7)), 0.0  # k of 8 steps

    def saving_the_model(run: Run):
        return lambda: run.training_over() or run.progress() >= trained, 0.0

    def during_evaluation(run: Run):
        return run.at_or_after("evaluate/psi", "running"), rng.uniform(0.0, 0.1)

    def at_start(run: Run):
        return lambda: True, rng.uniform(0.2, 2.0)  # imports, loading, the first writes

    plan = (
        [at_start]
        + [during_generation] * 4
        + [after_generation, at_filtering]
        + [loading_the_student, mid_training, saving_the_model]
        + [during_evaluation]
    )
    kills: list[tuple[str, str]] = []  # (planned moment, stages running when the kill landed)
    raw_before = b""
    for n, moment in enumerate(plan, start=1):
        run = Run(config, out, logs, n)
        cond, delay, *until = moment(run)
        if run.wait_until(cond):
            run.hold(delay, *until)
            running = run.busy_with()
            if run.kill():
                kills.append((moment.__name__, ",".join(running) or "-"))
        else:
            assert run.proc.returncode == 0, run.err_path.read_text()[-3000:]
        # after every kill: finished records are all still there, whole, each once
        raw_now = complete_lines(out / RAW)
        assert raw_now.startswith(raw_before), "a finished raw record was lost or changed"
        keys = [json.loads(x)["key"] for x in raw_now.splitlines()]
        assert len(keys) == len(set(keys)), "a raw record was written twice"
        raw_before = raw_now
        if (out / PSI / "model").exists():  # a model folder is there whole, or not at all
            assert (out / PSI / "model/merged/model.safetensors").exists()
            assert (out / PSI / "model/adapter/adapter_model.safetensors").exists()

    print("kills:", kills)
    assert len(kills) >= 10, kills
    landed = ",".join(s for _, s in kills)
    assert "generate/psi" in landed and "train/psi" in landed, kills
    assert sum(s == "train/psi" for _, s in kills) >= 2, kills  # the student killed mid-training too

    # the last rerun finishes, and the run folder equals the uninterrupted one
    final = Run(config, out, logs, len(plan) + 1)
    assert final.finish() == 0, final.err_path.read_text()[-3000:]
    assert ref_run.finish() == 0, ref_run.err_path.read_text()[-3000:]
    ref_stages = ref_run.stages()
    for rel in COMPARED:
        assert (out / rel).read_bytes() == (reference / rel).read_bytes(), rel
    for rel in METRICS:
        assert stable(json.loads((out / rel).read_text())) == stable(
            json.loads((reference / rel).read_text())
        ), rel
    ref_raw, got_raw = raw_records(reference), raw_records(out)
    assert len({r["key"] for r in got_raw}) == len(got_raw) == len(ref_raw)
    assert sorted((r["key"], r["text"]) for r in got_raw) == sorted((r["key"], r["text"]) for r in ref_raw)

    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(st["status"] == "done" for st in stages.values()), stages
    for key in ("train_loss", "loss_curve", "steps", "n_train"):
        assert stages["train/psi"][key] == ref_stages["train/psi"][key], key
    assert_same_weights(out / PSI / "model/adapter", reference / PSI / "model/adapter")
    assert_same_weights(out / PSI / "model/merged", reference / PSI / "model/merged")
    assert not [p for p in out.rglob("*.tmp")], "temporary files left behind"
    assert not (out / PSI / "model.partial").exists()


def stable(obj):
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def assert_same_weights(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    (fa,) = a.glob("*.safetensors")
    wa, wb = load_file(fa), load_file(b / fa.name)
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), a
