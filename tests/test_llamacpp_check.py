"""llama.cpp on any x86-64 CPU: the build's flags (AMX never) and the child-process check that turns
a crash into one line. The crash is real: a stand-in `llama_cpp` that kills itself with SIGSEGV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from psilm.errors import BackendError
from psilm.llm import llamacpp_build as B
from psilm.llm import llamacpp_check as K

REPO = Path(__file__).resolve().parents[1]

# /proc/cpuinfo flags of the CPUs that matter (trimmed to the ones the build reads)
SAPPHIRE_RAPIDS = (
    "flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512cd avx512vl avx512dq avx512bw "
    "avx512vbmi avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)
EPYC_ZEN4 = (
    "flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f avx512cd avx512vl avx512dq avx512bw "
    "avx512vbmi avx512_vnni avx512_bf16\n"
)
HASWELL = "flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2\n"
# an AVX-512 extension without the base (some hypervisors mask part of the family)
PARTIAL_512 = "flags\t\t: sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni\n"


def switches(args: str) -> dict[str, str]:
    return dict(a[2:].split("=") for a in args.split())


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSILM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PSILM_LLAMA_CMAKE_ARGS", raising=False)
    K._checked.clear()


def test_sapphire_rapids_gets_avx512_and_never_amx():
    s = switches(B.cmake_args(B.cpu_flags(SAPPHIRE_RAPIDS), "x86_64"))
    assert s["GGML_NATIVE"] == "OFF"  # native would turn AMX on
    assert {s[k] for k in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")} == {"OFF"}
    for on in (
        "GGML_AVX2",
        "GGML_AVX512",
        "GGML_AVX512_VBMI",
        "GGML_AVX512_VNNI",
        "GGML_AVX512_BF16",
        "GGML_AVX_VNNI",
        "GGML_FMA",
        "GGML_F16C",
        "GGML_BMI2",
    ):
        assert s[on] == "ON", on


def test_epyc_and_haswell_get_what_they_have():
    epyc = switches(B.cmake_args(B.cpu_flags(EPYC_ZEN4), "x86_64"))
    assert epyc["GGML_AVX512"] == "ON" and epyc["GGML_AVX_VNNI"] == "OFF"
    haswell = switches(B.cmake_args(B.cpu_flags(HASWELL), "x86_64"))
    assert haswell["GGML_AVX2"] == "ON" and haswell["GGML_AVX512"] == "OFF"
    partial = switches(B.cmake_args(B.cpu_flags(PARTIAL_512), "x86_64"))
    assert partial["GGML_AVX512"] == "OFF" and partial["GGML_AVX512_VNNI"] == "OFF"


def test_elsewhere_llama_cpp_chooses_and_an_override_wins(monkeypatch):
    assert B.cmake_args(B.cpu_flags(SAPPHIRE_RAPIDS), "aarch64") == ""
    assert B.cmake_args(set(), "x86_64") == ""
    monkeypatch.setenv("PSILM_LLAMA_CMAKE_ARGS", "-DGGML_CUDA=on")
    assert B.cmake_args(B.cpu_flags(HASWELL), "x86_64") == "-DGGML_CUDA=on"


def test_wheel_folder_is_keyed_by_the_flags():
    """pip's cache keys a built wheel by version only: psilm's folder keys it by the flags too."""
    a = B.wheel_dir(B.cmake_args(B.cpu_flags(SAPPHIRE_RAPIDS), "x86_64"))
    b = B.wheel_dir(B.cmake_args(B.cpu_flags(HASWELL), "x86_64"))
    assert a != b and a.parent == b.parent and B.VERSION in a.name


def test_build_script_runs_before_psilm_is_installed():
    """The Makefile runs the file with a bare interpreter: it must need nothing but the stdlib."""
    res = subprocess.run(
        [sys.executable, "-S", "-I", str(REPO / "src/psilm/llm/llamacpp_build.py"), "flags"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "AMX" not in res.stdout or "-DGGML_AMX_INT8=OFF" in res.stdout
    bad = subprocess.run(
        [sys.executable, str(REPO / "src/psilm/llm/llamacpp_build.py"), "frobnicate"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_makefile_installs_psilms_own_build_before_psilm():
    text = (REPO / "Makefile").read_text()
    assert text.index("llamacpp_build.py install") < text.index("pip install -q -e")
    pins = (REPO / "pyproject.toml").read_text()
    assert f'"llama-cpp-python=={B.VERSION}"' in pins and "llama-cpp-python[server]>=" not in pins


# --- the check, with a stand-in llama_cpp that dies of SIGSEGV on import --------------------------
@pytest.fixture
def crashing_llama(tmp_path, monkeypatch):
    """A `llama_cpp` first on the import path (this process's and its children's) that kills itself."""
    root = tmp_path / "standin"
    (root / "llama_cpp").mkdir(parents=True)
    (root / "llama_cpp" / "__init__.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))
    for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    return model


def test_a_crashing_build_is_one_line_and_the_verdict_is_kept(crashing_llama):
    with pytest.raises(BackendError) as e:
        K.ensure_works(crashing_llama, 1)
    line = str(e.value)
    assert "\n" not in line
    assert "llama.cpp died of SIGSEGV" in line and "model.gguf" in line
    assert "make llamacpp" in line and "backend: transformers" in line
    stored = json.loads(K._store().read_text())["checks"]
    ((key, result),) = stored.items()
    assert result["returncode"] == -11 and not result["ok"]
    assert key.endswith("|1")  # keyed by build, model hash and threads
    # the second time the verdict comes from the cache: no child (a spy would see none)
    calls = []
    real = K._run_child
    K._run_child = lambda *a: calls.append(a) or real(*a)
    try:
        with pytest.raises(BackendError, match="SIGSEGV"):
            K.ensure_works(crashing_llama, 1)
    finally:
        K._run_child = real
    assert calls == []


def test_the_llamacpp_backend_checks_before_it_loads(crashing_llama):
    from psilm.llm import LlamaCppModel, load_backend

    with pytest.raises(BackendError, match=r"died of SIGSEGV while decoding a few tokens of model\.gguf"):
        load_backend(LlamaCppModel(model=str(crashing_llama), n_threads=1))


def test_a_crashing_build_ends_psilm_with_one_line_and_exit_2(crashing_llama, tmp_path):
    """`psilm run` in a fresh process: the demo config's generator is on llamacpp."""
    demo = REPO / "src/psilm/demo/sst2.yaml"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "psilm.shell.cli",
            "run",
            str(demo),
            "--out",
            str(tmp_path / "run"),
            "-q",
            "--set",
            "arms=[direct]",
            "--set",
            f"models.generator.model={crashing_llama}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("psilm: error:")]
    assert len(errors) == 1 and "llama.cpp died of SIGSEGV" in errors[0]
    assert "Traceback" not in res.stderr


