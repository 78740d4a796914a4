"""The carbon and cost ledger of a run: per stage, per arm, and what the teacher would have cost.

Pure functions over the run's manifest, its resolved config and the arms' metrics (plain dicts):
nothing here reads or writes the run folder.

- Energy and CO2 of a stage = what CodeCarbon measured on this machine + an estimate for tokens
  served by remote endpoints (`emissions.remote_joules_per_token`); any estimated part marks the
  value `estimated`, and the arm and run sums inherit the mark.
- Tokens per role (teacher, generator, student). Training and evaluation do not go through a model
  caller, so their token counts are folded in as role `student`: training as `trained` tokens (each
  token once per epoch), evaluation as prompt / completion tokens from the arm's metrics.
- Dollars from `models.<role>.price_per_million_tokens` (prompt + completion; trained tokens are
  not billed by an endpoint). Roles without a price count as $0; no price anywhere: no $ at all.
- The principles stage is shared by the arms that use principles (psi, teacher; see arms.py):
  each arm's sum includes all of it; the run total counts it once.
"""

from __future__ import annotations

from typing import Any

from psilm import arms as arms_table
from psilm.arms import PSI, TEACHER
from psilm.emissions import EmissionsSettings
from psilm.numbers import percent

ROLES = ("teacher", "generator", "student")
KINDS = ("principles", "judge", "generate", "filter", "check", "train", "evaluate")
J_PER_KWH = 3.6e6


# --- one stage ---------------------------------------------------------------------------------
def stage_arms(name: str, arms: list[str]) -> list[str]:
    """The arms a stage's cost belongs to: `generate/psi` -> [psi]; principles -> [psi, teacher]."""
    if "/" in name:
        return [name.split("/", 1)[1]]
    if name != "principles":
        return []
    return [a for a in arms_table.order(arms) if arms_table.ARMS[a].uses_principles]


