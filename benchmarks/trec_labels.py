"""How often does a generated TREC question ask for the type of answer its label says?

A transparent check of generated data, without a model: a rule on the question's first words
("How many ..." -> numeric, "Who ..." -> human, "Where ..." -> location, "... stand for" ->
abbreviation, "Why / How do ..." and "What is X?" -> description, other what/which -> entity). The
rule is scored first on TREC's real training split (its own accuracy, so its error is known), then
on the rows each arm of the evidence runs trained on: the share whose rule label matches the label
the generator was asked to write for, and the share that is one question at all.

For round-2 arms (evolve.rounds 2) it also reads check_report.json, which scores every new row under
the student's eyes, and says what each check policy would have trained on: how many of the new rows
it keeps and how often the rule agrees with the label it keeps them under (none: the asked label;
agree: rows where the student agrees; relabel: the student's label where it is >= 0.9 sure; weight:
rows weighted by the student's probability of the asked label; student: the student's label on all).

    python benchmarks/trec_labels.py [--runs runs/evidence/trec]
        [--out benchmarks/results/row-quality/trec-labels.json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from psilm.run.folder import Layout

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # one folder per question: benchmarks/results/README.md
TRAIN = ROOT / "data" / "trec" / "train.jsonl"

RULES = [  # first match wins
    ("abbreviation", r"\b(stand for|stands for|abbreviat\w*|acronym|short for|short form)\b"),
    (
        "numeric",
        r"(\bhow (many|much|far|long|old|tall|big|high|fast|large|deep|wide|often|hot|cold|heavy)\b|^when\b"
        r"|\b(what|which) (year|date|day|month|time|percentage|number|age|temperature|speed|population)\b"
        r"|what is the (population|distance|height|length|size|speed|temperature|weight|number)\b)",
    ),
    (
        "human",
        r"^(who|whom|whose)\b|^(what|which|name)( [\w.'-]+){0,3} (person|man|woman|president|actor"
        r"|actress|author|writer|singer|company|team|band|king|queen|scientist|inventor|star|people"
        r"|player|director|artist|poet|composer|character|hero|leader)s?\b",
    ),  # fmt: skip
    (
        "location",
        r"^where\b|\bwhat (country|city|state|continent|part of)\b"
        r"|^(what|which|name)( [\w.'-]+){0,3} (country|countries|city|cities|state|continent|river"
        r"|mountain|island|place|capital|ocean|lake|county|province|waterfall)s?\b"
        r"|\bcapital of\b",
    ),  # fmt: skip
    (
        "description",
        r"^(why|how (do|does|did|is|are|can|was|were|to|should|would)\b|what does .* mean"
        r"|what (is|are|was|were) (a |an |the )?[\w'-]+( [\w'-]+)? ?\?$|define\b"
        r"|what is the (meaning|definition)|what causes\b|what happens\b)",
    ),
    ("entity", r"^(what|which|name)\b"),
]
_RULES = [(label, re.compile(rx, re.IGNORECASE)) for label, rx in RULES]


def rule_label(question: str) -> str | None:
    q = " ".join(question.split())
    for label, rx in _RULES:
        if rx.search(q):
            return label
    return None


def one_question(text: str) -> bool:
    t = text.strip()
    return t.count("?") == 1 and t.endswith("?") and "\n" not in t


def score(rows: list[tuple[str, str]]) -> dict:
    """rows: (question, label) -> agreement of the rule with the label, overall and per label."""
    per = defaultdict(Counter)
    for text, label in rows:
        per[label]["n"] += 1
        per[label]["agree"] += rule_label(text) == label
        per[label]["one_question"] += one_question(text)
    n = sum(c["n"] for c in per.values())
    return {
        "n": n,
        "agree": round(sum(c["agree"] for c in per.values()) / max(n, 1), 4),
        "one_question": round(sum(c["one_question"] for c in per.values()) / max(n, 1), 4),
        "per_label": {lb: round(c["agree"] / c["n"], 3) for lb, c in sorted(per.items())},
    }


def arm_rows(folder: Path, arm: str) -> list[tuple[str, str]]:
    """The generated rows an arm trained on (seeds left out)."""
    path = Layout(folder).rows(arm)
    if not path.exists():  # folders written before the per-arm layout (da87ac5: the three-seed TREC
        path = folder / "train.jsonl"  # evidence) kept the psi arm's rows at the top of the folder
        if arm != "psi" or not path.exists():
            return []
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [(r["input"], r["output"]) for r in recs if r.get("mode") in ("psi", "direct")]


def check_policies(folder: Path, arm: str, relabel_min_prob: float = 0.9) -> dict | None:
    """What each check policy would keep of a round arm's new rows, scored by the rule."""
    layout = Layout(folder)
    report_path, new_path = layout.check_report(arm), layout.new_rows(arm)
    if not report_path.exists() or not new_path.exists():
        return None
    text = {r["id"]: r["input"] for r in map(json.loads, new_path.read_text().splitlines()) if r}
    rows = [r for r in json.loads(report_path.read_text())["rows"] if r["id"] in text]

    def agreement(pairs: list[tuple[str, str | None, float]]) -> dict:
        w = sum(p for _, _, p in pairs)
        hit = sum(p for q, lb, p in pairs if rule_label(q) == lb)
        return {"rows": round(w, 1), "agree": round(hit / w, 4) if w else None}

    def relabelled(r: dict) -> str:
        sure = r["p_student"] is not None and r["p_student"] >= relabel_min_prob
        return r["student"] if not r["agree"] and sure and r["student"] else r["answer"]

    return {
        "n_new": len(rows),
        "none": agreement([(text[r["id"]], r["answer"], 1.0) for r in rows]),
        "agree": agreement([(text[r["id"]], r["answer"], 1.0) for r in rows if r["agree"]]),
        "relabel": agreement([(text[r["id"]], relabelled(r), 1.0) for r in rows]),
        "weight": agreement([(text[r["id"]], r["answer"], r["p_label"] or 0.0) for r in rows]),
        "student": agreement([(text[r["id"]], r["student"], 1.0) for r in rows]),
        "disagreed": agreement([(text[r["id"]], r["answer"], 1.0) for r in rows if not r["agree"]]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "evidence" / "trec")
    ap.add_argument("--out", type=Path, default=RESULTS / "row-quality" / "trec-labels.json")
    args = ap.parse_args()
    from evidence import VARIANTS  # variant -> (arms, settings, {arm: reported name})

    real = [(r["text"], r["label_name"]) for r in map(json.loads, TRAIN.read_text().splitlines())]
    result = {"rule_on_real_train_split": score(real), "arms": {}}
    pooled: dict[str, list] = defaultdict(list)
    for seed_dir in sorted(args.runs.glob("seed*")):
        for variant, (_, _, names) in VARIANTS.items():
            for arm, name in names.items():
                pooled[name] += arm_rows(seed_dir / variant, arm)
    result["arms"] = {name: score(rows) for name, rows in pooled.items() if rows}
    checks: dict[str, dict] = {}
    for seed_dir in sorted(args.runs.glob("seed*")):
        for variant, (_, _, names) in VARIANTS.items():
            for arm, name in names.items():
                if (c := check_policies(seed_dir / variant, arm)) is not None:
                    checks[f"{seed_dir.name}/{name}"] = c
    if checks:
        result["check_policies"] = checks
    result["seeds"] = sorted(p.name for p in args.runs.glob("seed*"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rows = {"real train split": result["rule_on_real_train_split"], **result["arms"]}
    for name, v in rows.items():
        print(f"{name:18s} rule agrees {v['agree']:.1%}, one question {v['one_question']:.1%}, n {v['n']}")
    for name, c in checks.items():
        pol = ", ".join(f"{k} {v['agree']:.1%} of {v['rows']}" for k, v in c.items() if isinstance(v, dict))
        print(f"check {name}: {c['n_new']} new rows; rule agrees: {pol}")


if __name__ == "__main__":
    main()
