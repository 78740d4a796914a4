"""Model files checked before they load: by their headers and sizes, not by loading them.

A trained model folder (check_model: its config, each safetensors header against the file's size,
its JSON and chat template, the sizes train recorded) and a GGUF file (gguf_problem: its header
walked to where its tensor data must end) are checked cheaply, so a file cut short or replaced
is one line naming it, not a library's traceback half-way through a load. Loading is the
backends' work; their own failures are one line as well (llm/hf.py, llm/llamacpp_backend.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from psilm.errors import DataError
from psilm.readback import Advice, advice, damaged, read_json, read_text

# --- a Hugging Face model folder ---------------------------------------------------------------
_TEXT_FILES = (".json", ".jinja", ".txt")


def check_model(folder: str | Path, fix: Advice, sizes: dict[str, int] | None = None) -> None:
    """DamagedError unless `folder` is a whole Hugging Face model folder: its config, every
    safetensors file's header against its size, its JSON and template files; `sizes` (the files
    and sizes its writer recorded), where known, must match too."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: missing; {advice(fix, folder, False)}")
    for name, size in (sizes or {}).items():
        p = folder / name
        if not p.is_file():
            raise damaged(p, "missing from the trained model", fix)
        if (have := p.stat().st_size) != size:
            raise damaged(p, f"{have:,} bytes where {size:,} were written (cut short or replaced)", fix)
    read_json(folder / "config.json", "hf_config", fix)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")):
        raise damaged(folder / "model.safetensors", "missing: the folder holds no weights", fix)
    for w in weights:
        if problem := safetensors_problem(w):
            raise damaged(w, problem, fix)
    for p in sorted(folder.iterdir()):
        if p.suffix == ".json" and p.name != "config.json":
            read_json(p, "json", fix)
        elif p.suffix in _TEXT_FILES:
            text = read_text(p, fix)
            if p.suffix == ".jinja" and (problem := _template_problem(text)):
                raise damaged(p, problem, fix)


def _template_problem(text: str) -> str | None:
    """What is wrong with a chat template (a cut one does not parse), or None."""
    import jinja2

    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as e:
        return f"cut short or damaged (not a template: {e.message}, line {e.lineno})"
    return None


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's header (8-byte length, JSON, data offsets that end
    where the file does), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n > size - 8 or n > 100_000_000:
                return "cut short or not safetensors (its header does not fit the file)"
            header = json.loads(fh.read(n))
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    except (ValueError, RecursionError):  # bad JSON or bad UTF-8
        return "damaged (its header is not JSON)"
    if not isinstance(header, dict):
        return "damaged (its header is not a mapping of tensors)"
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "damaged (a tensor in its header has no data offsets)"
    if 8 + n + end != size:
        return f"cut short ({size:,} bytes; its header says {8 + n + end:,})"
    return None


# --- a GGUF file ----------------------------------------------------------------------------------
_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9


def gguf_problem(path: Path) -> str | None:
    """What is wrong with a GGUF file (no GGUF header, or tensor data its header places past the
    file's end), or None; llama.cpp finds anything else itself."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                return "cut short or not a GGUF file (no GGUF header)"
            _, n_tensors, n_kv = struct.unpack("<IQQ", _exactly(fh, 20))
            if n_tensors > size or n_kv > size:
                return "damaged (its header counts more entries than the file holds)"
            align = 32
            for _ in range(n_kv):
                key = _string(fh)
                value = _skip_value(fh, struct.unpack("<I", _exactly(fh, 4))[0], size)
                if key == b"general.alignment" and value:
                    align = value
            end = 0
            for _ in range(n_tensors):
                _string(fh)
                (n_dims,) = struct.unpack("<I", _exactly(fh, 4))
                dims = struct.unpack(f"<{n_dims}Q", _exactly(fh, 8 * n_dims))
                kind, offset = struct.unpack("<IQ", _exactly(fh, 12))
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
                count = 1
                for d in dims:
                    count *= d
                end = max(end, offset + count // block * type_size)
            start = -(-fh.tell() // align) * align
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    except (EOFError, struct.error, ValueError, KeyError):
        return "cut short or damaged (its header does not read to the end)"
    if start + end > size:
        return f"cut short ({size:,} bytes; its header places tensor data up to byte {start + end:,})"
    return None


def _exactly(fh, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _string(fh) -> bytes:
    (n,) = struct.unpack("<Q", _exactly(fh, 8))
    return _exactly(fh, n)


def _skip_value(fh, kind: int, size: int) -> int | None:
    """Past one metadata value of type `kind`; returns an integer value (general.alignment)."""
    if kind in _SCALARS:
        data = _exactly(fh, _SCALARS[kind])
        return int.from_bytes(data, "little") if kind in (4, 10) else None
    if kind == _STRING:
        _string(fh)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", _exactly(fh, 12))
        if count > size:
            raise ValueError("array longer than the file")
        if item in _SCALARS:
            fh.seek(_SCALARS[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(fh, item, size)
    else:
        raise ValueError(f"unknown value type {kind}")
    return None
