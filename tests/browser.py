"""Headless Chromium for tests: find it, or install Debian's package when it is missing.

CI runs as root on Debian with the package registry reachable, so a missing browser is installed,
not skipped: `apt-get install` is retried (after `apt-get update`, which a fresh machine needs) and
waits for a dpkg lock held by another apt. Anything else fails the test with apt's own output.
Set PSILM_CHROMIUM to use another Chromium-compatible binary.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PACKAGES = ("chromium", "fonts-dejavu-core")  # a font, so text in screenshots is not boxes
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--hide-scrollbars",
)


def _find() -> str | None:
    if env := os.environ.get("PSILM_CHROMIUM"):
        return env
    for name in NAMES:
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _apt(*args: str) -> subprocess.CompletedProcess:
    cmd = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n", *cmd]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)


def _install() -> None:
    """apt-get install, with `apt-get update` before the second and later tries."""
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            "Chromium is missing and apt-get is not here; install chromium or set PSILM_CHROMIUM"
        )
    log = []
    for attempt in range(4):
        if attempt:
            update = _apt("update")
            log.append(f"$ apt-get update -> {update.returncode}\n{update.stderr[-1500:]}")
        res = _apt("install", "--no-install-recommends", *PACKAGES)
        log.append(f"$ apt-get install {' '.join(PACKAGES)} -> {res.returncode}\n{res.stderr[-1500:]}")
        if res.returncode == 0 and _find():
            return
        time.sleep(5 * attempt)
    raise RuntimeError("could not install Chromium with apt-get:\n" + "\n".join(log))


def chromium() -> str:
    """Path to a Chromium binary; installs Debian's package once if none is found."""
    if path := _find():
        return path
    lock = Path(tempfile.gettempdir()) / "psilm-chromium-install.lock"
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # parallel test processes install once
        if not _find():
            _install()
    path = _find()
    assert path, "apt-get reported success but no chromium binary is on PATH"
    return path


def render(
    html: Path, *, dump_dom: bool = False, screenshot: Path | None = None, size: tuple[int, int] = (1280, 900)
) -> str:
    """Load a local file headless; returns the DOM after load (dump_dom) or writes a PNG."""
    with tempfile.TemporaryDirectory(prefix="psilm-chromium-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
        cmd.append("--virtual-time-budget=5000")  # let load handlers run before the dump
        if dump_dom:
            cmd.append("--dump-dom")
        if screenshot is not None:
            cmd.append(f"--screenshot={screenshot}")
        cmd.append(Path(html).resolve().as_uri())
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"chromium exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res.stdout


if __name__ == "__main__":  # python tests/browser.py runs/demo/report.html docs/report.png [1280x2000]
    import sys

    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    w, h = (int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "1280x2000").split("x"))
    render(src, screenshot=dest.resolve(), size=(w, h))
    print(dest)
