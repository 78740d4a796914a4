"""How psilm writes numbers for a person: a share as a percentage, an interval, a duration."""

from __future__ import annotations

INTERVAL = "95% interval"  # the intervals psilm reports: Wilson over test rows, t over seeds
CI = INTERVAL.replace("interval", "CI")  # the same, in a table's narrow header


def percent(x: float | None, places: int = 1) -> str:
    """A share as a percentage, `places` decimals; None: 'n/a'."""
    return "n/a" if x is None else f"{100 * x:.{places}f}" + "%"


def span(lo: float, hi: float, places: int = 1) -> str:
    """An interval as two percentages."""
    return f"{percent(lo, places)} - {percent(hi, places)}"


def duration(seconds: float) -> str:
    """12.3 -> '12.3 s'; 754 -> '12 min 34 s'; 4000 -> '1 h 6 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m < 60 else f"{m // 60} h {m % 60} min"