def test_crash_line_names_the_signal_or_the_exit():
    assert "died of SIGILL" in K.crash_line("x", -4)  # an instruction this CPU lacks
    assert "gave no answer" in K.crash_line("x", 124)
    assert "failed (exit 3)" in K.crash_line("x", 3)


def test_a_file_llama_cpp_cannot_read_is_no_verdict(tmp_path):
    """A child that raises (not a signal) is left to the real load's own error; nothing is cached."""
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    K.ensure_works(bad, 1)  # no BackendError from the check
    assert not K._store().exists() or not json.loads(K._store().read_text()).get("checks")


@pytest.mark.slow
def test_the_installed_build_decodes_the_embedded_model_without_amx():
    pytest.importorskip("llama_cpp")
    from psilm.llm.registry import resolve_model

    path = resolve_model("smollm2-135m").file
    K.ensure_works(path, 1)
    v = K.verdict(path, 1)
    assert v["ok"] and "AVX2 = 1" in v["system_info"]
    assert "AMX_INT8 = 1" not in v["system_info"]


@pytest.mark.slow
def test_doctor_prints_the_build_and_the_verdict():
    pytest.importorskip("llama_cpp")
    res = subprocess.run([sys.executable, "-m", "psilm.shell.cli", "doctor"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "check: decodes smollm2-135m with" in out and "llama_print_system_info:" in out
    assert "-DGGML_AMX_INT8=OFF" in out or "(llama.cpp defaults)" in out
    assert "torch: 2.13.0" in out and "extra teacher" in out and "make llamacpp" in out
