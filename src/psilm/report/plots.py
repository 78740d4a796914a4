"""The report's plots as base64 PNGs (matplotlib's object API: no pyplot, no global state)."""

from __future__ import annotations

import base64
import io

from psilm.arms import PSI
from psilm.ledger import ROLES
from psilm.numbers import INTERVAL

ROLE_COLORS = {"teacher": "#c0392b", "generator": "#2e86c1", "student": "#7d8b99"}
FOCUS, OTHER = "#1e8449", "#95a5a6"  # the psi arm stands out


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
    colors = [FOCUS if a == PSI else OTHER for a in arms]
    ax.bar(arms, acc, color=colors, yerr=[lo, hi], capsize=5, ecolor="#333")
    for i, v in enumerate(acc):
        ax.text(i, 2, f"{v:.1f}%", ha="center", va="bottom", color="white", fontsize=9, fontweight="bold")
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"accuracy (%), {INTERVAL}")
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
            color=FOCUS if a == PSI else "#566573",
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
    extra = sorted({role for s in rows for role in s["tokens"]} - set(ROLES))  # e.g. the checker
    for role in [*ROLES, *extra]:
        vals = [sum(s["tokens"].get(role, {}).values()) for s in rows]
        if any(vals):
            ax2.barh(names, vals, left=left, color=ROLE_COLORS.get(role, "#8e44ad"), label=role)
            left = [a + b for a, b in zip(left, vals, strict=True)]
    ax2.set_xlabel("tokens (prompt + completion + trained)")
    ax2.set_title("Tokens per stage, by role")
    if any(left):
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def plot_rounds(r: dict) -> str | None:
    """Accuracy per round for each evolved arm, beside the CO2 spent so far (ledger.round_curve)."""
    from matplotlib.figure import Figure

    from psilm.ledger import round_curve

    curves: dict[str, list[dict]] = {}
    for c in round_curve(r["ledger"], r["manifest"].get("stages", {}), r["results"], r["arms"]):
        if c["accuracy"] is not None:
            curves.setdefault(c["base"], []).append(c)
    if not curves:
        return None
    fig = Figure(figsize=(9, 3))
    ax1, ax2 = fig.subplots(1, 2)
    for base, pts in curves.items():
        color = FOCUS if base == PSI else "#566573"
        acc = [c["accuracy"] * 100 for c in pts]
        ax1.plot([c["round"] for c in pts], acc, "o-", color=color, label=base)
        ax2.plot([c["co2_kg_so_far"] * 1e3 for c in pts], acc, "o-", color=color, label=base)
    ax1.set_xlabel("round")
    ax1.set_xticks(sorted({c["round"] for pts in curves.values() for c in pts}))
    ax1.set_ylabel("accuracy (%)")
    ax1.set_title("Accuracy per round")
    ax2.set_xlabel("g CO2eq so far")
    ax2.set_title("Accuracy against carbon, by round")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def plot_round_classes(r: dict) -> str | None:
    """Test accuracy per class across the rounds, one panel per evolved arm: a class that falls shows."""
    from matplotlib.figure import Figure

    from psilm.ledger import round_curve

    curves: dict[str, list[dict]] = {}
    for c in round_curve(r["ledger"], r["manifest"].get("stages", {}), r["results"], r["arms"]):
        if c.get("per_class"):
            curves.setdefault(c["base"], []).append(c)
    if not curves:
        return None
    fig = Figure(figsize=(4.6 * len(curves), 3.2))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (base, pts) in zip(axes, curves.items(), strict=True):
        labels = list(dict.fromkeys(label for c in pts for label in c["per_class"]))
        for label in labels:
            xs = [c["round"] for c in pts if c["per_class"].get(label) is not None]
            ys = [c["per_class"][label] * 100 for c in pts if c["per_class"].get(label) is not None]
            ax.plot(xs, ys, "o-", label=label)
        ax.set_xticks(sorted({c["round"] for c in pts}))
        ax.set_ylim(0, 100)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{base}: accuracy per class")
        ax.legend(fontsize=7, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)
