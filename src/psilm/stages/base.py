"""What a stage is: one object with its name, its version, what it reads and writes, its key and run.

A stage names its inputs and outputs as artefacts of the run folder ("seeds", "principles",
"candidates" of an arm, ...); the run machinery (psilm.run) finds their files, hashes the inputs
into the step's key with the stage's version and `key()`, skips or resumes the step, and hands
`run()` a StepIO: the inputs as plain data, the models as callers, and a way to write each output.
A stage never opens a path of the run folder itself.

Artefacts (psilm.run.folder.Layout spells their files):
  seeds, principles (the run's), metrics            one per run
  candidates, rows, filter_report, model, arm_metrics, judge, judge_folds, arm_principles,
  new_rows, check_report                            one per arm
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from psilm.arms import Arm
    from psilm.durable import JsonlLog
    from psilm.llm import ModelSettings
    from psilm.llm.calls import ModelCaller
    from psilm.tasks import Example, Task


@dataclass(frozen=True)
class Input:
    """An artefact a step reads: of its own arm (`arm` None), another arm's, or the run's."""

    what: str
    arm: str | None = None
    of_run: bool = False  # the run's own artefact (seeds, the run's principles), not an arm's


class StepIO(Protocol):
    """What the run machinery hands a stage's run(): inputs as data, models, a way to write."""

    cfg: Any  # the run's RunConfig (psilm.config sits above the stages: it collects their settings)
    task: Task
    seeds: list[Example]
    test: list[Example] | None
    arm: Arm | None
    category_weights: dict[str, float] | None

    def read(self, what: str, arm: str | None = None, of_run: bool = False) -> Any: ...
    def write(self, what: str, data: Any) -> None: ...
    def folder(self, what: str) -> Path: ...
    def scratch(self, name: str) -> Path: ...
    def journal(self, what: str, needs: tuple[str, ...]) -> JsonlLog: ...
    def caller(self, role: str, model: ModelSettings) -> ModelCaller: ...
    def bar(self, label: str) -> Callable[[int], Callable[[int], None]] | None: ...
    def log(self, line: str) -> None: ...
    def train_count(self, rnd: int) -> int: ...


def model_label(m: Any) -> str:
    """A model as the rates know it: its name and backend ('smollm2-135m on llamacpp')."""
    return f"{m.model} on {m.backend}"


class Stage:
    """One kind of work. A step is a stage for one arm (or for the run, `arm` None)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1  # in every key: a new version runs its steps again in old folders
    editable: ClassVar[bool] = False  # a hand edit of the main output is kept, not overwritten

    def runs_for(self, arm: Arm | None) -> bool:
        """Whether this stage has a step for `arm` (None: the run itself)."""
        return arm is not None

    def reads(self, cfg: Any, arm: Arm | None) -> list[Input]:
        return []

    def writes(self, cfg: Any, arm: Arm | None) -> list[str]:
        return []

    def key(self, io: StepIO) -> dict[str, Any]:
        """What besides its inputs changes the step's output: settings, models, seeds (not batch
        sizes or verbosity)."""
        return {}

    def workload(self, cfg: Any, arm: Arm | None) -> tuple[str, float, str] | None:
        """(the model that does the work, how much work, in what unit) as the config plans it, for
        the machine's rates (psilm plan's estimates); None: too little to time."""
        return None

    def summary(self, st: dict[str, Any]) -> str:
        """A few words on what a finished step made, from its manifest entry (the console's line)."""
        return ""

    def check(self, io: StepIO) -> None:
        """What only run() reads (a model folder), checked before the step starts."""

    def run(self, io: StepIO) -> dict[str, Any]:
        """Do the work; write each output with io.write; return the facts for the manifest."""
        raise NotImplementedError
