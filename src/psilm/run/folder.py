"""The run folder: where each file lives (Layout) and the manifest of what made it (RunDir).

Only the run machinery (this package) touches the run folder; a stage names what it reads and
writes as artefacts (stages/base.py), and Layout.artefact turns a name into its file.
The manifest records, per stage, its status and key (and when, by which process, it started), so
a finished stage is skipped, an interrupted one resumed, and a changed one's old outputs moved
aside. Its files are written the durable way (durable.py: atomic JSON, append-only JSONL), so a
killed run resumes without losing or doubling a record, and read back checked (readback.py), so a
damaged one is one line naming it and the command that writes it again (Layout.fix).
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from psilm import modelfiles, readback
from psilm.arms import ARMS
from psilm.config import RunConfig, apply_overrides, config_from_dict
from psilm.durable import atomic_write_json, is_main_process, storage_error, sweep_temp_files
from psilm.errors import DataError, PsilmError
from psilm.readback import Fix, read_yaml_mapping

MANIFEST = "manifest.json"
# each JSON(L) file's kind, for reading it back (readback.SHAPES); metrics.json: by its folder
_KINDS = {
    MANIFEST: "manifest",
    "principles.json": "principles",
    "filter_report.json": "filter_report",
    "check_report.json": "check_report",
    "judge.json": "judge",
    "candidates.jsonl": "candidates",
    "train.jsonl": "rows",
    "new.jsonl": "rows",
}
# artefact name -> the Layout member that spells its file
_RUN_ARTEFACTS = {"seeds": "seeds", "principles": "principles", "metrics": "metrics"}
_ARM_ARTEFACTS = {
    "candidates": "candidates",
    "rows": "rows",
    "filter_report": "filter_report",
    "model": "model",
    "arm_metrics": "arm_metrics",
    "judge": "judge",
    "judge_folds": "judge_folds",
    "arm_principles": "arm_principles",
    "new_rows": "new_rows",
    "check_report": "check_report",
}
# the stage command that writes each file of a round-1 arm's folder
_ARM_WRITERS = {
    "candidates.jsonl": "generate",
    "train.jsonl": "filter",
    "filter_report.json": "filter",
    "model": "train",
    "metrics.json": "evaluate",
}


# --- the run folder --------------------------------------------------------------------------
# psi's files sat at the top of the run folder before every arm had its own folder under arms/
_OLD_LAYOUT = ("candidates.jsonl", "train.jsonl", "filter_report.json", "model")


class Layout:
    """Where each file of a run folder lives: spelled here and nowhere else. Only paths, no I/O.

    config.yaml  seeds.jsonl  principles.json  manifest.json  metrics.json  report.html/.md
    psilm.log                           the console's lines, library output, the trainer's records
    raw/<stage>-<role>.jsonl            every model response, the cache a resumed stage reads
    arms/<arm>/candidates.jsonl         generated arms: what the generator wrote
    arms/<arm>/train.jsonl              ... what the filters kept
    arms/<arm>/filter_report.json       ... and why the rest went
    arms/<arm>/model/                   trained arms: adapter/ and merged/ (a soup round: merged/ only)
    arms/<arm>/metrics.json             every arm: its scores on the test rows
    round arms (psi_round2, ...; evolve.rounds), besides the files above:
    arms/<arm>/judge.json               the previous round's student on the judge slice: errors, weights
    arms/<arm>/judge_folds.jsonl        judge seeds_cv: each fold's held-out seeds and its student's answers
                                        (arms/<arm>/judge_fold<i>-<tag>/: that student while it answers)
    arms/<arm>/principles.json          psi rounds: the principles generation reads, with this round's
    arms/<arm>/new.jsonl                this round's candidates that passed the filters
    arms/<arm>/check_report.json        what the student's check kept; train.jsonl = old rows + kept new
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def seeds(self) -> Path:
        return self.root / "seeds.jsonl"

    @property
    def log(self) -> Path:
        """The run's log: the console's lines with times, library output, the trainer's records."""
        return self.root / "psilm.log"

    @property
    def principles(self) -> Path:
        return self.root / "principles.json"

    @property
    def metrics(self) -> Path:
        """Every evaluated arm's scores (less per-row predictions), once the run is through."""
        return self.root / "metrics.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    def raw(self, stage: str, role: str) -> Path:
        return self.root / "raw" / f"{stage.replace('/', '-')}-{role}.jsonl"

    def arm(self, arm: str) -> Path:
        return self.root / "arms" / arm

    def candidates(self, arm: str) -> Path:
        return self.arm(arm) / "candidates.jsonl"

    def rows(self, arm: str) -> Path:
        """What a generated arm trains on: the rows the filters kept (a round's: old + checked new)."""
        return self.arm(arm) / "train.jsonl"

    def filter_report(self, arm: str) -> Path:
        return self.arm(arm) / "filter_report.json"

    def model(self, arm: str) -> Path:
        return self.arm(arm) / "model"

    def merged_model(self, arm: str) -> Path:
        """The plain Hugging Face folder that evaluation loads."""
        return self.model(arm) / "merged"

    def arm_metrics(self, arm: str) -> Path:
        return self.arm(arm) / "metrics.json"

    # --- round arms (evolve.rounds)
    def judge(self, arm: str) -> Path:
        return self.arm(arm) / "judge.json"

    def judge_folds(self, arm: str) -> Path:
        """judge seeds_cv: one record per fold, appended as each fold's student answers (resume)."""
        return self.arm(arm) / "judge_folds.jsonl"

    def fold_model(self, arm: str, fold: int, tag: str) -> Path:
        """judge seeds_cv: a fold's student, removed once it has answered its fold. `tag` (from the
        judge's key) gives each key its own path: the per-process model cache is keyed by path."""
        return self.arm(arm) / f"judge_fold{fold}-{tag}"

    def arm_principles(self, arm: str) -> Path:
        return self.arm(arm) / "principles.json"

    def new_rows(self, arm: str) -> Path:
        """A round arm's new candidates that passed the filters, before the student's check."""
        return self.arm(arm) / "new.jsonl"

    def check_report(self, arm: str) -> Path:
        return self.arm(arm) / "check_report.json"

    # --- artefacts: the names stages read and write by (stages/base.py)
    def artefact(self, what: str, arm: str | None = None) -> Path:
        """The file (or folder) of an artefact: the run's own where `arm` is None, else the arm's."""
        if arm is None:
            if what not in _RUN_ARTEFACTS:
                raise KeyError(f"{what} is no artefact of a run (one of {', '.join(_RUN_ARTEFACTS)})")
            return getattr(self, _RUN_ARTEFACTS[what])
        if what not in _ARM_ARTEFACTS:
            raise KeyError(f"{what} is no artefact of an arm (one of {', '.join(_ARM_ARTEFACTS)})")
        return getattr(self, _ARM_ARTEFACTS[what])(arm)

    # --- what writes a file again
    def fix(self, path: Path) -> Fix:
        """The command that writes `path`, a file of this folder, again (and what to delete first):
        the advice a damaged or missing file gets."""
        run = shlex.quote(str(self.root))
        rerun = f"psilm run {shlex.quote(str(self.config))} --out {run}"
        try:
            rel = path.relative_to(self.root).parts
        except ValueError:
            return Fix(rerun, path)
        if rel == ("config.yaml",):
            return Fix(f"psilm run CONFIG --out {run}", then="CONFIG: the config file this run was made from")
        if rel == (MANIFEST,):
            return Fix(rerun, path, "every step runs again; saved model answers are reused")
        if rel == ("principles.json",):
            return Fix(f"psilm principles --run {run}", path)
        if rel[0] != "arms" or len(rel) < 3:
            return Fix(rerun, None if rel in (("metrics.json",), ("seeds.jsonl",)) else path)
        arm, name = rel[1], rel[2]
        remove = self.model(arm) if name == "model" else path
        if name in _ARM_WRITERS and arm in ARMS and ARMS[arm].round == 1:
            return Fix(f"psilm {_ARM_WRITERS[name]} --run {run} --arm {arm}", remove)
        return Fix(rerun, remove)  # a round arm's steps run under `psilm run` only


