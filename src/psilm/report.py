"""The run report: report.html (one self-contained file, plots embedded) and report.md.

Reads a finished (or half-finished) run folder and shows, top to bottom: the arms with their
confidence intervals, accuracy and CO2 per arm, the ledger per stage (energy, CO2, tokens per
role, $), what the teacher's share was and what PSI saved, the principles by level, the filter
counts, and sample generated instances with the principles that made them. Every text is escaped;
the page loads nothing from outside (no URLs, no external CSS or JS).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import yaml

from psilm.errors import PsilmError
from psilm.io import iter_jsonl
from psilm.ledger import ROLES, build_ledger, savings_sentence
from psilm.stages.generate import principles_shown
from psilm.store import atomic_write_text, read_json

ARM_ORDER = ["zero_shot", "seed_only", "direct", "psi", "teacher", "human"]
DATA_ARMS = ["psi", "direct", "teacher"]
LEVELS = ["task", "category", "error"]
ROLE_COLORS = {"teacher": "#c0392b", "generator": "#2e86c1", "student": "#7d8b99"}
N_SAMPLES = 6


# --- reading the run folder ----------------------------------------------------------------------
def _arm_dir(run: Path, arm: str) -> Path:
    return run if arm == "psi" else run / "arms" / arm


def _read(path: Path, default: Any = None) -> Any:
    return read_json(path) if path.exists() else default


def _jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)] if path.exists() else []


def load_run(run: str | Path) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    run = Path(run)
    if not (run / "manifest.json").is_file() or not (run / "config.yaml").is_file():
        raise PsilmError(f"{run}: not a run folder (no manifest.json / config.yaml); run `psilm run` first")
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    manifest = read_json(run / "manifest.json")
    arms = [a for a in ARM_ORDER if a in (config.get("arms") or [])]
    metrics = _read(run / "metrics.json", {}) or {}
    results: dict[str, dict] = {}
    for arm in arms:  # per-arm files first: they exist before the run's metrics.json does
        res = _read(run / "arms" / arm / "metrics.json") or (metrics.get("arms") or {}).get(arm)
        if res:
            results[arm] = {k: v for k, v in res.items() if k != "predictions"}
    principles = (_read(run / "principles.json", {}) or {}).get("principles", [])
    data = {
        arm: {
            "filter": _read(_arm_dir(run, arm) / "filter_report.json"),
            "candidates": _jsonl(_arm_dir(run, arm) / "candidates.jsonl"),
            "kept_ids": {r.get("id") for r in _jsonl(_arm_dir(run, arm) / "train.jsonl")},
        }
        for arm in DATA_ARMS
        if arm in arms
    }
    return {
        "path": run,
        "config": config,
        "manifest": manifest,
        "arms": arms,
        "results": results,
        "n_test": metrics.get("n_test") or next((r.get("n") for r in results.values()), None),
        "principles": principles,
        "shown": principles_shown(principles, data["psi"]["candidates"])[0] if "psi" in data else {},
        "n_psi": len(data["psi"]["candidates"]) if "psi" in data else 0,
        "data": data,
        "ledger": build_ledger(manifest, config, results),
    }


def sample_instances(cands: list[dict], kept: set, n: int = N_SAMPLES) -> list[dict]:
    """Up to n candidates, one category after another, kept ones first."""
    by_cat: dict[str, list[dict]] = {}
    for rec in sorted(cands, key=lambda r: r.get("id") not in kept):
        by_cat.setdefault(str(rec.get("category")), []).append(rec)
    out: list[dict] = []
    while len(out) < n and any(by_cat.values()):
        for recs in by_cat.values():
            if recs and len(out) < n:
                out.append(recs.pop(0))
    return out


# --- numbers -------------------------------------------------------------------------------------
def num(x: float | None) -> str:
    """Three significant digits without losing tiny values: 1,234 / 12.3 / 0.0123 / 4.24e-06."""
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.2e}"


def wh(kwh: float | None) -> str:
    return num(None if kwh is None else kwh * 1e3)


def grams(kg: float | None) -> str:
    return num(None if kg is None else kg * 1e3)


def secs(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


def usd(x: float | None) -> str:
    if x is None:
        return ""
    return "$0" if x == 0 else f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def role_tokens(tokens: dict[str, dict[str, int]]) -> str:
    parts = []
    for role in ROLES:
        if role in tokens and (n := sum(tokens[role].values())):
            parts.append(f"{role} {n:,}")
    return ", ".join(parts) or "0"


# --- plots (matplotlib's object API: no pyplot, no global state) ---------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    return fig, fig.add_subplot()


def plot_accuracy(r: dict) -> str | None:
    arms = [a for a in r["arms"] if a in r["results"]]
    if not arms:
        return None
    fig, ax = _figure(6.4, 3.2)
    acc = [r["results"][a]["accuracy"] * 100 for a in arms]
    lo = [acc[i] - r["results"][a]["ci95"][0] * 100 for i, a in enumerate(arms)]
    hi = [r["results"][a]["ci95"][1] * 100 - acc[i] for i, a in enumerate(arms)]
    colors = ["#1e8449" if a == "psi" else "#95a5a6" for a in arms]
    ax.bar(arms, acc, color=colors, yerr=[lo, hi], capsize=5, ecolor="#333")
    for i, v in enumerate(acc):
        ax.text(i, 2, f"{v:.1f}%", ha="center", va="bottom", color="white", fontsize=9, fontweight="bold")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%), 95% interval")
    ax.set_title(f"Accuracy on {r['n_test'] or '?'} held-out test rows")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_accuracy_vs_co2(r: dict) -> str | None:
    totals = r["ledger"]["arms"]
    arms = [a for a in r["arms"] if a in r["results"] and totals.get(a, {}).get("co2_kg")]
    if not arms:
        return None
    fig, ax = _figure(6.4, 3.2)
    for a in arms:
        res, g = r["results"][a], totals[a]["co2_kg"] * 1e3
        y, (lo, hi) = res["accuracy"] * 100, res["ci95"]
        ax.errorbar(
            [g],
            [y],
            yerr=[[y - lo * 100], [hi * 100 - y]],
            fmt="o",
            capsize=4,
            color="#1e8449" if a == "psi" else "#566573",
        )
        ax.annotate(
            a + (" (est.)" if totals[a]["is_estimated"] else ""),
            (g, y),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_xlim(left=0)
    ax.set_xlabel("g CO2eq per arm (all its stages)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy against carbon, per arm")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_stages(r: dict) -> str | None:
    rows = [s for s in r["ledger"]["stages"] if s["co2_kg"] is not None]
    if not rows:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.32 * len(rows) + 1.4))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    names = [s["stage"] for s in rows][::-1]
    rows = rows[::-1]
    measured = [(s["measured"] or {}).get("co2_kg", 0.0) * 1e3 for s in rows]
    estimated = [(s["estimated"] or {}).get("co2_kg", 0.0) * 1e3 for s in rows]
    ax1.barh(names, measured, color="#5d6d7e", label="measured (CodeCarbon)")
    if any(estimated):
        ax1.barh(names, estimated, left=measured, color="#f5b041", hatch="//", label="estimated (remote)")
    ax1.set_xlabel("g CO2eq")
    ax1.set_title("CO2 per stage")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    left = [0] * len(rows)
    for role in ROLES:
        vals = [sum(s["tokens"].get(role, {}).values()) for s in rows]
        if any(vals):
            ax2.barh(names, vals, left=left, color=ROLE_COLORS[role], label=role)
            left = [a + b for a, b in zip(left, vals, strict=True)]
    ax2.set_xlabel("tokens (prompt + completion + trained)")
    ax2.set_title("Tokens per stage, by role")
    if any(left):
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


# --- HTML ----------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1120px;
margin:24px auto;padding:0 20px;color:#1c2833;line-height:1.45}
h1{margin-bottom:2px}h2{border-bottom:2px solid #d5d8dc;padding-bottom:4px;margin-top:34px}
.sub{color:#566573;margin-top:0}table{border-collapse:collapse;margin:10px 0;font-size:14px}
th,td{border:1px solid #d5d8dc;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f4f6f7}td.l,th.l{text-align:left}tr.psi td{background:#eafaf1;font-weight:600}
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


ESTIMATED = " (estimated)"  # plain-text mark; the HTML shows it as a badge


def arm_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Arms: accuracy and interval beside energy, CO2, tokens and $ (plain text cells)."""
    head = ["arm", "accuracy", "95% interval", "n test", "trained on", "energy (Wh)", "g CO2eq", "tokens"]
    rows = []
    for arm in r["arms"]:
        res, tot = r["results"].get(arm), r["ledger"]["arms"].get(arm, {})
        n_train = r["manifest"].get("stages", {}).get(f"train/{arm}", {}).get("n_train")
        has = bool(tot.get("stages"))
        rows.append(
            [
                arm,
                pct(res["accuracy"]) if res else "n/a",
                f"{res['ci95'][0]:.1%} - {res['ci95'][1]:.1%}" if res else "not evaluated",
                str(res["n"]) if res else "",
                "" if n_train is None else str(n_train),
                wh(tot["energy_kwh"]) if has else "",
                grams(tot["co2_kg"]) + (ESTIMATED if tot.get("is_estimated") else "") if has else "",
                f"{tot['tokens_total']:,}" if has else "",
            ]
            + ([usd(tot.get("cost_usd"))] if r["ledger"]["priced"] else [])
        )
    return head + (["$"] if r["ledger"]["priced"] else []), rows


