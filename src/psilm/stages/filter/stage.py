"""Stage 3 as a step: an arm's kept rows (a round's new rows) and its filter report."""

from __future__ import annotations

from typing import Any

from psilm.durable import fingerprint
from psilm.stages.base import Input, Stage, StepIO
from psilm.stages.filter.filter import filter_instances


class Filter(Stage):
    name = "filter"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.generated

    def reads(self, cfg, arm) -> list[Input]:
        return [Input("candidates"), Input("seeds", of_run=True)]

    def writes(self, cfg, arm) -> list[str]:
        # a round's new rows join the round before's in the check step, which writes its rows
        return ["new_rows" if arm.round > 1 else "rows", "filter_report"]

    def key(self, io: StepIO) -> dict[str, Any]:
        test = [e.to_dict() for e in io.test] if io.test is not None else None
        return {"settings": io.cfg.filter.model_dump(mode="json"), "test": fingerprint(test)}

    def summary(self, st: dict[str, Any]) -> str:
        return f"kept {st['n_kept']} of {st['n_in']}"

    def run(self, io: StepIO) -> dict[str, Any]:
        kept, report = filter_instances(io.task, io.read("candidates"), io.seeds, io.test, io.cfg.filter)
        io.write("new_rows" if io.arm.round > 1 else "rows", kept)
        io.write("filter_report", report)
        if report.get("warning"):
            io.log(f"WARNING ({io.arm.name}): {report['warning']}")
        return {k: report.get(k) for k in ("n_in", "n_kept", "dropped", "warning")}
