"""A finished run folder, read only: what `predict` and `export` take from it.

Its resolved config and task, its manifest, and each arm's folder and model, at the paths the
run folder's Layout (folder.py) gives: RunDir opened read only, with its config and task.
"""

from __future__ import annotations

from pathlib import Path

from psilm import arms
from psilm.config import RunConfig
from psilm.errors import PsilmError
from psilm.run.folder import RunDir, load_run_config
from psilm.tasks import Task, load_task


class FinishedRun:
    def __init__(self, root: str | Path):
        root = Path(root)
        if not (root / "config.yaml").exists() and not (root / "manifest.json").exists():
            raise PsilmError(
                f"{root}: not a run folder (no config.yaml / manifest.json); "
                "give --run the folder `psilm run` wrote"
            )
        self.root = root
        self.run = RunDir(root, read_only=True)  # nothing swept: the run may be in use
        self.cfg: RunConfig = load_run_config(root)
        self.task: Task = load_task(self.cfg.task)

    # --- where an arm's files are
    def arm_path(self, arm: str) -> Path:
        """The folder of an arm's files (candidates, train.jsonl, filter report, model/)."""
        return self.run.arm(arm)

    def metrics_path(self, arm: str) -> Path:
        return self.run.arm_metrics(arm)

    # --- trained models
    def trained_arms(self) -> list[str]:
        return [a for a in arms.TRAINED if a in self.cfg.arms and self._trained(a)]

    def _trained(self, arm: str) -> bool:
        """Its train step is done (whether its files are still whole, trained_model checks)."""
        return self.run.manifest["stages"].get(f"train/{arm}", {}).get("status") == "done"

    def trained_model(self, arm: str, command: str) -> Path:
        """The merged model folder of a trained arm, its files checked; an arm without one is a
        user error."""
        if arm not in arms.TRAINED:
            raise PsilmError(
                f"--arm {arm}: {command} needs a trained arm, one of {list(arms.TRAINED)}"
                + (f" ({arm} is the untrained student)" if arm in arms.ARMS else "")
            )
        if not self._trained(arm):
            trained = self.trained_arms()
            raise PsilmError(
                f"--arm {arm}: this arm was not trained in {self.root} (trained arms: {trained or 'none'}); "
                f"pick one of those or train it with `psilm train --run {self.root} --arm {arm}`"
            )
        return self.run.trained_model(arm)
