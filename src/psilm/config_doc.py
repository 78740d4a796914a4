"""docs/configuration.md, written from the settings models themselves (`python -m psilm.config_doc`).

Each section of RunConfig is one table: key, default, what it does (the field's description, the
one place a setting is explained). The model settings are one table per backend; the task's, one
table. tests/test_config_doc.py fails when the file and the models differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from psilm.config import DataConfig, ModelsConfig, RunConfig
from psilm.llm.settings import BY_BACKEND, ModelBase
from psilm.tasks.base import TaskConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

HEAD = """# Configuration reference

<!-- Written by `python -m psilm.config_doc > docs/configuration.md` from the settings models:
     edit a setting's description in the code, not here (tests/test_config_doc.py checks). -->

A run is one YAML file (see [`configs/`](../configs/), or write one with `psilm init DATA`); any
setting can be overridden with `--set section.key=value`. Unknown keys and wrong types are errors
that name the key. Relative paths are resolved against the config file's folder. Why a default is
what it is: [defaults.md](defaults.md). Task kinds and the filters' reasons: [tasks.md](tasks.md).

```bash
psilm run configs/trec.yaml --out runs/trec --set generate.n=400   # only what depends on it re-runs
```
"""


def _default(field) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "-"
        if isinstance(value, BaseModel):
            return "(section)"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, Path):
        value = str(value)
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return f"`{text}`" if text not in ("", "null") else ("`null`" if text == "null" else '`""`')


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|") or "-"


def _table(model: type[BaseModel], prefix: str, skip: set[str] = frozenset()) -> list[str]:
    rows = ["| key | default | what it does |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{prefix}{name}` | {_default(field)} | {_cell(field.description)} |")
    return rows


def _sections() -> list[tuple[str, type[BaseModel]]]:
    out = []
    for name, field in RunConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and ann not in (TaskConfig, ModelsConfig):
            out.append((name, ann))
    return out


def render() -> str:
    lines = [HEAD, "## The run", ""]
    top = {
        n
        for n, f in RunConfig.model_fields.items()
        if not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel))
    }
    lines += _table(RunConfig, "", skip=set(RunConfig.model_fields) - top)
    lines += ["", "`task`: a built-in task's name (`psilm tasks`) or an inline task (below).", ""]
    for name, model in _sections():
        doc = (model.__doc__ or "").strip().splitlines()
        lines += [f"## {name}", ""]
        if doc and model is not DataConfig and not doc[0].startswith("Usage docs"):
            lines += [doc[0], ""]
        lines += [*_table(model, f"{name}."), ""]
    lines += ["## models", "", _cell(ModelsConfig.__doc__), "", *_table(ModelsConfig, "models."), ""]
    common = set(ModelBase.model_fields)
    lines += ["Every backend takes these:", "", *_table(ModelBase, "models.ROLE."), ""]
    for backend, cls in BY_BACKEND.items():
        own = [f for f in cls.model_fields if f not in common]
        lines += [f"### backend `{backend}`", "", _cell((cls.__doc__ or "").strip().splitlines()[0]), ""]
        if own:
            lines += [*_table(cls, "models.ROLE.", skip=common), ""]
    lines += ["## task (inline)", "", *_table(TaskConfig, "task."), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
