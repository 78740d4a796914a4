"""report.html: one self-contained file, plots embedded.

Every text is escaped; the page loads nothing from outside (no URLs, no external CSS or JS).
"""

from __future__ import annotations

import html
from typing import Any

from psilm.arms import PSI
from psilm.ledger import savings_sentence
from psilm.numbers import INTERVAL
from psilm.report.load import sample_instances
from psilm.report.plots import (
    plot_accuracy,
    plot_accuracy_vs_co2,
    plot_round_classes,
    plot_rounds,
    plot_stages,
)
from psilm.report.text import (
    CLASS_NOTE,
    ESTIMATED,
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
from psilm.stages.principles import LEVELS

# --- page ----------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1120px;
margin:24px auto;padding:0 20px;color:#1c2833;line-height:1.45}
h1{margin-bottom:2px}h2{border-bottom:2px solid #d5d8dc;padding-bottom:4px;margin-top:34px}
.sub{color:#566573;margin-top:0}table{border-collapse:collapse;margin:10px 0;font-size:14px}
th,td{border:1px solid #d5d8dc;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f4f6f7}td.l,th.l{text-align:left}tr.focus td{background:#eafaf1;font-weight:600}
.est{background:#fdebd0;color:#935116;border-radius:8px;padding:0 6px;font-size:12px;font-weight:600}
.cards{display:flex;gap:14px;flex-wrap:wrap}.card{border:1px solid #d5d8dc;border-radius:8px;
padding:10px 16px;min-width:180px}.card b{display:block;font-size:22px}
.card span{color:#566573;font-size:13px}
.warn{background:#fdedec;border-left:4px solid #c0392b;padding:6px 10px}
img{max-width:100%}.plots{display:flex;gap:1%}.plots img{width:49.5%;height:auto}
.inst{border:1px solid #d5d8dc;border-radius:6px;padding:8px 12px;margin:8px 0}
.inst q{display:block;font-style:italic;margin:4px 0}.meta{color:#566573;font-size:13px}
li{margin:3px 0}.inst ul{margin:2px 0}code{background:#f4f6f7;padding:0 3px}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


EST = '<span class="est" title="estimated from tokens, not measured">estimated</span>'


def _table(head: list[str], rows: list[list[str]], left: int = 1, classes: list[str] | None = None) -> str:
    """Cells are HTML already escaped by the caller; the first `left` columns align left."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(head))
    body = []
    for j, row in enumerate(rows):
        cls = f' class="{classes[j]}"' if classes and classes[j] else ""
        tds = "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def _h(text: Any) -> str:
    """Escaped text, with the plain 'estimated' mark shown as a badge."""
    return esc(text).replace(esc(ESTIMATED), " " + EST)


def _html_cells(rows: list[list[str]]) -> list[list[str]]:
    return [[_h(c) for c in row] for row in rows]


def _principles_html(r: dict) -> str:
    ps = r["principles"]
    if not ps:
        return "<p>No principles in this run.</p>"
    parts = []
    for level in [*LEVELS, *sorted({p.get("level") for p in ps} - set(LEVELS))]:
        mine = [p for p in ps if p.get("level") == level]
        if not mine:
            continue
        items = "".join(
            f"<li><code>{esc(p.get('id'))}</code> {esc(p.get('text'))} <span class=meta>"
            f"{esc(('category ' + str(p['category']) + '; ') if p.get('category') else '')}"
            f"{esc(p.get('source', ''))}</span></li>"
            for p in mine
        )
        note = shown_note(r, level)
        note = f" <span class=meta>{esc(note)}</span>" if note else ""
        parts.append(f"<h3>{esc(level)} level ({len(mine)}){note}</h3><ul>{items}</ul>")
    cov_head, cov_rows = coverage_table(r)
    if cov_rows:
        parts.insert(0, _table(cov_head, cov_rows))
    for rule in r.get("rules_dropped", []):
        parts.append(f"<p class=meta>task rule dropped ({esc(rule['reason'])}): {esc(rule['rule'])}</p>")
    if r.get("principles_warning"):
        parts.insert(0, f'<p class="warn">{esc(r["principles_warning"])}</p>')
    return "".join(parts)


def _classes_html(r: dict) -> str:
    """The arms' per-label table, after a warning for an arm that answers one label for most rows."""
    head, rows = class_table(r)
    warns = "".join(f'<p class="warn">{esc(line)}</p>' for line in skew_lines(r))
    if not rows:
        return warns
    table = _table([esc(h) for h in head], _html_cells(rows))
    return warns + f"<h3>Per label</h3>{table}<p class=meta>{esc(CLASS_NOTE)}</p>"


def _filters_html(r: dict) -> str:
    parts = []
    for arm, d in r["data"].items():
        rep = d["filter"]
        if not rep:
            continue
        drops = ", ".join(f"{esc(k)} {v}" for k, v in rep.get("dropped", {}).items()) or "none"
        cleaned = ", ".join(f"{esc(k)} {v}" for k, v in rep.get("cleaned", {}).items() if k != "any")
        parts.append(
            f"<p><b>{esc(arm)}</b>: kept {rep['n_kept']} of {rep['n_in']} "
            f"({pct(1 - rep.get('drop_share', 0))}); dropped: {drops}"
            + (f"<br><span class=meta>inputs repaired by the cleaner: {cleaned}</span>" if cleaned else "")
            + "</p>"
        )
        if rep.get("warning"):
            parts.append(f'<p class="warn">{esc(rep["warning"])}</p>')
    return "".join(parts) or "<p>No filter reports yet.</p>"


def _samples_html(r: dict) -> str:
    by_id = {p.get("id"): p for p in r["principles"]}
    parts = []
    for arm, d in r["data"].items():
        picks = sample_instances(d["candidates"], d["kept_ids"])
        if not picks:
            continue
        parts.append(f"<h3>{esc(arm)} arm ({len(d['candidates'])} candidates)</h3>")
        for rec in picks:
            ps = "".join(
                f"<li><code>{esc(i)}</code> {esc(by_id.get(i, {}).get('text', '(not found)'))}</li>"
                for i in rec.get("principle_ids") or []
            )
            kept = "kept" if rec.get("id") in d["kept_ids"] else "dropped by the filters"
            by = (rec.get("generator") or {}).get("model")
            parts.append(
                f'<div class="inst"><div class="meta">{esc(rec.get("id"))} · category '
                f"{esc(rec.get('category'))} · {kept} · by {esc(by)}</div>"
                f"<q>{esc(clip(rec.get('input')))}</q><div>answer: <b>{esc(rec.get('answer'))}</b></div>"
                + (
                    f"<div class=meta>principles used:</div><ul>{ps}</ul>"
                    if ps
                    else "<div class=meta>no principles (written without them)</div>"
                )
                + "</div>"
            )
    return "".join(parts) or "<p>No generated instances in this run.</p>"


def _rounds_html(r: dict) -> str:
    head, rows = round_table(r)
    if not rows:
        return ""
    class_head, class_rows = round_class_table(r)
    judges = "".join(f"<li>{esc(line)}</li>" for line in judge_lines(r))
    return (
        "<h2>Rounds</h2>"
        + _img(plot_rounds(r), "accuracy and CO2 per round")
        + _table([esc(h) for h in head], _html_cells(rows))
        + f"<p class=meta>{esc(ROUNDS_NOTE)}</p>"
        + (f"<ul class=meta>{judges}</ul>" if judges else "")
        + (
            "<h3>Accuracy per class and round</h3>"
            + _img(plot_round_classes(r), "accuracy per class and round")
            + _table([esc(h) for h in class_head], _html_cells(class_rows))
            + f"<p class=meta>{esc(ROUND_CLASSES_NOTE)}</p>"
            if class_rows
            else ""
        )
    )


def render_html(r: dict) -> str:
    led = r["ledger"]
    title, sub, cards = header_facts(r)
    arm_head, arm_rows = arm_table(r)
    stage_head, stage_rows = stage_table(r)
    ts, cmp = led["teacher_share"], led["psi_vs_teacher"]
    notes = sorted({s["energy_note"] for s in led["stages"] if s["energy_note"]})
    body = [
        f"<h1>{esc(title)}</h1><p class=sub>{esc(sub)}</p>",
        '<div class="cards">'
        + "".join(f"<div class=card><b>{esc(v)}</b><span>{esc(k)}</span></div>" for k, v in cards)
        + "</div>",
        f"<p><b>{_h(savings_sentence(cmp))}</b></p>",
        "<h2>Arms</h2>",
        _table(arm_head, _html_cells(arm_rows), classes=["focus" if a == PSI else "" for a in r["arms"]]),
        "<p class=meta>Each arm's energy, CO2 and tokens sum its own stages; the psi and teacher arms "
        f"also include the shared principles stage. Each {INTERVAL} is a Wilson score interval.</p>",
        _classes_html(r),
        '<div class="plots">'
        + _img(plot_accuracy(r), "accuracy per arm")
        + _img(plot_accuracy_vs_co2(r), "accuracy against CO2 per arm")
        + "</div>",
        _rounds_html(r),
        "<h2>Ledger per stage</h2>",
        _img(plot_stages(r), "CO2 and tokens per stage"),
        _table(stage_head, _html_cells(stage_rows), left=2),
        "<p class=meta>Trained tokens count each training token once per epoch (role student). "
        + esc("; ".join(notes))
        + "."
        + (
            f" Remote roles ({esc(', '.join(led['remote_roles']))}): energy estimated at "
            f"{esc(led['remote_joules_per_token'])} J/token {EST}."
            if led["remote_roles"]
            else ""
        )
        + "</p>",
        "<h2>Teacher share and savings</h2>",
        f"<p>Teacher tokens: {ts[PSI]['teacher_tokens']:,} of {ts[PSI]['all_tokens']:,} in the psi arm "
        f"({esc(pct(ts[PSI]['share']))}); {ts['run']['teacher_tokens']:,} of {ts['run']['all_tokens']:,} "
        f"in the whole run ({esc(pct(ts['run']['share']))}).</p>",
        f"<p>{_h(savings_sentence(cmp))}</p>"
        + (f"<p class=meta>{esc(cmp['note'])}</p>" if cmp.get("note") else ""),
        "<h2>Principles</h2>",
        _principles_html(r),
        "<h2>Filters</h2>",
        _filters_html(r),
        "<h2>Sample generated instances</h2>",
        _samples_html(r),
        f"<p class=meta>Run folder {esc(r['path'])} · psilm {esc(r['manifest'].get('psilm_version', '?'))} "
        f"· created {esc(r['manifest'].get('created', '?'))}</p>",
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
