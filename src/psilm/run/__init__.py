"""The run machinery: open a run folder (open.py), plan its steps (plan.py), run them (runner.py,
whole.py); the folder's layout and manifest (folder.py); several seeds of one config (bench.py).

    from psilm.run import prepare, run_all, run_stage
    run = prepare(psilm.load_config("configs/sst2.yaml"), "runs/sst2")
    run_stage(run, "generate", "psi")      # one stage command, after what prepares its inputs
    metrics = run_all(run)                 # every step; finished ones are skipped
"""

from psilm.run.open import peek, prepare
from psilm.run.plan import plan
from psilm.run.runner import Run
from psilm.run.whole import run_all, run_stage, status

__all__ = ["Run", "peek", "plan", "prepare", "run_all", "run_stage", "status"]