def stage_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "status", "time", "energy (Wh)", "g CO2eq", "tokens by role", "model calls"]
    rows = [
        [
            s["stage"],
            s["status"],
            secs(s["duration_s"]),
            wh(s["energy_kwh"]),
            grams(s["co2_kg"]) + (ESTIMATED if s["is_estimated"] else ""),
            role_tokens(s["tokens"]),
            str(s["model_calls"]),
        ]
        + ([usd(s["cost_usd"])] if r["ledger"]["priced"] else [])
        for s in r["ledger"]["stages"]
    ]
    return head + (["$"] if r["ledger"]["priced"] else []), rows


def _h(text: Any) -> str:
    """Escaped text, with the plain 'estimated' mark shown as a badge."""
    return esc(text).replace(esc(ESTIMATED), " " + EST)


def _html_cells(rows: list[list[str]]) -> list[list[str]]:
    return [[_h(c) for c in row] for row in rows]


def shown_note(r: dict, level: str) -> str:
    """'shown in 12 of 96 psi prompts', or '' when no psi candidates were written yet."""
    if not r.get("n_psi"):
        return ""
    return f"shown in {r['shown'].get(level, 0)} of {r['n_psi']} psi prompts"


def _principles_html(r: dict) -> str:
    ps = r["principles"]
    if not ps:
        return "<p>No principles in this run.</p>"
    parts = []
    for level in LEVELS + sorted({p.get("level") for p in ps} - set(LEVELS)):
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
    return "".join(parts)


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
                f"<q>{esc(_clip(rec.get('input')))}</q><div>answer: <b>{esc(rec.get('answer'))}</b></div>"
                + (
                    f"<div class=meta>principles used:</div><ul>{ps}</ul>"
                    if ps
                    else "<div class=meta>no principles (written without them)</div>"
                )
                + "</div>"
            )
    return "".join(parts) or "<p>No generated instances in this run.</p>"


