"""Plain-text cells both renderers share: numbers, the arms and stage tables, the header facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psilm.arms import PSI
from psilm.ledger import ROLES, round_curve
from psilm.numbers import INTERVAL, percent
from psilm.stages.evaluate import skew_note

ESTIMATED = " (estimated)"  # plain-text mark; the HTML shows it as a badge


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
    return "n/a" if x is None else f"{percent(x)}"


def role_tokens(tokens: dict[str, dict[str, int]]) -> str:
    parts = []
    for role in [*ROLES, *sorted(set(tokens) - set(ROLES))]:  # and the checker of generate.label_check
        if role in tokens and (n := sum(tokens[role].values())):
            parts.append(f"{role} {n:,}")
    return ", ".join(parts) or "0"


def clip(text: Any, n: int = 400) -> str:
    s = str(text or "")
    return s if len(s) <= n else s[: n - 1] + "…"


# --- what one prediction costs --------------------------------------------------------------------
def prediction_cost(r: dict, arm: str) -> tuple[float, float | None] | None:
    """(milliseconds, Wh per 1,000 predictions) of an arm's answering on this machine, from its
    evaluate step: the answering alone, not the model's loading; None where not measured."""
    st = r["manifest"].get("stages", {}).get(f"evaluate/{arm}", {})
    n, took, total = st.get("n"), st.get("predict_s"), st.get("duration_s")
    if not n or not took:
        return None
    wh_1000 = None
    if st.get("energy_kwh") and total:
        wh_1000 = 1000 * st["energy_kwh"] * min(1.0, took / total) / n * 1000
    return 1000 * took / n, wh_1000


def cost_line(r: dict) -> str:
    """'psi student X% at Y ms a prediction; the teacher answering X% at Y ms' (what exists of it)."""
    parts = []
    for arm, who in ((PSI, f"{PSI} student"), ("teacher_answers", "the teacher answering")):
        res, cost = r["results"].get(arm), prediction_cost(r, arm)
        if res:
            parts.append(
                f"{who} {pct(res['accuracy'])}" + (f" at {cost[0]:.0f} ms a prediction" if cost else "")
            )
    return "; ".join(parts)


# --- tables --------------------------------------------------------------------------------------
def arm_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Arms: accuracy and interval beside energy, CO2, tokens, a prediction's cost and $ (plain text)."""
    head = ["arm", "accuracy", INTERVAL, "n test", "trained on", "energy (Wh)", "g CO2eq", "tokens",
            "ms / prediction", "Wh / 1,000 predictions"]  # fmt: skip
    rows = []
    for arm in r["arms"]:
        res, tot = r["results"].get(arm), r["ledger"]["arms"].get(arm, {})
        n_train = r["manifest"].get("stages", {}).get(f"train/{arm}", {}).get("n_train")
        has = bool(tot.get("stages"))
        cost = prediction_cost(r, arm)
        rows.append(
            [
                arm,
                pct(res["accuracy"]) if res else "n/a",
                f"{percent(res['ci95'][0])} - {percent(res['ci95'][1])}" if res else "not evaluated",
                str(res["n"]) if res else "",
                "" if n_train is None else str(n_train),
                wh(tot["energy_kwh"]) if has else "",
                grams(tot["co2_kg"]) + (ESTIMATED if tot.get("is_estimated") else "") if has else "",
                f"{tot['tokens_total']:,}" if has else "",
                f"{cost[0]:.1f}" if cost else "",
                num(cost[1]) if cost and cost[1] is not None else "",
            ]
            + ([usd(tot.get("cost_usd"))] if r["ledger"]["priced"] else [])
        )
    return head + (["$"] if r["ledger"]["priced"] else []), rows


def class_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Per label: its test rows, and per arm the accuracy on them and how many rows the arm gave
    that label; no rows where no arm has per-class results."""
    per = {a: _classes(r, a) for a in r["arms"]}
    arms = [a for a in r["arms"] if per[a]]
    if not arms:
        return [], []
    labels = list(dict.fromkeys(label for a in arms for label in per[a]))
    rows = []
    for label in labels:
        n = next((per[a][label]["n"] for a in arms if label in per[a]), 0)
        cells = []
        for a in arms:
            c = per[a].get(label) or {}
            acc = "n/a" if c.get("accuracy") is None else pct(c["accuracy"])
            cells.append(acc + (f" ({c['predicted']})" if "predicted" in c else ""))
        rows.append([label, str(n), *cells])
    return ["label", "test rows", *arms], rows


def _classes(r: dict, arm: str) -> dict[str, dict]:
    """An arm's per-label results ({} where it has none, or an older run wrote another shape)."""
    per = (r["results"].get(arm) or {}).get("per_class") or {}
    return {label: c for label, c in per.items() if isinstance(c, dict)}


CLASS_NOTE = "Accuracy on each label's test rows; in brackets, how many test rows the arm gave that label."


def skew_lines(r: dict) -> list[str]:
    """Each arm that answers one label for most test rows, named (evaluate's skew_note)."""
    return [line for arm in r["arms"] if (line := skew_note(arm, _classes(r, arm)))]


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


