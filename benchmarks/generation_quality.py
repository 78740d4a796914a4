"""Are generated TREC questions what their label asks for? Prompt style and generator, measured.

For TREC (12 seeds drawn from data/trec/train.jsonl as `psilm run` draws them, the person-written
principles in configs/principles/trec.yaml), each generator and prompt style writes the same
planned instances through psilm's own generate stage (`generate_instances` with a ModelCaller),
in psi mode (one sampled principle per prompt) and direct mode (label descriptions, no
principles). Each row is scored with the first-words rule of benchmarks/trec_labels.py (it
agrees 73.5% with real TREC rows): does the question ask for the type its label says, and is it
one question at all. Scored before the filters (every candidate with an input) and after them
(psilm's filter stage, with the test split for decontamination).

Resumable: raw responses go to an append-only log per generator under --work; a re-run (or a
larger --per-label: plan i does not depend on n) asks the model only for what is missing.

    nice python benchmarks/generation_quality.py [--per-label 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # one folder per question: benchmarks/results/README.md
sys.path.insert(0, str(ROOT / "benchmarks"))

from trec_labels import one_question, rule_label  # noqa: E402

from psilm import data as data_mod  # noqa: E402
from psilm.durable import JsonlLog  # noqa: E402
from psilm.llm import ModelConfig, load_backend  # noqa: E402
from psilm.llm.calls import ModelCaller  # noqa: E402
from psilm.stages.filter import FilterSettings, filter_instances  # noqa: E402
from psilm.stages.generate import GenerateSettings, generate_instances  # noqa: E402
from psilm.stages.principles.file import load_principles_file  # noqa: E402
from psilm.tasks import load_task  # noqa: E402

ARMS = [  # (name, generator alias, prompt style)
    ("smollm2 chat", "smollm2-135m", "chat"),
    ("smollm2 list", "smollm2-135m", "list"),
    ("gemma list", "gemma3-270m", "list"),
]
MODES = ["psi", "direct"]
SEED = 0  # as configs/trec.yaml; --seeds adds others (each draws its own 12 seeds)


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of a share k/n."""
    if not n:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def score(rows: list[tuple[str, str]]) -> dict:
    n = len(rows)
    agree = sum(rule_label(q) == lbl for q, lbl in rows)
    one = sum(one_question(q) for q, _ in rows)
    return {
        "n": n,
        "label_agreement": round(agree / n, 4) if n else None,
        "label_agreement_95": wilson(agree, n),
        "one_question": round(one / n, 4) if n else None,
        "one_question_95": wilson(one, n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-label", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default=str(SEED), help="comma-separated run seeds (seed draw and sampling)")
    ap.add_argument(
        "--label-check",
        default=None,
        metavar="MODEL",
        help="also score every input with this checker (generate.label_check, llama.cpp) and filter with "
        "filter.label_margin (--margin); reported as its own arm",
    )
    ap.add_argument("--margin", type=float, default=FilterSettings().label_margin)
    ap.add_argument("--arms", default=",".join(a for a, _, _ in ARMS), help="comma-separated arm names")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "generation-quality")
    ap.add_argument("--out", type=Path, default=RESULTS / "row-quality" / "generation-quality.json")
    args = ap.parse_args()

    task = load_task("trec")
    pool = data_mod.load_examples(task, ROOT / "data" / "trec" / "train.jsonl")
    test = data_mod.load_examples(task, ROOT / "data" / "trec" / "test.jsonl")
    principles = load_principles_file(ROOT / "configs" / "principles" / "trec.yaml", task)["principles"]
    n = args.per_label * len(task.labels)
    args.work.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    old_arms = {_key(a): a for a in previous.get("arms", [])}
    wanted = args.arms.split(",")
    run_seeds = [int(s) for s in args.seeds.split(",")]

    results = []
    for name, model, style in ARMS:
        if name not in wanted:
            continue
        lazy = Lazy(ModelConfig(backend="llamacpp", model=model, n_threads=args.threads, n_ctx=2048))
        check_model = args.label_check
        checker_lazy = None
        if check_model:
            checker_lazy = Lazy(ModelConfig(backend="llamacpp", model=check_model, n_threads=args.threads))
            name = f"{name} + check {check_model} ({args.margin:g})"
        for run_seed, mode in [(s, m) for s in run_seeds for m in MODES]:
            seeds = data_mod.draw_seeds(task, pool, 12, run_seed)
            tag = "" if run_seed == SEED else f"-seed{run_seed}"  # seed 0 keeps its first log's name
            log = JsonlLog(args.work / f"{model}-{style}-{mode}{tag}.jsonl")
            caller = ModelCaller("generator", model, lazy.get, log)
            settings = GenerateSettings(n=n, prompt_style=style, label_check=bool(check_model))
            checker = None
            if checker_lazy is not None:
                check_log = JsonlLog(args.work / f"{check_model}-check-{model}-{style}-{mode}{tag}.jsonl")
                checker = ModelCaller("checker", check_model, checker_lazy.get, check_log)
            start = time.perf_counter()
            records, stats = generate_instances(task, seeds, [] if mode == "direct" else principles, caller,
                                                settings, run_seed, mode, checker=checker)  # fmt: skip
            seconds = time.perf_counter() - start
            log.close()
            if checker is not None:
                checker.log.close()
            kept, report = filter_instances(
                task, records, seeds, test, FilterSettings(label_margin=args.margin)
            )
            before = [(r["input"], r["category"]) for r in records if r["input"]]
            old = old_arms.get((name, mode, run_seed), {})
            # time per question only from calls made now (a resumed arm keeps its earlier figure)
            s_per_q = round(seconds / stats["new_calls"], 2) if stats["new_calls"] >= n / 2 else None
            results.append(
                {
                    "arm": name,
                    "model": model,
                    "prompt_style": style,
                    "mode": mode,
                    "seed": run_seed,
                    "planned": len(records),
                    "parsed": stats["parsed"],
                    "before_filters": score(before),
                    "after_filters": score([(r["input"], r["category"]) for r in kept]),
                    "filter_dropped": report["dropped"],
                    "s_per_question": s_per_q if s_per_q is not None else old.get("s_per_question"),
                    "examples": [
                        {"label": r["category"], "raw": r["raw_input"], "input": r["input"]}
                        for r in records[:12]
                    ],
                }
            )
            print(
                f"{name:13s} {mode:6s} seed {run_seed} parsed {stats['parsed']}/{len(records)}; "
                "before filters "
                f"{results[-1]['before_filters']}; after {results[-1]['after_filters']}; "
                f"s/question {results[-1]['s_per_question']}",
                flush=True,
            )
            write(args.out, task, pool, args.per_label, args.threads, results, old_arms)
        lazy.close()
        if checker_lazy is not None:
            checker_lazy.close()


class Lazy:
    """One backend per generator, loaded only when some request is not in the logs yet."""

    def __init__(self, config: ModelConfig):
        self.config, self.backend = config, None

    def get(self):
        if self.backend is None:
            self.backend = load_backend(self.config)
        return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def _key(arm: dict) -> tuple[str, str, int]:
    return arm["arm"], arm["mode"], arm.get("seed", SEED)  # files written before --seeds: seed 0


def pooled(arms: list[dict]) -> list[dict]:
    """Per (arm, mode) over every measured seed: label agreement and one question, rows pooled."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for a in arms:
        groups.setdefault((a["arm"], a["mode"]), []).append(a)
    out = []
    for (name, mode), group in groups.items():
        row = {"arm": name, "mode": mode, "seeds": sorted(_key(a)[2] for a in group)}
        for when in ("before_filters", "after_filters"):
            n = sum(a[when]["n"] for a in group)
            agree = sum(round(a[when]["label_agreement"] * a[when]["n"]) for a in group if a[when]["n"])
            one = sum(round(a[when]["one_question"] * a[when]["n"]) for a in group if a[when]["n"])
            row[when] = {
                "n": n,
                "label_agreement": round(agree / n, 4) if n else None,
                "label_agreement_95": wilson(agree, n),
                "one_question": round(one / n, 4) if n else None,
                "per_seed_label_agreement": {str(_key(a)[2]): a[when]["label_agreement"] for a in group},
            }
        out.append(row)
    return out


def write(out: Path, task, pool, per_label: int, threads: int, results: list[dict], old: dict) -> None:
    done = {_key(a) for a in results}
    arms = results + [a for k, a in old.items() if k not in done]
    order = [n for n, _, _ in ARMS]  # an arm with a label check sorts after its generator's

    def rank(a: dict) -> tuple:
        base = next(i for i, n in enumerate(order) if a["arm"].startswith(n))
        return base, a["arm"] != order[base], a["arm"], _key(a)[2], MODES.index(a["mode"])

    arms.sort(key=rank)
    real = score([(x.input, x.answer) for x in pool])
    doc = {
        "task": "trec",
        "seeds": "12 drawn from data/trec/train.jsonl with each arm's seed (as psilm run with that seed)",
        "principles": "configs/principles/trec.yaml (person-written), one per prompt (psi)",
        "per_label": per_label,
        "backend": f"llamacpp, n_threads={threads}, batch_size 16; a shared 2-core machine",
        "rule_on_real_train_split": real,
        "arms": arms,
        "pooled_over_seeds": pooled(arms),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "| generator, prompt | mode | seed | parsed | label agreement, 95% interval (before / after filters) "
        "| one question (before / after) | rows kept | s per question |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def pct(v):
        return "-" if v is None else f"{v:.0%}"

    for a in arms:
        b, f = a["before_filters"], a["after_filters"]
        ci = b.get("label_agreement_95")
        ci = f" ({ci[0]:.0%}-{ci[1]:.0%})" if ci else ""
        lines.append(
            f"| {a['arm']} | {a['mode']} | {_key(a)[2]} | {a['parsed']}/{a['planned']} "
            f"| {pct(b['label_agreement'])}{ci} / "
            f"{pct(f['label_agreement'])} | {pct(b['one_question'])} / {pct(f['one_question'])} | {f['n']} "
            f"| {a['s_per_question'] if a['s_per_question'] is not None else '-'} |"
        )
    lines += [
        "",
        "Pooled over seeds:",
        "",
        "| generator, prompt | mode | seeds | rows | label agreement (95%) | per seed "
        "| after filters: rows, agreement |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in pooled(arms):
        b = p["before_filters"]
        if b["n"]:
            ci = b["label_agreement_95"]
            per = ", ".join(pct(v) for v in b["per_seed_label_agreement"].values())
            lines.append(
                f"| {p['arm']} | {p['mode']} | {p['seeds']} | {b['n']} | {pct(b['label_agreement'])} "
                f"({pct(ci[0])}-{pct(ci[1])}) | {per} | {p['after_filters']['n']}, "
                f"{pct(p['after_filters']['label_agreement'])} |"
            )
    lines.append(
        f"\n{per_label * len(task.labels)} planned rows per arm and seed ({per_label} per label), "
        "12 seeds each. "
        f"The rule on TREC's real training split: label agreement {real['label_agreement']:.1%}, "
        f"one question {real['one_question']:.1%} (n {real['n']}). Seconds per question: wall time of "
        f"the model calls a run made over their count ({threads} llama.cpp thread, batches of 16) on a "
        "shared 2-core machine under heavy load: indicative only."
    )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
