"""The plan of a run: the ordered steps (a stage for an arm, or for the run) a config asks for.

Computed once, from the config alone (no file is read). Per round: every arm's data first (so the
round's common row count is known), then training, then evaluation; round r builds on round r-1's
students. What a step waits for (`needs`) is read from the stages' own declarations: the steps
that write what it reads. `psilm plan` prints the plan; a stage command (`psilm generate --arm
psi`) runs its own step after the steps that prepare its inputs (principles, judge).
"""

from __future__ import annotations

from dataclasses import dataclass

from psilm import arms
from psilm.config import RunConfig
from psilm.stages.base import Stage
from psilm.stages.evaluate.stage import Evaluate
from psilm.stages.filter.stage import Filter
from psilm.stages.generate.stage import Generate
from psilm.stages.principles.stage import Principles, RoundPrinciples
from psilm.stages.rounds.check import Check
from psilm.stages.rounds.judge import Judge
from psilm.stages.train import Train

# every stage, once; a step's stage is found by its name and whether it is the run's or an arm's
STAGES: tuple[Stage, ...] = (Principles(), Judge(), RoundPrinciples(), Generate(), Filter(), Check(),
                             Train(), Evaluate())  # fmt: skip
# the steps a stage command runs before its own, as `psilm generate` always has (plan_for)
PREPARES = ("principles", "judge")


def stage(name: str, arm: str | None) -> Stage:
    """The stage of step `name/arm` (or `name`, the run's)."""
    spec = arms.ARMS[arm] if arm is not None else None
    for s in STAGES:
        if s.name == name and s.runs_for(spec):
            return s
    raise KeyError(f"no stage {name!r} for {arm or 'the run'}")


@dataclass(frozen=True)
class Step:
    stage: str  # principles, judge, generate, filter, check, train, evaluate
    arm: str | None = None  # None: the run's own step (its principles, which every psi arm reads)
    needs: tuple[str, ...] = ()  # the steps that write what this one reads

    @property
    def name(self) -> str:
        """Its name in manifest.json and on the console: principles, generate/psi, check/psi_round2."""
        return self.stage if self.arm is None else f"{self.stage}/{self.arm}"


def plan(cfg: RunConfig, arm_names: list[str] | None = None) -> list[Step]:
    """The steps of a run of `cfg` (or of its arms `arm_names`), in the order they run."""
    specs = [arms.ARMS[a] for a in (arm_names if arm_names is not None else cfg.arms)]
    steps: list[Step] = []
    writer: dict[tuple[str, str | None], str] = {}  # (artefact, arm or None) -> the step writing it

    def add(name: str, arm: str | None = None) -> None:
        spec = arms.ARMS[arm] if arm is not None else None
        st = stage(name, arm)
        needs = []
        for i in st.reads(cfg, spec):
            src = writer.get((i.what, None if i.of_run else (i.arm or arm)))
            if src is not None and src not in needs:
                needs.append(src)
        step = Step(name, arm, tuple(needs))
        for what in st.writes(cfg, spec):
            writer[(what, arm)] = step.name
        steps.append(step)

    for rnd in sorted({s.round for s in specs}):
        this = [s for s in specs if s.round == rnd]
        for spec in (s for s in this if s.generated):
            if rnd > 1:
                add("judge", spec.name)
            if spec.uses_principles:
                if rnd == 1 and not any(s.name == "principles" for s in steps):
                    add("principles")
                if rnd > 1:
                    add("principles", spec.name)
            add("generate", spec.name)
            add("filter", spec.name)
            if rnd > 1:  # the student checks the new rows; they join round r-1's (cut to its count)
                add("check", spec.name)
        for spec in (s for s in this if s.trained):
            add("train", spec.name)
        if cfg.data.test is not None:
            for spec in this:
                add("evaluate", spec.name)
    return steps


def plan_for(cfg: RunConfig, name: str, arm: str | None = None) -> list[Step]:
    """What a stage command runs: the step `name/arm` after the steps of PREPARES it needs."""
    names = list(dict.fromkeys([*cfg.arms, *([arm] if arm else [])]))
    steps = plan(cfg, names)
    by_name = {s.name: s for s in steps}
    target = name if arm is None else f"{name}/{arm}"
    wanted: set[str] = set()

    def want(n: str) -> None:
        wanted.add(n)
        for m in by_name[n].needs:
            if m in by_name and by_name[m].stage in PREPARES and m not in wanted:
                want(m)

    if target not in by_name:
        return [Step(name, arm)]  # not a step of this run (an evaluate without data.test): it says why
    want(target)
    return [s for s in steps if s.name in wanted]