def coverage_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Per category: category principles kept, and what was dropped and why (the principles stage)."""
    head = ["category", "kept", "dropped, by reason"]
    rows = []
    for name, c in r.get("principles_coverage", {}).items():
        why = ", ".join(
            f"{n} {k.replace('example_', '').replace('_', ' ')}" for k, n in (c.get("dropped") or {}).items()
        )
        rows.append([name, str(c.get("kept", 0)) + (" (short)" if c.get("short") else ""), why or "-"])
    return head, rows


def shown_note(r: dict, level: str) -> str:
    """'shown in 12 of 96 psi prompts', or '' when no psi candidates were written yet."""
    if not r.get("n_psi"):
        return ""
    return f"shown in {r['shown'].get(level, 0)} of {r['n_psi']} {PSI} prompts"


def header_facts(r: dict) -> tuple[str, str, list[tuple[str, str]]]:
    """The title, the line under it, and the cards: (value, what it is)."""
    cfg, led = r["config"], r["ledger"]
    task = cfg.get("task") or {}
    title = f"psilm report: {cfg.get('name', r['path'].name)}"
    models = "; ".join(
        f"{role}: {(cfg.get('models') or {}).get(role, {}).get('model')} "
        f"({(cfg.get('models') or {}).get(role, {}).get('backend')})"
        for role in [*ROLES, *(["checker"] if (cfg.get("models") or {}).get("checker") else [])]
    )
    writer = r.get("principles_writer")
    file = (cfg.get("principles") or {}).get("file")
    by = (
        f"the teacher {writer}"
        if writer
        else f"a person's file ({Path(file).name})"
        if file
        else "nobody yet"
    )
    sub = f"task {task.get('name')} ({task.get('kind')}): {task.get('description', '')} · {models}"
    sub += f" · principles by {by}"
    if line := cost_line(r):
        sub += f" · {line}"
    psi = r["results"].get(PSI)
    share = led["teacher_share"][PSI]["share"]
    cards = [
        (f"{PSI} accuracy", pct(psi["accuracy"]) if psi else "n/a"),
        ("run CO2eq" + (" (est.)" if led["run"]["is_estimated"] else ""), f"{grams(led['run']['co2_kg'])} g"),
        ("run energy", f"{wh(led['run']['energy_kwh'])} Wh"),
        (f"teacher share of {PSI} tokens", pct(share)),
    ]
    if led["run"]["cost_usd"] is not None:
        cards.append(("run cost", usd(led["run"]["cost_usd"])))
    return title, sub, cards


ROUNDS_NOTE = (
    "Round r+1 trains on round r's rows plus new rows its student checked, generated where that "
    "student erred on the judge slice; a round's tokens and CO2 are its own stages (round 1: the arm's)."
)


def _curve(r: dict) -> list[dict]:
    return round_curve(r["ledger"], r["manifest"].get("stages", {}), r["results"], r["arms"])


def _labelled(judge: dict) -> int:
    """Labelled rows the judge read beyond the seeds."""
    return judge.get("labelled_rows", 0)


def round_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Self-evolution rounds (evolve.rounds), one row per (arm, round): ledger.round_curve as text."""
    head = ["arm", "round", "accuracy", "trained on", "new rows kept", "student on judge slice",
            "labelled rows beyond the seeds", "teacher tokens", "generator tokens", "g CO2eq",
            "g CO2eq so far"]  # fmt: skip
    rows = []
    for c in _curve(r):
        check, judge = c["check"], c["judge"]
        kept = f"{check['n_kept']} of {check['n_in']} ({check['policy']})" if check else ""
        on = f"{pct(judge['accuracy'])} on {judge['n']} {judge['on']} rows" if judge else ""
        rows.append([c["base"], str(c["round"]), pct(c["accuracy"]),
                     "" if c["n_train"] is None else str(c["n_train"]), kept, on,
                     str(_labelled(judge)) if judge else "",
                     f"{c['teacher_tokens']:,}", f"{c['generator_tokens']:,}",
                     grams(c["co2_kg"]), grams(c["co2_kg_so_far"])])  # fmt: skip
    return head, rows


def judge_lines(r: dict) -> list[str]:
    """'psi_round2: judge: dev (200 labelled rows beyond the seeds)', one per judged round arm."""
    out = []
    for c in _curve(r):
        if judge := c["judge"]:
            line = (
                judge.get("judge")
                or f"judge: {judge.get('on')} ({_labelled(judge)} labelled rows beyond the seeds)"
            )
            out.append(f"{c['arm']}: {line}")
    return out


ROUND_CLASSES_NOTE = (
    "Test accuracy per class and round; in brackets the change from the round before, in points, "
    "so a class that a round's mix starved shows as a fall."
)


def round_class_table(r: dict) -> tuple[list[str], list[list[str]]]:
    """Per class accuracy per (arm, round) on the test rows, with the change from the round before."""
    curve = [c for c in _curve(r) if c.get("per_class")]
    labels = list(dict.fromkeys(label for c in curve for label in c["per_class"]))
    rows, before = [], {}
    for c in curve:
        cells = []
        for label in labels:
            acc, prev = c["per_class"].get(label), before.get((c["base"], label))
            change = f" ({(acc - prev) * 100:+.1f})" if acc is not None and prev is not None else ""
            cells.append(pct(acc) + change)
            before[(c["base"], label)] = acc
        rows.append([c["base"], str(c["round"]), *cells])
    return ["arm", "round", *labels], rows
