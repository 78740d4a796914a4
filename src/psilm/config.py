"""RunConfig: every setting of a run, loaded from YAML with `--set key=value` overrides.

Unknown keys and wrong types are errors that name the key. Relative paths in a config file are
resolved against the file's folder, so a config works from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from psilm import arms as arms_table
from psilm.emissions import EmissionsSettings
from psilm.errors import ConfigError, format_validation_error
from psilm.io import read_yaml
from psilm.llm.base import SCORING_BACKENDS
from psilm.llm.settings import (
    ModelSettings,
    TransformersModel,
    backend_of,
    default_generator,
    default_teacher,
    explain,
)
from psilm.settings import Settings
from psilm.stages.evaluate import EvaluateSettings
from psilm.stages.filter import FilterSettings
from psilm.stages.generate import GenerateSettings, default_n
from psilm.stages.principles import PrinciplesSettings
from psilm.stages.rounds import EvolveSettings, mix_asked
from psilm.stages.train import TrainSettings
from psilm.tasks import TaskConfig, builtin_tasks

Arm = Annotated[str, AfterValidator(arms_table.check_name)]  # a name from the table in arms.py


class DataConfig(Settings):
    # --- seeds: a file of their own, or drawn from the training pool
    seeds: Path | None = Field(
        None,
        description="Seed examples; else drawn from `train`. Each data path is a JSONL, CSV or Parquet "
        "file, a `save_to_disk` folder, or hf:NAME[:CONFIG]:SPLIT.",
    )
    train: Path | None = Field(
        None, description="Training pool: seeds are drawn from it; the human arm uses it."
    )
    n_seeds: int = Field(16, gt=0, description="Seeds drawn from `train` (balanced across labels).")
    # --- held-out evaluation
    test: Path | None = Field(None, description="Test split, used only by `evaluate`.")
    n_test: int | None = Field(500, gt=0, description="Test rows scored (a fixed random slice); None = all.")

    @model_validator(mode="after")
    def _need_seeds(self) -> DataConfig:
        if self.seeds is None and self.train is None:
            raise ValueError(
                "set `data.seeds` (a JSONL of seed examples) or `data.train` (a pool to draw them from)"
            )
        return self


class ModelsConfig(Settings):
    """Each role's model; its `backend` decides which settings it takes (psilm.llm.settings)."""

    teacher: ModelSettings = Field(
        default_factory=default_teacher,
        description="Writes the principles: the embedded qwen2.5-coder-1.5b on llamacpp where "
        "psilm[teacher] is installed, else the embedded 135M model (too small to write principles).",
    )
    generator: ModelSettings = Field(
        default_factory=default_generator,
        description="Writes the instances: the embedded 135M model on llamacpp where llama-cpp-python is "
        "installed (the fastest CPU path), else on transformers.",
    )
    student: ModelSettings = Field(default_factory=TransformersModel, description="Is trained and evaluated.")
    checker: ModelSettings | None = Field(
        None,
        description="Scores new inputs under every label for generate.label_check (None: the generator); "
        "llamacpp or transformers.",
    )

    @field_validator("student", mode="before")
    @classmethod
    def _student_is_local(cls, v: Any) -> Any:
        if backend_of(v) != "transformers":
            raise ValueError("the student is fine-tuned, so it must use the `transformers` backend")
        return v