def stage_tokens(name: str, st: dict, arm_metrics: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Tokens per role, with the student's training and evaluation tokens folded in."""
    tokens = {
        role: {k: int(v or 0) for k, v in counts.items()} for role, counts in (st.get("tokens") or {}).items()
    }
    kind, _, arm = name.partition("/")
    if kind == "train" and st.get("train_tokens"):
        tokens.setdefault("student", {"prompt": 0, "completion": 0}).setdefault(
            "trained", int(st["train_tokens"])
        )
    elif st.get("student_tokens") and "student" not in tokens:  # evolve's judge and check
        tokens["student"] = {k: int(v or 0) for k, v in st["student_tokens"].items()}
    elif kind == "evaluate" and "student" not in tokens:
        counts = (arm_metrics.get(arm) or {}).get("tokens") or {}
        if counts:
            tokens["student"] = {
                "prompt": int(counts.get("prompt", 0)),
                "completion": int(counts.get("completion", 0)),
            }
    return tokens


def _total(counts: dict[str, int]) -> int:
    return sum(int(v) for v in counts.values())


def _billable(counts: dict[str, int]) -> int:
    return int(counts.get("prompt", 0)) + int(counts.get("completion", 0))


def _emissions(config: dict) -> EmissionsSettings:
    return EmissionsSettings.model_validate(config.get("emissions") or {})


def _model(config: dict, role: str) -> dict:
    return ((config.get("models") or {}).get(role)) or {}


def _price(config: dict, role: str) -> float | None:
    """$ per 1M tokens of a role; the checker of generate.label_check is the generator unless set."""
    model = _model(config, role) or (_model(config, "generator") if role == "checker" else {})
    return model.get("price_per_million_tokens")


def is_remote(config: dict, role: str) -> bool:
    """A role served over HTTP runs on hardware psilm cannot measure."""
    return _model(config, role).get("backend") == "openai"


def remote_kwh_per_token(config: dict) -> float:
    return _emissions(config).remote_joules_per_token / J_PER_KWH


def _remote_part(st: dict, tokens: dict, config: dict) -> dict | None:
    """Estimated energy / CO2 of remote roles: the manifest's record, or computed from tokens."""
    if st.get("remote_energy"):
        parts = st["remote_energy"]
        return {
            "energy_kwh": sum(float(p.get("energy_kwh", 0.0)) for p in parts),
            "co2_kg": sum(float(p.get("co2_kg", 0.0)) for p in parts),
            "basis": "; ".join(str(p.get("basis", "")) for p in parts),
        }
    remote = {r: _billable(c) for r, c in tokens.items() if is_remote(config, r) and _billable(c)}
    if not remote:
        return None
    em = _emissions(config)
    kwh = sum(remote.values()) * remote_kwh_per_token(config)
    return {
        "energy_kwh": kwh,
        "co2_kg": kwh * em.grid_kg_per_kwh,
        "basis": "; ".join(
            f"{r}: {n} tokens x {em.remote_joules_per_token} J/token" for r, n in remote.items()
        ),
    }


def _cost(tokens: dict, config: dict) -> float | None:
    prices = {r: _price(config, r) for r in {*ROLES, *tokens}}
    if all(p is None for p in prices.values()):
        return None
    return sum(_billable(c) * (prices.get(r) or 0.0) / 1e6 for r, c in tokens.items())


def stage_row(name: str, st: dict, config: dict, arm_metrics: dict[str, dict]) -> dict[str, Any]:
    """One line of the ledger. energy_kwh / co2_kg are None when nothing measured or estimated them."""
    arms = list(config.get("arms") or [])
    tokens = stage_tokens(name, st, arm_metrics)
    measured = None
    if st.get("energy_kwh") is not None:
        measured = {"energy_kwh": float(st["energy_kwh"]), "co2_kg": float(st.get("co2_kg") or 0.0)}
    remote = _remote_part(st, tokens, config)
    parts = [p for p in (measured, remote) if p is not None]
    return {
        "stage": name,
        "kind": name.split("/", 1)[0],
        "arms": stage_arms(name, arms),
        "status": st.get("status", "unknown"),
        "duration_s": st.get("duration_s"),
        "energy_kwh": sum(p["energy_kwh"] for p in parts) if parts else None,
        "co2_kg": sum(p["co2_kg"] for p in parts) if parts else None,
        "measured": measured,
        "estimated": remote,
        "is_estimated": remote is not None,
        "energy_note": st.get("energy_error") or st.get("energy_source"),
        "tokens": tokens,
        "tokens_total": sum(_total(c) for c in tokens.values()),
        "model_calls": st.get("model_calls", 0),
        "n_candidates": st.get("n_candidates"),  # generate steps: how many instances the cost bought
        "cost_usd": _cost(tokens, config),
    }


# --- sums --------------------------------------------------------------------------------------
def _sum(rows: list[dict]) -> dict[str, Any]:
    tokens: dict[str, dict[str, int]] = {}
    for r in rows:
        for role, counts in r["tokens"].items():
            acc = tokens.setdefault(role, {})
            for k, v in counts.items():
                acc[k] = acc.get(k, 0) + int(v)
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    return {
        "stages": [r["stage"] for r in rows],
        "duration_s": sum(float(r["duration_s"] or 0.0) for r in rows),
        "energy_kwh": sum(r["energy_kwh"] or 0.0 for r in rows),
        "co2_kg": sum(r["co2_kg"] or 0.0 for r in rows),
        "estimated_co2_kg": sum((r["estimated"] or {}).get("co2_kg", 0.0) for r in rows),
        "is_estimated": any(r["is_estimated"] for r in rows),
        "incomplete": any(r["energy_kwh"] is None or r["status"] != "done" for r in rows),
        "tokens": tokens,
        "tokens_total": sum(r["tokens_total"] for r in rows),
        "cost_usd": sum(costs) if costs else None,
    }


def arm_totals(rows: list[dict], arms: list[str]) -> dict[str, dict]:
    """Per arm: its own stages plus the shared principles stage where the arm uses principles."""
    return {arm: _sum([r for r in rows if arm in r["arms"]]) for arm in arms}


def teacher_share(rows: list[dict]) -> dict[str, Any]:
    """Teacher tokens / all tokens (prompt + completion + trained, every role), run-wide and psi's."""

    def share(sel: list[dict]) -> dict[str, Any]:
        teacher = sum(_total(r["tokens"].get("teacher", {})) for r in sel)
        total = sum(r["tokens_total"] for r in sel)
        return {"teacher_tokens": teacher, "all_tokens": total, "share": teacher / total if total else None}

    return {"run": share(rows), PSI: share([r for r in rows if PSI in r["arms"]])}


# --- psi against a teacher-written data set ------------------------------------------------------
def teacher_per_token(rows: list[dict], config: dict) -> dict[str, Any] | None:
    """kWh and kg CO2 per token for the teacher: the remote estimate, or measured in `principles`."""
    if is_remote(config, "teacher"):
        kwh = remote_kwh_per_token(config)
        em = _emissions(config)
        return {
            "energy_kwh": kwh,
            "co2_kg": kwh * em.grid_kg_per_kwh,
            "estimated": True,
            "basis": f"remote teacher: {em.remote_joules_per_token} J/token (configured)",
        }
    row = next((r for r in rows if r["stage"] == "principles"), None)
    if row is None or not _billable(row["tokens"].get("teacher", {})) or row["energy_kwh"] is None:
        return None
    n = sum(_billable(c) for c in row["tokens"].values())  # the stage's energy over all its tokens
    return {
        "energy_kwh": row["energy_kwh"] / n,
        "co2_kg": row["co2_kg"] / n,
        "estimated": row["is_estimated"],
        "basis": f"measured in the principles stage: {row['co2_kg'] * 1e3:.3g} g CO2eq over {n} tokens",
    }


def psi_vs_teacher(rows: list[dict], totals: dict[str, dict], config: dict) -> dict[str, Any]:
    """The psi arm's footprint against a teacher arm: measured if run, else projected.

    Projection: the teacher arm is the psi arm with the generator's data written by the teacher,
    so it costs psi's total - generate/psi + generate/psi's tokens x the teacher's per-token cost.
    """
    if PSI not in totals:
        return {"basis": "unavailable", "reason": f"the {PSI} arm is not part of this run"}
    psi = totals[PSI]
    out: dict[str, Any] = {"psi_co2_kg": psi["co2_kg"], "psi_energy_kwh": psi["energy_kwh"]}
    out["psi_cost_usd"] = psi["cost_usd"]
    if TEACHER in totals and not totals[TEACHER]["incomplete"]:
        t = totals[TEACHER]
        out.update(
            basis="measured",
            teacher_co2_kg=t["co2_kg"],
            teacher_energy_kwh=t["energy_kwh"],
            teacher_cost_usd=t["cost_usd"],
            estimated=psi["is_estimated"] or t["is_estimated"],
            note="the teacher arm was run",
        )
    else:
        gen = next((r for r in rows if r["stage"] == f"generate/{PSI}"), None)
        per = teacher_per_token(rows, config)
        if gen is None or gen["energy_kwh"] is None:
            return {**out, "basis": "unavailable", "reason": "generate/psi has no ledger entry yet"}
        if per is None:
            return {
                **out,
                "basis": "unavailable",
                "reason": "the teacher wrote no tokens in this run (principles came from a file) and is "
                "local, so its per-token cost is unknown; add the `teacher` arm to measure it",
            }
        n = sum(_billable(c) for c in gen["tokens"].values())
        price = _model(config, "teacher").get("price_per_million_tokens")
        cost = None
        if psi["cost_usd"] is not None or price is not None:
            cost = (psi["cost_usd"] or 0.0) - (gen["cost_usd"] or 0.0) + n * (price or 0.0) / 1e6
        out.update(
            basis="projected",
            teacher_co2_kg=psi["co2_kg"] - gen["co2_kg"] + n * per["co2_kg"],
            teacher_energy_kwh=psi["energy_kwh"] - gen["energy_kwh"] + n * per["energy_kwh"],
            teacher_cost_usd=cost,
            estimated=psi["is_estimated"] or per["estimated"],
            note=f"generate/psi's {n} tokens at the teacher's per-token cost ({per['basis']})",
        )
    out["saved_co2_kg"] = out["teacher_co2_kg"] - out["psi_co2_kg"]
    out["saved_share"] = out["saved_co2_kg"] / out["teacher_co2_kg"] if out["teacher_co2_kg"] else None
    if (at := at_n(rows, config, PROJECT_N)) is not None:
        out[f"at_{PROJECT_N}"] = at
    return out


PROJECT_N = 1000  # the data set size the comparison is projected to: a run's n is often small


def at_n(rows: list[dict], config: dict, n: int) -> dict[str, Any] | None:
    """Writing n instances: psi (the principles once, then the generator's cost per instance) against
    the teacher writing every one (the principles too, then its per-token cost times the tokens an
    instance takes); energy and CO2. None where generate/psi or the teacher's cost is unknown."""
    gen = next((r for r in rows if r["stage"] == f"generate/{PSI}"), None)
    per = teacher_per_token(rows, config)
    made = (gen or {}).get("n_candidates")
    if gen is None or per is None or not made or gen["energy_kwh"] is None:
        return None
    first = next((r for r in rows if r["stage"] == "principles"), None)
    fixed = {k: (first or {}).get(k) or 0.0 for k in ("energy_kwh", "co2_kg")}
    tokens = sum(_billable(c) for c in gen["tokens"].values()) / made
    return {
        "n": n,
        "psi_energy_kwh": fixed["energy_kwh"] + n * gen["energy_kwh"] / made,
        "psi_co2_kg": fixed["co2_kg"] + n * gen["co2_kg"] / made,
        "teacher_energy_kwh": fixed["energy_kwh"] + n * tokens * per["energy_kwh"],
        "teacher_co2_kg": fixed["co2_kg"] + n * tokens * per["co2_kg"],
    }


def savings_sentence(cmp: dict[str, Any]) -> str:
    """One line saying what psi saved (or did not) against a teacher arm."""
    if cmp.get("basis") in (None, "unavailable"):
        return f"PSI vs teacher: not available ({cmp.get('reason', 'no data')})."
    est = " (estimated)" if cmp.get("estimated") else ""
    how = "measured" if cmp["basis"] == "measured" else "projected"
    psi_g, t_g, saved = cmp["psi_co2_kg"] * 1e3, cmp["teacher_co2_kg"] * 1e3, cmp["saved_co2_kg"] * 1e3
    verb = "saves" if saved >= 0 else "costs"
    share = f" ({percent(abs(cmp['saved_share']), 0)})" if cmp.get("saved_share") is not None else ""
    said = (
        f"PSI arm: {psi_g:.3g} g CO2eq; teacher arm ({how}): {t_g:.3g} g CO2eq. "
        f"PSI {verb} {abs(saved):.3g} g CO2eq{share}{est}."
    )
    if at := cmp.get(f"at_{PROJECT_N}"):
        said += (
            f" Writing {at['n']:,} instances (projected): PSI {1000 * at['psi_energy_kwh']:.3g} Wh, "
            f"the teacher {1000 * at['teacher_energy_kwh']:.3g} Wh."
        )
    return said


# --- self-evolution rounds -----------------------------------------------------------------------
JUDGE_KEYS = ("on", "n", "accuracy", "judge", "labelled_rows")  # the last two: runs made since seeds_cv


def _per_class(per: dict | None) -> dict[str, float | None] | None:
    """{label: test accuracy} from an arm's metrics (classification tasks), or None."""
    return {label: v.get("accuracy") for label, v in per.items()} if per else None


def round_curve(ledger: dict, stages: dict, results: dict[str, dict], arms: list[str]) -> list[dict]:
    """Per evolved arm and round (evolve.rounds): accuracy (per class too), rows, the judge, the
    check, tokens and CO2.

    A round's cost is its own stages (judge, principles, generate, filter, check, train, evaluate);
    round 1's is the arm's total, shared principles included; `co2_kg_so_far` sums the rounds up to it.
    """
    out = []
    for base in arms_table.ROUND_BASES:
        chain = [a for a in arms_table.order(arms) if (arms_table.ARMS[a].base or a) == base]
        if len(chain) < 2:
            continue
        so_far = 0.0
        for arm in chain:
            spec = arms_table.ARMS[arm]
            if spec.round == 1:
                tot = ledger["arms"].get(arm) or _sum([])
            else:
                tot = _sum([r for r in ledger["stages"] if r["arms"] == [arm]])
            so_far += tot["co2_kg"] or 0.0
            check, judge = stages.get(f"check/{arm}") or {}, stages.get(f"judge/{arm}") or {}
            out.append(
                {
                    "arm": arm,
                    "base": base,
                    "round": spec.round,
                    "accuracy": (results.get(arm) or {}).get("accuracy"),
                    "n_train": (stages.get(f"train/{arm}") or {}).get("n_train"),
                    "check": {k: check.get(k) for k in ("policy", "n_in", "n_kept", "agree")}
                    if check
                    else None,
                    "judge": {k: judge.get(k) for k in JUDGE_KEYS if k in judge} if judge else None,
                    "per_class": _per_class((results.get(arm) or {}).get("per_class")),
                    "teacher_tokens": sum((tot["tokens"].get("teacher") or {}).values()),
                    "generator_tokens": sum((tot["tokens"].get("generator") or {}).values()),
                    "co2_kg": tot["co2_kg"],
                    "co2_kg_so_far": so_far,
                }
            )
    return out


# --- the whole ledger ----------------------------------------------------------------------------
def _order(name: str) -> tuple[int, int, str]:
    kind, _, arm = name.partition("/")
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), arms_table.rank(arm), name)


def build_ledger(manifest: dict, config: dict, arm_metrics: dict[str, dict] | None = None) -> dict[str, Any]:
    """Everything the report shows about cost: rows per stage, sums per arm and run, comparisons."""
    arm_metrics = arm_metrics or {}
    stages = manifest.get("stages") or {}
    rows = [stage_row(n, stages[n], config, arm_metrics) for n in sorted(stages, key=_order)]
    arms = list(config.get("arms") or [])
    totals = arm_totals(rows, arms)
    return {
        "stages": rows,
        "arms": totals,
        "run": _sum(rows),
        "teacher_share": teacher_share(rows),
        "psi_vs_teacher": psi_vs_teacher(rows, totals, config),
        "priced": any(_price(config, r) is not None for r in ROLES),
        "remote_roles": [r for r in ROLES if is_remote(config, r)],
        "remote_joules_per_token": _emissions(config).remote_joules_per_token,
    }
