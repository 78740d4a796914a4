"""The plan of a run: the ordered (stage, arm) steps that a config asks for, rounds included.

Computed once, from the config alone (no file is read). The pipeline runs the steps in this order,
`psilm plan` prints them, and a stage command (`psilm generate --arm psi`) runs its own step after
the steps that prepare its inputs (principles, judge). Per round: every arm's data first (so the
common row count is known), then training, then evaluation; round r builds on round r-1's
students. Each step names the steps whose outputs it reads (`needs`): what runs again, its
readers run again too.
"""

from __future__ import annotations

from dataclasses import dataclass

from psilm import arms
from psilm.config import RunConfig

# the steps a stage command runs before its own, as `psilm generate` always has (plan_for)
PREPARES = ("principles", "judge")


@dataclass(frozen=True)
class Step:
    stage: str  # principles, judge, generate, filter, check, train, evaluate
    arm: str | None = None  # None: the run's principles, which every arm with principles reads
    needs: tuple[str, ...] = ()  # the names of the steps whose outputs this one reads

    @property
    def name(self) -> str:
        """Its name in manifest.json and on the console: principles, generate/psi, check/psi_round2."""
        return self.stage if self.arm is None else f"{self.stage}/{self.arm}"


def plan(cfg: RunConfig, arm_names: list[str] | None = None) -> list[Step]:
    """The steps of a run of `cfg` (or of its arms `arm_names`), in the order they run."""
    specs = [arms.ARMS[a] for a in (arm_names if arm_names is not None else cfg.arms)]
    steps: list[Step] = []

    def add(stage: str, arm: str | None = None, *needs: str | None) -> str:
        step = Step(stage, arm, tuple(dict.fromkeys(n for n in needs if n)))
        steps.append(step)
        return step.name

    rows: dict[int, dict[str, str]] = {}  # round -> data arm -> the step that writes its train.jsonl
    for rnd in sorted({s.round for s in specs}):
        this = [s for s in specs if s.round == rnd]
        rows[rnd] = {}
        for spec in (s for s in this if s.generated):
            a = spec.name
            trained_before = f"train/{spec.previous}" if rnd > 1 else None
            judge = add("judge", a, trained_before) if rnd > 1 else None
            principles = None
            if spec.uses_principles:
                if not any(s.name == "principles" for s in steps):
                    add("principles")
                principles = "principles"
                if rnd > 1:
                    before = "principles" if rnd == 2 else f"principles/{spec.previous}"
                    principles = add("principles", a, before, judge)
            kept = add("filter", a, add("generate", a, judge, principles))
            if rnd > 1:  # the student checks the new rows; they join round r-1's (cut to its count)
                kept = add("check", a, kept, trained_before, *rows.get(rnd - 1, {}).values())
            rows[rnd][a] = kept
        for spec in (s for s in this if s.trained):
            same_count = rows[rnd].values() if spec.equal_count else ()
            add("train", spec.name, rows[rnd].get(spec.name), *same_count)
        if cfg.data.test is not None:
            for spec in this:
                add("evaluate", spec.name, f"train/{spec.name}" if spec.trained else None)
    return steps


def plan_for(cfg: RunConfig, stage: str, arm: str | None = None) -> list[Step]:
    """What a stage command runs: the step `stage/arm` after the steps of PREPARES it needs."""
    names = list(dict.fromkeys([*cfg.arms, *([arm] if arm else [])]))
    steps = plan(cfg, names)
    by_name = {s.name: s for s in steps}
    target = stage if arm is None else f"{stage}/{arm}"
    wanted: set[str] = set()

    def want(name: str) -> None:
        wanted.add(name)
        for n in by_name[name].needs:
            if n in by_name and by_name[n].stage in PREPARES and n not in wanted:
                want(n)

    if target not in by_name:
        return [Step(stage, arm)]  # not a step of this run (an evaluate without data.test): it says why
    want(target)
    return [s for s in steps if s.name in wanted]
