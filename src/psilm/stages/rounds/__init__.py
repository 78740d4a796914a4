"""Self-evolution rounds (evolve.*): settings.py, judge.py (the round's errors, the Judge stage),
check.py (the student checks new rows, the Check stage); a round's principles are
principles/stage.py's RoundPrinciples."""

from psilm.stages.rounds.check import Check, check_rows, merge_rows
from psilm.stages.rounds.judge import Judge, error_mix, fold_training, judge_errors, seed_folds
from psilm.stages.rounds.settings import EvolveSettings, check_task, mix_asked, round_seed

__all__ = ["Check", "EvolveSettings", "Judge", "check_rows", "check_task", "error_mix", "fold_training",
           "judge_errors", "merge_rows", "mix_asked", "round_seed", "seed_folds"]  # fmt: skip