def _clip(text: Any, n: int = 400) -> str:
    s = str(text or "")
    return s if len(s) <= n else s[: n - 1] + "…"


def _header_facts(r: dict) -> tuple[str, str, list[tuple[str, str]]]:
    cfg, led = r["config"], r["ledger"]
    task = cfg.get("task") or {}
    title = f"psilm report: {cfg.get('name', r['path'].name)}"
    models = "; ".join(
        f"{role}: {(cfg.get('models') or {}).get(role, {}).get('model')} "
        f"({(cfg.get('models') or {}).get(role, {}).get('backend')})"
        for role in ROLES
    )
    sub = f"task {task.get('name')} ({task.get('kind')}): {task.get('description', '')} · {models}"
    psi = r["results"].get("psi")
    share = led["teacher_share"]["psi"]["share"]
    cards = [
        ("psi accuracy", pct(psi["accuracy"]) if psi else "n/a"),
        ("run CO2eq" + (" (est.)" if led["run"]["is_estimated"] else ""), f"{grams(led['run']['co2_kg'])} g"),
        ("run energy", f"{wh(led['run']['energy_kwh'])} Wh"),
        ("teacher share of psi tokens", pct(share)),
    ]
    if led["run"]["cost_usd"] is not None:
        cards.append(("run cost", usd(led["run"]["cost_usd"])))
    return title, sub, cards


def render_html(r: dict) -> str:
    led = r["ledger"]
    title, sub, cards = _header_facts(r)
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
        _table(arm_head, _html_cells(arm_rows), classes=["psi" if a == "psi" else "" for a in r["arms"]]),
        "<p class=meta>Each arm's energy, CO2 and tokens sum its own stages; the psi and teacher arms "
        "also include the shared principles stage. 95% intervals are Wilson score intervals.</p>",
        '<div class="plots">'
        + _img(plot_accuracy(r), "accuracy per arm")
        + _img(plot_accuracy_vs_co2(r), "accuracy against CO2 per arm")
        + "</div>",
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
        f"<p>Teacher tokens: {ts['psi']['teacher_tokens']:,} of {ts['psi']['all_tokens']:,} in the psi arm "
        f"({esc(pct(ts['psi']['share']))}); {ts['run']['teacher_tokens']:,} of {ts['run']['all_tokens']:,} "
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


# --- Markdown ------------------------------------------------------------------------------------
def _md_cell(x: Any) -> str:
    """One line of Markdown text: no raw HTML (generated text is shown, never rendered), no table breaks."""
    return html.escape(str(x), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_md(r: dict) -> str:
    led = r["ledger"]
    title, sub, cards = _header_facts(r)
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
        "## Ledger per stage",
        "",
        _md_table(stage_head, stage_rows),
        "",
        f"Teacher share: {pct(ts['psi']['share'])} of the psi arm's tokens, "
        f"{pct(ts['run']['share'])} of the run's.",
        "",
    ]
    if led["psi_vs_teacher"].get("note"):
        out += [f"Basis: {led['psi_vs_teacher']['note']}", ""]
    out += ["## Principles", ""]
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
                f"{_md_cell(_clip(rec.get('input'), 200))} → **{_md_cell(rec.get('answer'))}**"
            )
    out += ["", f"Full report with plots and sample instances: {r['path'] / 'report.html'}", ""]
    return "\n".join(out)


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write DIR/report.html and DIR/report.md; returns both paths."""
    r = load_run(run)
    html_path, md_path = Path(run) / "report.html", Path(run) / "report.md"
    atomic_write_text(html_path, render_html(r))
    atomic_write_text(md_path, render_md(r))
    return html_path, md_path
