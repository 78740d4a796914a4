"""Why not just ask the teacher? The teacher answering each test row itself (the seeds as few-shot
examples, held to the labels) against the students, on the same rows, with what one prediction
costs on this machine.

    python benchmarks/reference.py                        # TREC and SST-2, seeds 0,1,2
    python benchmarks/reference.py --tasks trec --seeds 0

Per (task, seed): the students are the suite's (benchmarks/suite.py: direct, psi_teacher, teacher,
human, their accuracy and their evaluation's seconds and energy per prediction, the student served
through transformers as `psilm predict` serves it); the teacher answering is the `teacher_answers`
arm run here on the same seeds and test rows; and the psi student is exported to GGUF (q8_0, as
`psilm export --to gguf` writes it) and timed answering the same rows through llama.cpp, one
thread, each label scored as evaluation scores it. Writes benchmarks/results/reference/
teacher-vs-student.json (+ .md): accuracy (mean, interval over seeds) and ms and Wh per prediction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import run_config, save  # noqa: E402

from psilm.run.bench import t_interval  # noqa: E402

STUDENTS = {"direct": "direct", "psi": "psi_teacher", "teacher": "teacher", "human": "human"}


def teacher_answering(args, task: str, seed: int) -> dict:
    from psilm.config import load_config
    from psilm.run import prepare, run_all

    cfg = run_config(task, seed)
    cfg["arms"] = ["teacher_answers"]
    folder = args.out / task / f"seed{seed}"
    run = prepare(load_config(data=cfg), folder, lambda m: None)
    run_all(run)
    metrics = run.folder.read(run.folder.arm_metrics("teacher_answers"))
    st = run.folder.manifest["stages"]["evaluate/teacher_answers"]
    return _cost(metrics, st)


def _cost(metrics: dict, st: dict) -> dict:
    """Accuracy, and ms and Wh per prediction from an evaluate step (its answering, not its loading)."""
    n, took = metrics["n"], metrics.get("duration_s") or st.get("predict_s")
    share = min(1.0, took / st["duration_s"]) if st.get("duration_s") else 1.0
    wh = 1000 * (st.get("energy_kwh") or 0.0) * share / n if st.get("energy_kwh") else None
    return {"accuracy": metrics["accuracy"], "n": n, "ms": 1000 * took / n, "wh": wh}


def students(args, task: str, seed: int) -> dict:
    folder = args.suite / task / f"seed{seed}"
    manifest = json.loads((folder / "manifest.json").read_text())["stages"]
    out = {}
    for arm, name in STUDENTS.items():
        path = folder / "arms" / arm / "metrics.json"
        if path.exists():
            out[name] = _cost(json.loads(path.read_text()), manifest.get(f"evaluate/{arm}", {}))
    return out


def gguf_served(args, task: str, seed: int) -> dict | None:
    """The psi student as q8_0 GGUF through llama.cpp, one thread, on the same test rows."""
    import llama_cpp

    from psilm.emissions import EmissionsSettings, track
    from psilm.llm import hf
    from psilm.llm.llamacpp_check import ensure_works
    from psilm.run.finished import FinishedRun
    from psilm.stages.evaluate.likelihood import encode
    from psilm.use.export import export
    from psilm.use.gguf import gguf_option_logprobs

    folder = args.suite / task / f"seed{seed}"
    dest = args.out / task / f"seed{seed}-gguf"
    files = sorted(dest.glob("*-q8_0.gguf")) if dest.exists() else []
    if not files:
        export(folder, "gguf", dest, "psi", "q8_0")
        files = sorted(dest.glob("*-q8_0.gguf"))
    fin = FinishedRun(folder)
    rows = json.loads((folder / "arms" / "psi" / "metrics.json").read_text())["predictions"]
    examples = [
        fin.task.example({fin.task.config.input_field: r["input"], fin.task.config.target_field: r["gold"]})
        for r in rows
    ]
    _, tok = hf.load(str(fin.trained_model("psi", "reference")), "cpu", "float32")
    encoded = [encode(tok, fin.task.prompt(x.input), fin.task.answer_options(x)) for x in examples]
    ensure_works(files[0], 1)
    llm = llama_cpp.Llama(
        model_path=str(files[0]), n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    try:
        with track(EmissionsSettings(), "gguf") as ledger:
            started = time.perf_counter()
            scores = gguf_option_logprobs(llm, encoded)
            took = time.perf_counter() - started
    finally:
        llm.close()
    options = [fin.task.answer_options(x) for x in examples]
    picks = [opts[max(range(len(opts)), key=s.__getitem__)] for opts, s in zip(options, scores, strict=True)]
    correct = sum(p == x.answer for p, x in zip(picks, examples, strict=True))
    n = len(examples)
    wh = 1000 * ledger["energy_kwh"] / n if ledger.get("energy_kwh") else None
    return {"accuracy": correct / n, "n": n, "ms": 1000 * took / n, "wh": wh}


def transformers_served(args, task: str, seed: int) -> dict:
    """The psi student through transformers as `psilm predict` serves it, timed here on the same
    test rows with nothing else running (the suite's own evaluate times shared the cores)."""
    from psilm.config import load_config
    from psilm.emissions import EmissionsSettings, track
    from psilm.run.finished import FinishedRun
    from psilm.stages.evaluate import predict_examples

    folder = args.suite / task / f"seed{seed}"
    fin = FinishedRun(folder)
    rows = json.loads((folder / "arms" / "psi" / "metrics.json").read_text())["predictions"]
    examples = [
        fin.task.example({fin.task.config.input_field: r["input"], fin.task.config.target_field: r["gold"]})
        for r in rows
    ]
    settings = load_config(data=run_config(task, seed)).evaluate
    model = str(fin.trained_model("psi", "reference"))
    predict_examples(fin.task, model, examples[:8], settings, "cpu", dtype="float32")  # loaded, warm
    with track(EmissionsSettings(), "transformers") as ledger:
        p = predict_examples(fin.task, model, examples, settings, "cpu", dtype="float32")
    correct = sum(a == x.answer for a, x in zip(p.preds, examples, strict=True))
    n = len(examples)
    wh = 1000 * ledger["energy_kwh"] / n if ledger.get("energy_kwh") else None
    return {"accuracy": correct / n, "n": n, "ms": 1000 * p.duration_s / n, "wh": wh}


def summarize(points: dict) -> dict:
    table: dict = {}
    for key, arms in points.items():
        task, seed = key.split("|")
        for name, e in arms.items():
            table.setdefault(task, {}).setdefault(name, {})[seed] = e
    out: dict = {}
    for task, names in table.items():
        for name, by_seed in names.items():
            accs = [e["accuracy"] for e in by_seed.values()]
            whs = [e["wh"] for e in by_seed.values() if e.get("wh") is not None]
            out.setdefault(task, {})[name] = {
                "mean": round(statistics.fmean(accs), 4),
                "ci95": t_interval(accs),
                "seeds": {s: round(e["accuracy"], 4) for s, e in sorted(by_seed.items())},
                "ms_per_prediction": round(statistics.fmean(e["ms"] for e in by_seed.values()), 2),
                "wh_per_1000": round(1000 * statistics.fmean(whs), 4) if whs else None,
            }
    return out


def markdown(result: dict) -> str:
    out = [
        f"{result['date']}, {result['machine']}; accuracy % on the test rows (mean over seeds), "
        "time and energy per prediction on this machine.",
        "",
    ]
    for task, names in result["table"].items():
        out += [
            f"**{task}**",
            "",
            "| who answers | accuracy % | 95% interval over seeds | per seed | ms / prediction "
            "| Wh / 1,000 predictions |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in sorted(names.items(), key=lambda kv: kv[1]["ms_per_prediction"]):
            ci = r["ci95"] or [r["mean"], r["mean"]]
            seeds = ", ".join(f"{100 * v:.1f}" for v in r["seeds"].values())
            wh = "-" if r["wh_per_1000"] is None else f"{r['wh_per_1000']:.3g}"
            out.append(
                f"| {name} | {100 * r['mean']:.1f} | {100 * ci[0]:.1f} - {100 * ci[1]:.1f} | {seeds} | "
                f"{r['ms_per_prediction']:.1f} | {wh} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="trec,sst2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--suite", type=Path, default=ROOT / "runs" / "suite")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "reference")
    ap.add_argument(
        "--result", type=Path, default=ROOT / "benchmarks/results/reference/teacher-vs-student.json"
    )
    args = ap.parse_args()
    from evidence import machine

    from psilm.shell import console

    console.configure(verbose=False)
    result = json.loads(args.result.read_text()) if args.result.exists() else {"points": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task in args.tasks.split(","):
            key = f"{task}|{seed}"
            if key in result["points"] or not (args.suite / task / f"seed{seed}" / "metrics.json").exists():
                continue
            print(f"{task} seed {seed} ...", flush=True)
            got = students(args, task, seed)
            got["psi_teacher, transformers (timed alone)"] = transformers_served(args, task, seed)
            got["teacher answering (few-shot)"] = teacher_answering(args, task, seed)
            if (served := gguf_served(args, task, seed)) is not None:
                got["psi_teacher, GGUF q8_0 via llama.cpp"] = served
            result["points"][key] = got
            result.update(
                date=time.strftime("%Y-%m-%d"), machine=machine()["cpu"], table=summarize(result["points"])
            )
            save(args.result, result, markdown(result))


if __name__ == "__main__":
    main()
