"""The run report: report.html (one self-contained file, plots embedded) and report.md.

Reads a finished (or half-finished) run folder and shows, top to bottom: the arms with their
confidence intervals, accuracy and CO2 per arm, the ledger per stage (energy, CO2, tokens per
role, $), what the teacher's share was and what PSI saved, the principles by level, the filter
counts, and sample generated instances with the principles that made them.

  load.py      the run folder as plain data (through the store's layout)
  text.py      numbers, tables and header facts both formats share
  plots.py     the plots, as embedded PNGs
  html.py      report.html
  markdown.py  report.md
"""

from __future__ import annotations

from pathlib import Path

from psilm.durable import atomic_write_text
from psilm.report.html import render_html
from psilm.report.load import load_run
from psilm.report.markdown import render_md

__all__ = ["load_run", "render_html", "render_md", "write_report"]


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write DIR/report.html and DIR/report.md; returns both paths."""
    r = load_run(run)
    atomic_write_text(r["html_path"], render_html(r))
    atomic_write_text(r["md_path"], render_md(r))
    return r["html_path"], r["md_path"]
