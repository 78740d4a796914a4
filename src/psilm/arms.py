"""The arms of a run: one table of what each arm is, and the policy of what each arm trains on.

An arm is one way of getting a trained student, evaluated on the same test rows as the others.
Config (which names exist), the pipeline (which stages an arm runs), the ledger (which costs an
arm carries), the report (the order of its tables) and bench (which differences it reports) all
read the table below; an arm's name is written here and nowhere else.

The policy functions at the bottom take plain data and return plain data: the pipeline reads the
run folder and hands them what they need.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from psilm.data import without
from psilm.errors import ConfigError, DataError
from psilm.tasks import Example

# --- the table ----------------------------------------------------------------------------------
ZERO_SHOT, SEED_ONLY, DIRECT, PSI, TEACHER, HUMAN = (
    "zero_shot",
    "seed_only",
    "direct",
    "psi",
    "teacher",
    "human",
)
TEACHER_ANSWERS = "teacher_answers"

Mode = Literal["psi", "direct"]  # how generated data is written: with principles, or demos only
Data = Literal["none", "seeds", "generated", "pool"]


@dataclass(frozen=True)
class Arm:
    name: str
    data: Data  # what it trains on: nothing, the seeds, generated rows, or real rows of data.train (pool)
    mode: Mode | None = None  # generated data only: psi (from principles) or direct (demos only)
    writer: Literal["generator", "teacher"] | None = None  # generated data only: the model that writes it
    compared_with: str | None = None  # the baseline of its paired difference (`psilm bench`)
    default: bool = False  # in `arms` when a config does not list them
    about: str = ""  # what its student is, in a few words (model cards)
    round: int = 1  # self-evolution round (evolve.rounds): 2+ builds on the previous round's student
    base: str | None = None  # round arms: the round-1 arm they evolve (psi for psi_round2)
    answers: Literal["student", "teacher"] = "student"  # who answers the test rows

    @property
    def trained(self) -> bool:
        return self.data != "none"

    @property
    def generated(self) -> bool:
        return self.data == "generated"

    @property
    def uses_principles(self) -> bool:
        return self.mode == "psi"

    @property
    def previous(self) -> str | None:
        """The arm of the round before (psi_round3 -> psi_round2 -> psi); None in round 1."""
        return None if self.round == 1 else round_name(self.base or self.name, self.round - 1)

    @property
    def shares_count(self) -> bool:
        """Cut to the run's common row count, so data arms compare fairly."""
        return self.data in ("generated", "pool")


MAX_ROUNDS = 5  # evolve.rounds' upper bound: the table holds round arms up to it
ROUND_BASES = ("direct", "psi")  # the arms self-evolution rounds exist for


def round_name(base: str, rnd: int) -> str:
    """psi, 2 -> psi_round2; round 1 is the arm itself."""
    return base if rnd == 1 else f"{base}_round{rnd}"


def _round_arms() -> list[Arm]:
    """<base>_round<r> for r in 2..MAX_ROUNDS: the same data and mode, built from round r-1's student
    (it checks the new rows, its errors steer the mix; see stages/evolve.py)."""
    out = []
    for r in range(2, MAX_ROUNDS + 1):
        for base in ROUND_BASES:
            out.append(
                Arm(round_name(base, r), "generated", "direct" if base == "direct" else "psi", "generator",
                    compared_with=round_name(base, r - 1), round=r, base=base,
                    about=f"round {r} of {base}: its round-{r - 1} rows plus new ones its round-{r - 1} "
                    "student checked, generated where that student erred")
            )  # fmt: skip
    return out


# in display order: the report's tables, the ledger's rows and the stage commands list them so
ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm(ZERO_SHOT, "none", default=True, about="the student before any training"),
        Arm(SEED_ONLY, "seeds", compared_with=ZERO_SHOT, default=True,
            about="trained on the seed examples alone"),
        Arm(DIRECT, "generated", "direct", "generator", compared_with=SEED_ONLY, default=True,
            about="trained on instances written from the seeds, without principles"),
        Arm(PSI, "generated", "psi", "generator", compared_with=DIRECT, default=True,
            about="trained on instances written from task principles"),
        # a large model writes the data: what psi saves is measured against it
        Arm(TEACHER, "generated", "psi", "teacher", compared_with=PSI,
            about="trained on instances the teacher wrote from the principles"),
        # real rows: how far generated data is from them
        Arm(HUMAN, "pool", compared_with=PSI, about="trained on as many real labelled rows"),
        # no student: the teacher answers each test row, the seeds as its examples (what a student saves)
        Arm(TEACHER_ANSWERS, "none", compared_with=PSI, answers="teacher",
            about="no student: the teacher answering each test row itself, the seeds as examples"),
        *_round_arms(),
    )
}  # fmt: skip
NAMES: tuple[str, ...] = tuple(ARMS)
DEFAULT: tuple[str, ...] = tuple(a.name for a in ARMS.values() if a.default)
GENERATED: tuple[str, ...] = tuple(a.name for a in ARMS.values() if a.generated)
TRAINED: tuple[str, ...] = tuple(a.name for a in ARMS.values() if a.trained)


