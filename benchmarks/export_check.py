"""Check what `psilm predict` and `psilm export` give on a finished run.

Writes benchmarks/results/export-check/demo.json (the demo run's check; --result for another run).

    python benchmarks/export_check.py RUN_FOLDER [--arm psi] [--work runs/export-check]
        [--quant f16,q8_0,q4_k_m,q4_0] [--n-gguf 50] [--lm-eval-limit 50]

The run folder is only read; everything is written under --work (a fresh folder each time).

1. predict: `psilm predict` on the run's test rows (the rows its evaluate stage scored, in the same
   order); accuracy and each row's answer compared with arms/<arm>/metrics.json.
2. gguf: `psilm export --to gguf --quant ...`; for each file, on the first --n-gguf test rows, how
   often it picks the same answer option as the HF model (each option scored as psilm scores
   it, psilm.use.export.gguf_agreement), the largest log-probability difference, the file's size, and
   whether the Modelfile for Ollama was written.
3. hf, dataset, lm-eval: the exports, their cards; lm-evaluation-harness (when installed) scores
   the exported hf folder on the lm-eval task's first --lm-eval-limit rows, compared row by row
   with psilm's answers.
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
from datetime import UTC, datetime
from pathlib import Path

from generation import cpu_name  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="A finished run folder (read only).")
    ap.add_argument("--arm", default="psi")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "export-check")
    ap.add_argument("--quant", default="f16,q8_0,q4_k_m,q4_0")
    ap.add_argument("--n-gguf", type=int, default=50)
    ap.add_argument("--lm-eval-limit", type=int, default=50)
    ap.add_argument(
        "--result", type=Path, default=ROOT / "benchmarks" / "results" / "export-check" / "demo.json"
    )
    args = ap.parse_args()

    if args.work.resolve().is_relative_to(args.run.resolve()):
        sys.exit(f"--work {args.work}: inside the run folder, which this check only reads")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    result: dict = {
        "run": str(args.run),
        "arm": args.arm,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": os.getloadavg()},
        "python": platform.python_version(),
    }
    result["predict"], preds = check_predict(args.run, args.arm, args.work)
    print(json.dumps(result["predict"]))
    result["gguf"] = check_gguf(args.run, args.arm, args.work, args.quant, args.n_gguf)
    print(json.dumps(result["gguf"]))
    result["cards"] = check_cards(args.run, args.arm, args.work)
    print(json.dumps(result["cards"]))
    result["lm_eval"] = check_lm_eval(args.run, args.work, args.lm_eval_limit, preds)
    print(json.dumps(result["lm_eval"]))
    result["machine"]["load_after"] = os.getloadavg()
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(args.result)


def psilm(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "psilm.shell.cli", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"psilm {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc, round(time.time() - t0, 1)


def test_rows(run: Path) -> list[dict]:
    """The run's test rows in the task's own fields, the ones its evaluate stage scored, in its order."""
    from psilm import data
    from psilm.io import iter_rows
    from psilm.run.finished import FinishedRun

    fin = FinishedRun(run)
    rows = [obj for _, obj in iter_rows(fin.cfg.data.test)]
    return [row for _, row in data.test_slice(list(enumerate(rows)), fin.cfg.data.n_test)]


# --- 1. predict -----------------------------------------------------------------------------------------
def check_predict(run: Path, arm: str, work: Path) -> tuple[dict, list[dict]]:
    from psilm.io import iter_jsonl
    from psilm.run.finished import FinishedRun

    rows = test_rows(run)
    inputs = work / "test-rows.jsonl"
    inputs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = work / "predictions.jsonl"
    _, seconds = psilm("predict", str(inputs), "--run", str(run), "--arm", arm, "--out", str(out), "-q")
    preds = [obj for _, obj in iter_jsonl(out)]
    metrics = json.loads((run / "arms" / arm / "metrics.json").read_text())
    evaluated = metrics["predictions"]
    task = FinishedRun(run).task
    inputs_match = all(task.example(r).input == e["input"] for r, e in zip(rows, evaluated, strict=True))
    same = sum(p["prediction"] == e["pred"] for p, e in zip(preds, evaluated, strict=True))
    accuracy = sum(p["correct"] for p in preds) / len(preds)
    return {
        "n": len(preds),
        "accuracy": accuracy,
        "metrics_accuracy": metrics["accuracy"],
        "accuracy_equal": accuracy == metrics["accuracy"],
        "rows_same_answer": same,
        "same_rows_in_same_order": inputs_match,
        "seconds": seconds,
    }, preds


# --- 2. gguf --------------------------------------------------------------------------------------------
def check_gguf(run: Path, arm: str, work: Path, quant: str, n: int) -> dict:
    from psilm.run.finished import FinishedRun
    from psilm.use.gguf import gguf_agreement

    out = work / "gguf"
    _, seconds = psilm(
        "export", "--run", str(run), "--to", "gguf", "--arm", arm, "--quant", quant, "--out", str(out)
    )
    fin = FinishedRun(run)
    examples = [fin.task.example(row) for row in test_rows(run)[:n]]
    model = fin.trained_model(arm, "check")
    files = {}
    for path in sorted(out.glob("*.gguf")):
        t0 = time.time()
        res = gguf_agreement(model, path, fin.task, examples)
        files[path.name] = res | {
            "mb": round(path.stat().st_size / 1e6, 1),
            "seconds": round(time.time() - t0, 1),
        }
        print(path.name, files[path.name])
    card = (out / "README.md").read_text()
    return {
        "export_seconds": seconds,
        "files": files,
        "modelfile": (out / "Modelfile").read_text() if (out / "Modelfile").is_file() else None,
        "card_notes": [line for line in card.splitlines() if line.startswith("- `") and ".gguf" in line],
        "hf_model_mb": round(sum(p.stat().st_size for p in model.glob("*.safetensors")) / 1e6, 1),
    }


# --- 3. hf, dataset, lm-eval ----------------------------------------------------------------------------
def check_cards(run: Path, arm: str, work: Path) -> dict:
    res = {}
    for to in ("hf", "dataset"):
        out = work / to
        _, seconds = psilm("export", "--run", str(run), "--to", to, "--arm", arm, "--out", str(out))
        card = (out / "README.md").read_text()
        res[to] = {"seconds": seconds, "card_lines": len(card.splitlines()), "files": sorted(os.listdir(out))}
    return res


def check_lm_eval(run: Path, work: Path, limit: int, preds: list[dict]) -> dict:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        return {"skipped": "lm_eval is not installed (pip install 'psilm[lmeval]')"}
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the task reads a local file
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = work / "lm-eval"
    _, seconds = psilm("export", "--run", str(run), "--to", "lm-eval", "--out", str(out))
    name = next(p.stem for p in out.glob("*.yaml"))
    t0 = time.time()
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={work / 'hf'},device=cpu,dtype=float32",
        tasks=[name],
        task_manager=TaskManager(include_path=str(out)),
        apply_chat_template=True,
        log_samples=True,
        batch_size=8,
        limit=limit,
    )
    samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
    # each sample's pick: the option with the highest log-likelihood
    picks = [max(range(len(s["doc"]["options"])), key=lambda i: s["filtered_resps"][i][0]) for s in samples]
    same = sum(
        s["doc"]["options"][k] == preds[s["doc_id"]]["prediction"]
        for s, k in zip(samples, picks, strict=True)
    )
    psilm_acc = sum(preds[s["doc_id"]]["correct"] for s in samples) / len(samples)
    return {
        "task": name,
        "n": len(samples),
        "acc": res["results"][name]["acc,none"],
        "psilm_accuracy_same_rows": psilm_acc,
        "rows_same_answer_as_psilm": same,
        "export_seconds": seconds,
        "lm_eval_seconds": round(time.time() - t0, 1),
        "lm_eval_version": lm_eval.__version__,
    }


if __name__ == "__main__":
    main()