class RunConfig(Settings):
    name: str = Field("run", description="The run's name, in reports and cards.")
    seed: int = Field(0, description="One seed for seed drawing, sampling and training.")
    task: TaskConfig
    data: DataConfig
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    arms: list[Arm] = Field(
        default_factory=lambda: list(arms_table.DEFAULT), description="The arms to run (see arms.py)."
    )
    principles: PrinciplesSettings = Field(default_factory=PrinciplesSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    filter: FilterSettings = Field(default_factory=FilterSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    evolve: EvolveSettings = Field(default_factory=EvolveSettings)
    emissions: EmissionsSettings = Field(default_factory=EmissionsSettings)

    @field_validator("task", mode="before")
    @classmethod
    def _builtin_task(cls, v: Any) -> Any:
        if isinstance(v, str):
            known = builtin_tasks()
            if v not in known:
                raise ValueError(
                    f"unknown task {v!r}; built-in tasks are {sorted(known)}, or define one inline"
                )
            return known[v]
        return v

    @field_validator("principles")
    @classmethod
    def _some_levels(cls, v: PrinciplesSettings) -> PrinciplesSettings:
        """Whoever writes the principles (a file or the teacher), no level means no principles."""
        if not v.levels:
            raise ValueError("levels is empty; list at least one of task, category, error")
        return v

    @field_validator("arms")
    @classmethod
    def _arms_unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one arm")
        if len(set(v)) != len(v):
            raise ValueError("arms are listed twice")
        return v

    @model_validator(mode="after")
    def _rounds(self) -> RunConfig:
        """evolve.rounds K adds psi/direct rounds 2..K; a listed round arm needs its rounds before it."""
        e = self.evolve
        if e.rounds > 1 and not any(b in self.arms for b in arms_table.ROUND_BASES):
            raise ValueError(
                f"evolve.rounds: {e.rounds} evolves the psi and direct arms, and arms lists neither; "
                "add psi (or direct) to arms, or set evolve.rounds=1"
            )
        expanded = arms_table.rounds_of(self.arms, e.rounds)
        if expanded != self.arms:  # assignment validates the model again: only when it changes
            self.arms = expanded
        for name in self.arms:
            spec = arms_table.ARMS[name]
            if spec.round > e.rounds:
                raise ValueError(
                    f"arms: {name} is round {spec.round}, and evolve.rounds is {e.rounds}; "
                    f"set evolve.rounds={spec.round} or drop {name}"
                )
            if spec.previous is not None and spec.previous not in self.arms:
                raise ValueError(f"arms: {name} builds on {spec.previous}; add {spec.previous} to arms")
        if e.rounds > 1:
            if e.judge == "dev" and self.data.train is None:
                raise ValueError(
                    "evolve.judge: dev draws a dev slice from data.train, which is not set; set data.train "
                    "or evolve.judge=seeds_cv (no labelled rows beyond the seeds)"
                )
            if not e.error_mix and (shaped := mix_asked(e)):
                name, value = next(iter(shaped.items()))
                raise ValueError(
                    f"evolve.{name}: {value} shapes the error mix, and evolve.error_mix is false; "
                    f"set evolve.error_mix=true, or drop evolve.{name}"
                )
            if e.error_principles == "file" and e.principles_file is None:
                raise ValueError(
                    "evolve.error_principles: file needs evolve.principles_file (a principles file)"
                )
        return self

    @model_validator(mode="after")
    def _instances(self) -> RunConfig:
        """generate.n left out: from the task's own label set (resolved here: every stage reads a number)."""
        if self.generate.n is None:
            self.generate.n = default_n(self.task.kind, self.task.labels)
        return self

    @model_validator(mode="after")
    def _base_models_continue_text(self) -> RunConfig:
        """A base model (no chat template, e.g. gemma3-270m) only continues list prompts."""
        from psilm.llm.registry import chat_capable

        for role in ("teacher", "student"):
            name = getattr(self.models, role).model
            if not chat_capable(name):
                raise ValueError(
                    f"models.{role}.model: {name!r} is a base model without a chat template; it can "
                    "only be the generator (models.generator.model, with generate.prompt_style=list)"
                )
        name = self.models.generator.model
        if self.generate.prompt_style == "chat" and not chat_capable(name):
            raise ValueError(
                f"generate.prompt_style: chat needs a chat model, and models.generator.model {name!r} is "
                "a base model without a chat template; set generate.prompt_style=list"
            )
        return self

    @model_validator(mode="after")
    def _label_check(self) -> RunConfig:
        if not self.generate.label_check:
            return self
        if self.task.kind != "classification":
            raise ValueError(
                f"generate.label_check scores an input under each label, and task {self.task.name!r} is "
                f"{self.task.kind}, not classification; set generate.label_check=false"
            )
        checker = self.models.checker or self.models.generator
        where = (
            "models.checker" if self.models.checker is not None else "models.generator (the default checker)"
        )
        if checker.backend not in SCORING_BACKENDS or getattr(checker, "executor", None) == "ray":
            how = f"backend {checker.backend}" + (
                " with executor ray" if checker.backend in SCORING_BACKENDS else ""
            )
            raise ValueError(
                f"generate.label_check: {where} uses {how}, which cannot score text here; set "
                "models.checker to a llamacpp or transformers model (e.g. models.checker.backend=llamacpp, "
                "models.checker.model=gemma3-270m)"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# --- loading ---------------------------------------------------------------------------------
def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set generate.n=50")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except (yaml.YAMLError, RecursionError):  # not YAML (or nested past Python's stack): the text itself
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            if isinstance(node.get(part), str) and part == "task":
                node[part] = dict(builtin_tasks().get(node[part], {}))
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: `{part}` is not a section")
        node[path[-1]] = value
    return data


def _resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    def fix(p: Path | None) -> Path | None:
        if p is None or str(p).startswith("hf:"):  # a Hugging Face dataset, not a path
            return p
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    d = cfg.data
    cfg.data = d.model_copy(update={"seeds": fix(d.seeds), "train": fix(d.train), "test": fix(d.test)})
    if cfg.principles.file is not None:
        cfg.principles = cfg.principles.model_copy(update={"file": fix(cfg.principles.file)})
    if cfg.evolve.principles_file is not None:
        cfg.evolve = cfg.evolve.model_copy(update={"principles_file": fix(cfg.evolve.principles_file)})
    return cfg


def config_from_dict(data: dict, base: Path | None = None, source: str = "config") -> RunConfig:
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e, explain)) from None
    return _resolve_paths(cfg, base or Path.cwd())


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None
) -> RunConfig:
    """Load a RunConfig from a YAML file (or a dict), apply KEY=VALUE overrides, validate."""
    base = Path.cwd()
    source = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        data = read_yaml(path, ConfigError)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        base, source = path.resolve().parent, str(path)
    data = apply_overrides(dict(data or {}), overrides or [])
    return config_from_dict(data, base, source)