def check_name(name: str) -> str:
    """A config's arm name, or an error listing the known ones (used as a pydantic validator)."""
    if name not in ARMS:
        first = [a.name for a in ARMS.values() if a.round == 1]
        raise ValueError(
            f"unknown arm {name!r}; arms are {', '.join(first)} and the rounds "
            f"{'/'.join(ROUND_BASES)}_round2 .. _round{MAX_ROUNDS} (evolve.rounds)"
        )
    return name


def rounds_of(names: list[str] | tuple[str, ...], rounds: int) -> list[str]:
    """`names` with every listed psi/direct arm's rounds 2..`rounds` added after them, in display order."""
    extra = [round_name(b, r) for b in ROUND_BASES if b in names for r in range(2, rounds + 1)]
    return [*names, *(a for a in extra if a not in names)]


def order(names: list[str] | tuple[str, ...]) -> list[str]:
    """The known names among `names`, in display order."""
    return [a for a in NAMES if a in names]


def rank(name: str) -> int:
    """Display position of an arm (unknown names last)."""
    return NAMES.index(name) if name in ARMS else len(NAMES)


def require(name: str, stage: str) -> Arm:
    """The arm a stage command names with --arm, or a one-line error listing the arms it runs for."""
    ok = {
        "generate": lambda a: a.generated,
        "filter": lambda a: a.generated,
        "train": lambda a: a.trained,
        "evaluate": lambda a: True,
    }[stage]
    arm = ARMS.get(name)
    if arm is not None and arm.round > 1:
        raise ConfigError(
            f"--arm {name}: a round arm's stages run in order under `psilm run` (evolve.rounds)"
        )
    if arm is None or not ok(arm):
        names = [a.name for a in ARMS.values() if ok(a) and a.round == 1]
        raise ConfigError(f"--arm {name}: {stage} runs for {', '.join(names)}")
    return arm


def baselines(names: list[str]) -> list[tuple[str, str]]:
    """(arm, its baseline) for every arm of `names` whose baseline is there too, in display order."""
    return [(a, b) for a in order(names) if (b := ARMS[a].compared_with) in names]


# --- policy: what each arm trains on --------------------------------------------------------------
def train_count(kept: dict[str, int], fallback: int) -> int:
    """The smallest kept count over the run's data arms; `fallback` (generate.n) without any."""
    return min(kept.values()) if kept else fallback


def human_pool(pool: list[Example], seeds: list[Example], test: list[Example]) -> list[Example]:
    """The real rows the human arm may train on: data.train less the seeds and the test rows.

    Rows are matched as `data.without` and the seed/test overlap check match them (case and
    spacing ignored), so a test row never comes back in with different spacing.
    """
    return without(pool, [*seeds, *test])


def train_rows(
    arm: Arm,
    n: int,
    seeds: list[Example],
    include_seeds: bool,
    seed: int,
    kept: list[dict] | None = None,
    pool: list[Example] | None = None,
) -> list[Example]:
    """The rows `arm` trains on, cut to `n` (the run's equal count) for data arms.

    kept: a generated arm's filtered rows (its train.jsonl); pool: the human arm's human_pool.
    """
    if arm.data == "seeds":
        return list(seeds)
    if arm.data == "pool":
        if pool is None:
            raise DataError(f"the {arm.name} arm needs data.train (a pool of real labelled rows)")
        rows = random.Random(seed).sample(pool, min(n, len(pool)))
    elif arm.data == "generated":
        rows = [Example(r["input"], r["output"], r["answer"], r.get("category")) for r in (kept or [])[:n]]
    else:
        raise DataError(f"the {arm.name} arm is not trained")
    return list(seeds) + rows if include_seeds else rows
