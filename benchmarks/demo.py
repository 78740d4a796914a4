"""Time `psilm demo` end to end and record its arms table: benchmarks/results/demo/demo.json.

    python benchmarks/demo.py [--out runs/bench-demo] [--keep]

The run folder is created fresh (unless --keep), so every stage really runs. The JSON holds
the wall time, each stage's duration, energy and CO2 from the manifest, the accuracy table, the
machine (cores, CPU, load average before and after) and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from generation import cpu_name  # benchmarks/ is on sys.path when a script here runs

from psilm.run.folder import Layout

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-demo")
    ap.add_argument(
        "--keep", action="store_true", help="Reuse an existing run folder (times only what re-runs)."
    )
    ap.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "demo" / "demo.json")
    args = ap.parse_args()

    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    load_before = os.getloadavg()
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "psilm.shell.cli", "demo", "--out", str(args.out), "--quiet"],
        capture_output=True,
        text=True,
    )
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"psilm demo failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    run = Layout(args.out)
    manifest = json.loads(run.manifest_path.read_text())
    metrics = json.loads(run.metrics.read_text())
    stages = {
        name: {
            k: st.get(k)
            for k in ("duration_s", "energy_kwh", "co2_kg", "tokens", "n_kept", "n_in")
            if st.get(k) is not None
        }
        for name, st in manifest["stages"].items()
    }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "psilm demo",
        "wall_s": round(wall, 1),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "n_test": metrics.get("n_test"),
        "train_count": metrics.get("train_count"),
        "arms": {
            arm: {"accuracy": m["accuracy"], "ci95": m["ci95"], "n": m["n"]}
            for arm, m in metrics["arms"].items()
        },
        "stages": stages,
        "energy_kwh_total": sum(s.get("energy_kwh") or 0 for s in stages.values()),
        "co2_kg_total": sum(s.get("co2_kg") or 0 for s in stages.values()),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"wall_s": result["wall_s"], "arms": result["arms"]}, indent=2))


if __name__ == "__main__":
    main()