def check_root(root: str | Path) -> None:
    """A run folder is a folder: a file of that name is refused before anything is read or written."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise PsilmError(f"{root}: is a file, not a run folder; give a folder (new, or one `psilm run` made)")


def require(layout: Layout, path: Path) -> None:
    """`path`, a file every run folder has (config.yaml, manifest.json); else one line naming what
    writes it."""
    if not path.exists():
        advice = layout.fix(path).say(path, False)
        raise DataError(f"{path}: missing, so {layout.root} is not a run folder as it stands; {advice}")


class RunDir(Layout):
    """One run = one folder (its Layout). The manifest records, per stage, what made each output.

    read_only: open a finished (or running) run to read it: the folder must be a run folder, and
    nothing is swept.
    """

    def __init__(self, root: str | Path, read_only: bool = False):
        super().__init__(root)
        check_root(self.root)
        if read_only:
            missing = [p for p in (self.manifest_path, self.config) if not p.exists()]
            if len(missing) == 2:
                raise PsilmError(
                    f"{self.root}: not a run folder (no manifest.json / config.yaml); run `psilm run` first"
                )
            for path in missing:
                require(self, path)
        self._check_layout()
        self.manifest: dict[str, Any] = self._load_manifest()
        if not read_only and self.root.is_dir() and is_main_process():
            sweep_temp_files(self.root)

    def _check_layout(self) -> None:
        if self.manifest_path.is_file() and any((self.root / p).exists() for p in _OLD_LAYOUT):
            raise DataError(
                f"{self.root}: made by an older psilm (the psi arm's files at the top of the folder, "
                "not under arms/psi/); run again into a new folder (--out NEW_FOLDER)"
            )

    def _load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return self.read(self.manifest_path)
        return {"psilm_version": _version(), "created": _now(), "stages": {}}

    # --- reading back: each file checked against its kind (readback.py); a damaged one is one line
    def read(self, path: Path) -> Any:
        """A JSON file of this folder, checked against its kind's shape."""
        kind = _KINDS.get(path.name, "json")
        if path.name == "metrics.json":
            kind = "run_metrics" if path.parent == self.root else "arm_metrics"
        return readback.read_json(path, kind, self.fix(path))

    def records(self, path: Path) -> list[dict]:
        """A JSONL file of this folder written whole (candidates, kept rows), each line checked."""
        return readback.read_records(path, _KINDS.get(path.name, "records"), self.fix(path))

    def trained_model(self, arm: str) -> Path:
        """The arm's merged model folder, its files checked (headers, and the sizes train recorded)."""
        merged = self.merged_model(arm)
        sizes = self.manifest["stages"].get(f"train/{arm}", {}).get("merged_files")
        modelfiles.check_model(merged, self.fix(merged), sizes)
        return merged

    # --- the manifest
    def save_manifest(self) -> None:
        atomic_write_json(self.manifest_path, self.manifest)

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(name, {})

    def decide(self, name: str, key: str, outputs: list[Path]) -> str:
        """'skip' (done with this key), 'resume' (interrupted with this key) or 'fresh'.

        `outputs` are paths this RunDir gave. When the key changed, the old outputs are moved
        aside under `.superseded/`, never overwritten silently. Raw model responses stay: they are
        keyed by request, so a changed stage reuses every answer it still asks for.
        """
        st = self.manifest["stages"].get(name, {})
        paths = list(outputs)
        if st.get("key") == key:
            return "skip" if self.done(name, key, paths) else "resume"
        present = [p for p in paths if p.exists()]
        if present and is_main_process():
            aside = self.path(
                ".superseded", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{st.get('key', 'nokey')}"
            )
            for o in present:
                dest = aside / o.relative_to(self.root)
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(o), dest)
                except OSError as e:
                    raise storage_error(dest, e) from None
        return "fresh"

    def done(self, name: str, key: str, outputs: list[Path]) -> bool:
        """Whether stage `name` finished with this key and its outputs are there (reads only)."""
        st = self.manifest["stages"].get(name, {})
        return st.get("key") == key and st.get("status") == "done" and all(p.exists() for p in outputs)

    def start(self, name: str, key: str, version: int, inputs: dict[str, str]) -> None:
        st = self.stage(name)
        if st.get("key") != key:
            st.clear()
        # the pid tells this start from an earlier, killed one begun in the same second
        st.update(status="running", key=key, version=version, inputs=inputs, started=_now(), pid=os.getpid())
        self.save_manifest()

    def finish(self, name: str, **info: Any) -> None:
        st = self.stage(name)
        st.update(status="done", finished=_now(), **info)
        self.save_manifest()

    def fail(self, name: str, reason: str) -> None:
        st = self.stage(name)
        st.update(status="failed", error=reason, finished=_now())
        self.save_manifest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _version() -> str:
    from psilm import __version__

    return __version__


# the sections every run folder's config.yaml has held since arms/ (a cut file parses, only shorter)
SAVED_SECTIONS = ("name", "seed", "task", "data", "models", "arms", "principles", "generate",
                  "filter", "train", "evaluate", "emissions")  # fmt: skip


def load_run_config(root: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The resolved config a run folder holds (config.yaml), read back checked, with overrides."""
    layout = Layout(root)
    path = layout.config
    data = read_yaml_mapping(path, SAVED_SECTIONS, layout.fix(path))
    return config_from_dict(apply_overrides(data, overrides or []), path.parent, str(path))
