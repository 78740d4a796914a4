"""report.md: the same tables and facts as plain Markdown (no plots, no raw HTML)."""

from __future__ import annotations

import html
from typing import Any

from psilm.arms import PSI
from psilm.ledger import savings_sentence
from psilm.report.load import sample_instances
from psilm.report.text import (
    CLASS_NOTE,
    ROUND_CLASSES_NOTE,
    ROUNDS_NOTE,
    arm_table,
    class_table,
    clip,
    coverage_table,
    header_facts,
    judge_lines,
    pct,
    round_class_table,
    round_table,
    shown_note,
    skew_lines,
    stage_table,
)


# --- cells ------------------------------------------------------------------------------------
def _md_cell(x: Any) -> str:
    """One line of Markdown text: no raw HTML (generated text is shown, never rendered), no table breaks."""
    return html.escape(str(x), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_md(r: dict) -> str:
    led = r["ledger"]
    title, sub, cards = header_facts(r)
    arm_head, arm_rows = arm_table(r)
    stage_head, stage_rows = stage_table(r)
    ts = led["teacher_share"]
    out = [
        f"# {_md_cell(title)}",
        "",
        _md_cell(sub),
        "",
        " · ".join(f"**{v}** {k}" for k, v in cards),
        "",
        savings_sentence(led["psi_vs_teacher"]),
        "",
        "## Arms",
        "",
        _md_table(arm_head, arm_rows),
        "",
    ]
    if skews := skew_lines(r):
        out += [f"WARNING: {_md_cell(line)}" for line in skews] + [""]
    class_head, class_rows = class_table(r)
    if class_rows:
        out += ["### Per label", "", _md_table(class_head, class_rows), "", CLASS_NOTE, ""]
    round_head, round_rows = round_table(r)
    if round_rows:
        out += ["## Rounds", "", _md_table(round_head, round_rows), "", ROUNDS_NOTE, ""]
        out += [f"- {_md_cell(line)}" for line in judge_lines(r)] + [""]
        class_head, class_rows = round_class_table(r)
        if class_rows:
            out += ["### Accuracy per class and round", "", _md_table(class_head, class_rows), ""]
            out += [ROUND_CLASSES_NOTE, ""]
    out += [
        "## Ledger per stage",
        "",
        _md_table(stage_head, stage_rows),
        "",
        f"Teacher share: {pct(ts[PSI]['share'])} of the psi arm's tokens, "
        f"{pct(ts['run']['share'])} of the run's.",
        "",
    ]
    if led["psi_vs_teacher"].get("note"):
        out += [f"Basis: {led['psi_vs_teacher']['note']}", ""]
    out += ["## Principles", ""]
    if r.get("principles_writer"):
        out += [f"Written by the teacher {r['principles_writer']}.", ""]
    if r.get("principles_warning"):
        out += [f"WARNING: {_md_cell(r['principles_warning'])}", ""]
    cov_head, cov_rows = coverage_table(r)
    if cov_rows:
        out += [_md_table(cov_head, cov_rows), ""]
    for rule in r.get("rules_dropped", []):
        out += [f"- task rule dropped ({_md_cell(rule['reason'])}): {_md_cell(rule['rule'])}"]
    if r.get("n_psi") and r["principles"]:
        levels = dict.fromkeys(p.get("level") for p in r["principles"])
        out += ["; ".join(f"{lv}: {shown_note(r, lv)}" for lv in levels), ""]
    for p in r["principles"]:
        out.append(f"- [{_md_cell(p.get('level'))}] {_md_cell(p.get('id'))}: {_md_cell(p.get('text'))}")
    out += ["", "## Filters", ""]
    for arm, d in r["data"].items():
        if rep := d["filter"]:
            drops = ", ".join(f"{k} {v}" for k, v in rep.get("dropped", {}).items()) or "none"
            out.append(f"- {arm}: kept {rep['n_kept']} of {rep['n_in']}; dropped: {drops}")
            if rep.get("warning"):
                out.append(f"  - WARNING: {_md_cell(rep['warning'])}")
    out += ["", "## Sample generated instances", ""]
    for arm, d in r["data"].items():
        for rec in sample_instances(d["candidates"], d["kept_ids"], n=3):
            ids = ", ".join(rec.get("principle_ids") or []) or "none"
            kept = "kept" if rec.get("id") in d["kept_ids"] else "dropped"
            out.append(
                f"- {arm} · {_md_cell(rec.get('category'))} · {kept} · principles {_md_cell(ids)}: "
                f"{_md_cell(clip(rec.get('input'), 200))} → **{_md_cell(rec.get('answer'))}**"
            )
    out += ["", f"Full report with plots and sample instances: {r['html_path']}", ""]
    return "\n".join(out)
