"""How psilm builds llama-cpp-python: for the CPU it is built on, AMX never.

pip builds llama.cpp with GGML_NATIVE (-march=native). On an Intel Xeon of the Sapphire Rapids
generation that turns on AMX, and every llama.cpp call there dies of a segfault in
`ggml_backend_amx_mul_mat` (llama.cpp #20824; ollama #17006, #17249 on virtualized Sapphire and
Granite Rapids). So psilm spells the CPU's features out instead: GGML_NATIVE=OFF, then each of
SSE4.2, AVX, AVX2, FMA, F16C, BMI2, AVX-VNNI and the AVX-512 family that /proc/cpuinfo shows, and
AMX off. On CPUs where the native build works this is the same instruction set, so the same speed
(measured in docs/backends.md). A CPU without AVX2 gets what it has.

pip caches a built wheel by version, not by CMAKE_ARGS, so a native wheel in pip's cache would be
reused: psilm builds its own wheel with --no-cache-dir into a folder named by the version and the
flags (~/.cache/psilm/wheels/..., or $PSILM_CACHE/wheels) and installs that file; a cached wheel
that does not read back whole (cut short) is built again.

This file needs only the standard library: the Makefile runs it before psilm is installed,
    python src/psilm/llm/llamacpp_build.py install      # build once (3-10 min), then install
    python src/psilm/llm/llamacpp_build.py flags        # print CMAKE_ARGS for this CPU
and psilm imports it for `psilm doctor` and for the rebuild command it names after a crash.
$PSILM_LLAMA_CMAKE_ARGS, when set, replaces the computed flags (e.g. "-DGGML_CUDA=on").
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python, pinned exactly (pyproject.toml says the same)

# /proc/cpuinfo flag -> ggml's CMake switch; AVX512 needs all five of its base flags
_FEATURES = [
    ("sse4_2", "GGML_SSE42"),
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
    ("avx_vnni", "GGML_AVX_VNNI"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
]
_AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
_NEVER = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str] | None = None, machine: str | None = None) -> str:
    """CMAKE_ARGS for llama.cpp on this CPU: its own x86 features spelled out, AMX never.
    Elsewhere (ARM, no /proc/cpuinfo) llama.cpp's own choice, which has no AMX to trip on."""
    override = os.environ.get("PSILM_LLAMA_CMAKE_ARGS")
    if override is not None:
        return override
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return ""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return ""
    on = {switch for flag, switch in _FEATURES if flag in flags}
    if all(f in flags for f in _AVX512_BASE):
        on.add("GGML_AVX512")
    else:  # the AVX-512 extensions need the base
        on -= {"GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16"}
    switches = [s for _, s in _FEATURES] + ["GGML_AVX512"]
    args = ["-DGGML_NATIVE=OFF"]
    args += [f"-D{s}={'ON' if s in on else 'OFF'}" for s in sorted(switches)]
    args += [f"-D{s}=OFF" for s in _NEVER]
    return " ".join(args)


def wheel_dir(args: str | None = None) -> Path:
    """The folder of psilm's own wheel for these flags (keyed by version and flags)."""
    args = cmake_args() if args is None else args
    key = hashlib.sha256(f"{VERSION}|{args}".encode()).hexdigest()[:12]
    root = Path(os.environ.get("PSILM_CACHE") or Path.home() / ".cache" / "psilm")
    return root / "wheels" / f"llama-cpp-python-{VERSION}-{key}"


def rebuild_command() -> str:
    """What a user runs to replace a llama-cpp-python that crashes with psilm's build."""
    return "make llamacpp  (or: python src/psilm/llm/llamacpp_build.py install --force)"


def whole_wheel(path: Path) -> bool:
    """Whether a cached wheel reads back whole (a zip whose every member checks): one cut short by
    a full disk or a killed build is built again, not installed."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def build(python: str, force: bool = False) -> Path:
    """psilm's wheel for this CPU, built once with `python`'s pip (no pip cache either way)."""
    args = cmake_args()
    folder = wheel_dir(args)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels and not force:
        if whole_wheel(wheels[0]):
            return wheels[0]
        print(f"{wheels[0]}: damaged (not a whole wheel); building it again", flush=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in wheels:
            old.unlink()
    except OSError as e:
        raise SystemExit(
            f"{folder}: cannot write the wheel there ({e.strerror or e}); delete what is in the way, "
            "or point PSILM_CACHE at a writable folder"
        ) from None
    print(
        f"building llama-cpp-python {VERSION} for this CPU (3-10 min on 2 cores): CMAKE_ARGS={args!r}",
        flush=True,
    )
    env = {**os.environ, "CMAKE_ARGS": args, "FORCE_CMAKE": "1"}
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-cache-dir",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            f"llama-cpp-python=={VERSION}",
            "-w",
            str(folder),
        ],
        env=env,
        check=True,
    )
    (folder / "CMAKE_ARGS").write_text(args + "\n")
    return sorted(folder.glob("llama_cpp_python-*.whl"))[0]


def install(python: str, force: bool = False) -> None:
    """Build (once) and install psilm's wheel into `python`'s environment, with the server extra."""
    wheel = build(python, force)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)], check=True
    )
    # the server extra's pure-Python dependencies, from the registry as usual
    subprocess.run([python, "-m", "pip", "install", "-q", f"{wheel}[server]"], check=True)
    print(f"llama-cpp-python {VERSION} installed from {wheel}", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("flags", "wheel", "install"):
        print(
            "usage: llamacpp_build.py flags | wheel [--force] | install [--force] [--python PY]",
            file=sys.stderr,
        )
        return 2
    python = argv[argv.index("--python") + 1] if "--python" in argv else sys.executable
    force = "--force" in argv
    if argv[0] == "flags":
        print(cmake_args())
    elif argv[0] == "wheel":
        print(build(python, force))
    else:
        install(python, force)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
