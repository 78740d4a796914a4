"""The cards `psilm export` writes: README.md for a dataset folder and for a model folder.

Markdown with Hugging Face front matter, built from plain data the export gathered (`CardFacts`):
nothing here reads the run folder. Every text from the run (principles, descriptions) goes into
table cells escaped, so a `|` or a newline in it cannot break a table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from psilm import __version__
from psilm.arms import ARMS
from psilm.numbers import INTERVAL, percent, span

PAPER = "PSI (Zhu et al., arXiv 2507.05991)"
FIELD_HELP = {
    "id": "the instance's id in the run",
    "mode": "psi: written from principles; direct: from the seed examples alone",
    "input": "the text the model reads",
    "raw_input": "the input as generated, before cleaning",
    "output": "the training target",
    "answer": "the canonical answer used for scoring and voting",
    "category": "the label or sub-type the instance was written for",
    "principle_ids": "the principles shown to the generator (see below)",
    "demo_ids": "the seed examples shown to the generator (their line in seeds.jsonl, from 0)",
    "votes": "answers sampled to check the label (consistency filter)",
    "parse_error": "why the generated text could not be parsed, if it could not",
    "generator": "the model and sampling that wrote the instance",
}


@dataclass
class CardFacts:
    """What both cards tell, gathered by export from the run folder."""

    run_name: str
    arm: str
    task: dict[str, Any]  # the task config, as in config.yaml
    config: dict[str, Any]  # the resolved run config
    principles: list[dict] = field(default_factory=list)
    filter_report: dict[str, Any] | None = None
    metrics: dict[str, dict] = field(default_factory=dict)  # arm -> metrics.json of that arm
    n_test: int | None = None
    train_count: int | None = None  # rows per data arm the student was trained on
    train_stage: dict[str, Any] = field(default_factory=dict)  # manifest's train/<arm>
    ledger: dict[str, Any] = field(default_factory=dict)  # ledger.build_ledger(...)
    instruction: str = ""  # the system message the student reads
    input_name: str = "input"


# --- helpers -------------------------------------------------------------------------------------
def cell(x: Any) -> str:
    """One Markdown table cell: no newline, no bare pipe."""
    return " ".join(str("" if x is None else x).split()).replace("|", "\\|")


def table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _size_category(n: int) -> str:
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"


def _task_line(f: CardFacts) -> str:
    t = f.task
    labels = f" Labels: {', '.join(t['labels'])}." if t.get("labels") else ""
    return f"**{t['name']}** ({t['kind']}): {t['description']}{labels}"


def _generator_section(f: CardFacts, records: list[dict]) -> str:
    cfg, gen = f.config, f.config.get("generate") or {}
    spec = ARMS[f.arm]
    model = (cfg.get("models") or {}).get(spec.writer) or {}
    mode = spec.mode
    keys = ["n", "temperature", "top_p", "max_tokens", "demos_per_instance", "principles_per_instance"]
    if f.task.get("kind") == "numeric":
        keys += ["solve_samples", "solve_temperature"]
    rows = [["model", f"{model.get('model')} ({model.get('backend')} backend)"], ["mode", mode]]
    rows += [[f"generate.{k}", gen.get(k)] for k in keys if k in gen]
    rows.append(["seed", cfg.get("seed")])
    seen = Counter(json.dumps(r["generator"], sort_keys=True) for r in records if r.get("generator"))
    note = ""
    if len(seen) == 1:
        note = f"\n\nEvery row records what wrote it; here all rows say: `{cell(next(iter(seen)))}`.\n"
    return "## Generator\n\n" + table(["setting", "value"], rows) + note


def _principles_section(f: CardFacts, records: list[dict]) -> str:
    if not ARMS[f.arm].uses_principles:
        return f"## Principles\n\nNone: the {f.arm} arm writes instances from the seed examples alone.\n"
    if not f.principles:
        return "## Principles\n\nprinciples.json lists none.\n"
    used = Counter(pid for r in records for pid in r.get("principle_ids") or [])
    levels = Counter(p.get("level") for p in f.principles)
    sources = sorted({str(p.get("source")) for p in f.principles})
    head = (
        f"## Principles\n\n{len(f.principles)} principles ("
        + ", ".join(f"{n} {lvl}-level" for lvl, n in levels.items())
        + f"), written by {', '.join(sources)}. `rows` counts the rows whose generator was shown one.\n\n"
    )
    rows = [
        [p.get("id"), p.get("level"), p.get("category") or "", used.get(p.get("id"), 0), p.get("text")]
        for p in f.principles
    ]
    return head + table(["id", "level", "category", "rows", "principle"], rows)


# --- dataset card --------------------------------------------------------------------------------
def dataset_card(f: CardFacts, records: list[dict], columns: dict[str, str]) -> str:
    """README.md of an exported dataset folder; `columns` maps each column to its type."""
    n = len(records)
    kind = f.task.get("kind")
    meta = {
        "pretty_name": f"{f.run_name}: {f.arm} training data for {f.task['name']}",
        "size_categories": [_size_category(n)],
        "task_categories": ["text-classification" if kind == "classification" else "text-generation"],
        "tags": ["psilm", "synthetic", f.task["name"]],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train.parquet"}]}
        ],
    }
    parts = [
        front_matter(meta),
        f"# {meta['pretty_name']}\n",
        f"{n} training instances written by a small generator model from task principles, as in "
        f"{PAPER}, then filtered; exported by psilm {__version__} from run `{f.run_name}`, arm "
        f"`{f.arm}`.\n\nTask: {_task_line(f)}\n",
    ]
    if f.train_count is not None:
        parts.append(
            f"The run trained its student on the first {min(f.train_count, n)} rows (the count every "
            "data arm of the run shared, so arms compare fairly)"
            + (" plus the seed examples." if (f.config.get("train") or {}).get("include_seeds") else ".")
            + "\n"
        )
    parts.append(
        "## Files\n\n"
        + table(
            ["path", "load with"],
            [
                ["data/train.parquet", 'datasets.load_dataset("parquet", data_files=...) or pandas'],
                ["disk/", 'datasets.load_from_disk("disk")["train"]'],
            ],
        )
    )
    parts.append(
        "## Fields\n\n"
        + table(["field", "type", "meaning"], [[c, t, FIELD_HELP.get(c, "")] for c, t in columns.items()])
    )
    by_label = Counter(
        str(r.get("category") if r.get("category") is not None else r.get("answer")) for r in records
    )
    what = "label" if kind == "classification" else "category"
    parts.append(
        f"## Rows per {what}\n\n"
        + table([what, "rows", "share"], [[k, v, f"{percent(v / n)}"] for k, v in sorted(by_label.items())])
    )
    parts.append(_filter_section(f.filter_report))
    parts.append(_principles_section(f, records))
    parts.append(_generator_section(f, records))
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _filter_section(report: dict | None) -> str:
    if not report:
        return "## Filters\n\nNo filter report was found for this arm.\n"
    dropped = report.get("dropped") or {}
    head = (
        f"## Filters\n\n{report.get('n_kept')} of {report.get('n_in')} generated candidates were kept. "
        "Instances dropped, per reason:\n\n"
    )
    rows = [[reason, count] for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1])]
    body = table(["reason", "dropped"], rows) if rows else "None were dropped."
    cleaned = report.get("cleaned") or {}
    if cleaned:
        body += "\n\nInputs cleaned (kept, edited), per reason:\n\n" + table(
            ["reason", "cleaned"], sorted(cleaned.items())
        )
    return head + body


# --- model card ----------------------------------------------------------------------------------


def model_card(f: CardFacts, base_model: str, files_note: str = "") -> str:
    """README.md of an exported model folder (HF) or GGUF folder."""
    meta = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["psilm", f.task["name"], f.arm],
    }
    me = f.metrics.get(f.arm) or {}
    headline = (
        f" It scores {percent(me['accuracy'])} ({INTERVAL} {span(*me['ci95'])}) on "
        f"{me['n']} held-out test rows."
        if me
        else ""
    )
    parts = [
        front_matter(meta),
        f"# {f.run_name}: {f.task['name']} student ({f.arm} arm)\n",
        f"A small model fine-tuned by psilm {__version__} for one task, from a handful of examples and "
        f"task principles, as in {PAPER}; the `{f.arm}` arm of run `{f.run_name}`: {_about(f.arm)}."
        f"{headline}\n",
        "## Task\n\n" + _task_line(f) + "\n",
        "## How to prompt it\n\nIt was trained and evaluated on this chat: the system message\n\n"
        + "\n".join("> " + line for line in f.instruction.splitlines())
        + f"\n\nand a user message `{f.input_name.capitalize()}: <the input>`. "
        + (
            "psilm reads its answer as the label whose tokens, as the assistant's whole reply, "
            "are most likely."
            if f.task.get("kind") in ("classification", "multiple_choice")
            else "psilm reads its answer from the greedy reply."
        )
        + "\n",
        f"## Base model\n\n{base_model}\n",
        _training_section(f),
        _results_section(f),
        _provenance_section(f),
        _footprint_section(f),
    ]
    if files_note:
        parts.append(files_note)
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _training_section(f: CardFacts) -> str:
    t, st = f.config.get("train") or {}, f.train_stage
    rows = [
        ["method", t.get("method")],
        ["rows trained on", st.get("n_train")],
        ["epochs", st.get("epochs", t.get("epochs"))],
        ["steps", st.get("steps")],
        ["learning rate", t.get("learning_rate")],
        ["final training loss", st.get("train_loss")],
    ]
    if t.get("method") == "lora":
        rows += [["LoRA r / alpha", f"{t.get('lora_r')} / {t.get('lora_alpha')}"], ["merged", "yes"]]
    return "## Training\n\n" + table(["setting", "value"], [r for r in rows if r[1] is not None])


def _results_section(f: CardFacts) -> str:
    if not f.metrics:
        return "## Results\n\nThe run has no metrics (data.test was not set).\n"
    rows = []
    for arm, m in f.metrics.items():
        lo, hi = m["ci95"]
        name = f"**{arm}** (this model)" if arm == f.arm else arm
        rows.append(
            [
                name,
                f"{percent(m['accuracy'])}",
                f"{percent(lo)} - {percent(hi)}",
                m["n"],
                _about(arm),
            ]
        )
    test = (f.config.get("data") or {}).get("test")
    return (
        f"## Results\n\nAccuracy on {f.n_test or '?'} held-out test rows"
        + (f" from `{str(test).rsplit('/', 1)[-1]}`" if test else "")
        + f", each with its Wilson {INTERVAL}, for every arm of the run (same student, same test rows):\n\n"
        + table(["arm", "accuracy", INTERVAL, "n", "trained on"], rows)
    )


def _about(arm: str) -> str:
    return ARMS[arm].about if arm in ARMS else ""


def _provenance_section(f: CardFacts) -> str:
    models = f.config.get("models") or {}
    spec = ARMS[f.arm]
    gen = models.get(spec.writer or "generator") or {}
    lines = ["## Data provenance", ""]
    if spec.generated:
        if not spec.uses_principles:
            lines.append("- principles: none (direct generation from the seed examples)")
        else:
            levels = Counter(p.get("level") for p in f.principles)
            sources = sorted({str(p.get("source")) for p in f.principles})
            lines.append(
                f"- principles: {len(f.principles)} ("
                + ", ".join(f"{n} {lvl}" for lvl, n in levels.items())
                + f"), written by {', '.join(sources) or 'unknown'}"
            )
        g = f.config.get("generate") or {}
        lines.append(
            f"- generator: {gen.get('model')} ({gen.get('backend')}), temperature {g.get('temperature')}, "
            f"top_p {g.get('top_p')}, {g.get('n')} instances written"
        )
        if f.filter_report:
            lines.append(f"- filter: kept {f.filter_report.get('n_kept')} of {f.filter_report.get('n_in')}")
    elif spec.data == "seeds":
        lines.append("- the seed examples only")
    elif spec.data == "pool":
        lines.append(f"- real labelled rows from `{(f.config.get('data') or {}).get('train')}`")
    teacher = models.get("teacher") or {}
    lines.append(f"- teacher (principles): {teacher.get('model')} ({teacher.get('backend')})")
    lines.append(f"- seed: {f.config.get('seed')}")
    return "\n".join(lines)


def _footprint_section(f: CardFacts) -> str:
    run = (f.ledger or {}).get("run")
    if not run:
        return "## Energy and CO2\n\nmanifest.json records no stages.\n"
    if not (f.config.get("emissions") or {}).get("enabled", True):
        return (
            "## Energy and CO2\n\nNot measured: the run had emissions.enabled=false. It used "
            f"{run.get('tokens_total', 0):,} tokens in all (prompt, completion and trained, every model)."
        )
    arm = (f.ledger.get("arms") or {}).get(f.arm)
    est = " (partly estimated)" if run.get("is_estimated") else ""
    rows = [["whole run", *_footprint(run)]]
    if arm:
        rows.append([f"{f.arm} arm (its stages)", *_footprint(arm)])
    note = (
        "\n\nMeasured with CodeCarbon on the machine that ran each stage, plus an estimate for tokens "
        "served by remote endpoints; from the run's manifest.json."
    )
    if run.get("incomplete"):
        note += " Some stages recorded no energy (emissions off, or not finished): the sums leave them out."
    return (
        f"## Energy and CO2{est}\n\n"
        + table(["scope", "energy (Wh)", "CO2eq (g)", "tokens", "cost ($)"], rows)
        + note
    )


def _footprint(t: dict) -> list[str]:
    cost = t.get("cost_usd")
    return [
        f"{(t.get('energy_kwh') or 0) * 1000:.3g}",
        f"{(t.get('co2_kg') or 0) * 1000:.3g}",
        f"{t.get('tokens_total', 0):,}",
        f"{cost:.4f}" if cost is not None else "-",
    ]
