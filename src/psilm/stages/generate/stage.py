"""Stage 2 as a step: an arm's candidates.jsonl, written by its writer from the seeds, the
principles (psi arms) and, in a round, the mix the judge chose."""

from __future__ import annotations

from typing import Any

from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.stages.generate.write import generate_instances
from psilm.stages.rounds.settings import round_seed


class Generate(Stage):
    name = "generate"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.generated

    def reads(self, cfg, arm) -> list[Input]:
        read = [Input("seeds", of_run=True)]
        if arm.round > 1:  # the previous round's student chose the mix
            read.append(Input("judge"))
        if arm.uses_principles:
            read.append(Input("principles", of_run=True) if arm.round == 1 else Input("arm_principles"))
        return read

    def writes(self, cfg, arm) -> list[str]:
        return ["candidates"]

    def workload(self, cfg, arm):
        writer = cfg.models.teacher if arm.writer == "teacher" else cfg.models.generator
        n = (cfg.evolve.n or cfg.generate.n) if arm.round > 1 else cfg.generate.n
        return model_label(writer), n, "instances"

    def settings(self, io: StepIO):
        """generate.* as this arm uses it: `train` weights resolved, a round's n and mix."""
        cfg = io.cfg
        s = cfg.generate.model_copy(update={"category_weights": io.category_weights})
        if io.arm.round > 1:
            update: dict[str, Any] = {"n": cfg.evolve.n or cfg.generate.n}
            if weights := io.read("judge").get("category_weights"):
                update["category_weights"] = weights
            s = s.model_copy(update=update)
        return s

    def writer(self, io: StepIO):
        return io.cfg.models.teacher if io.arm.writer == "teacher" else io.cfg.models.generator

    def checker(self, io: StepIO):
        """The model that scores every new input under each label (generate.label_check), or None."""
        return (io.cfg.models.checker or io.cfg.models.generator) if io.cfg.generate.label_check else None

    def key(self, io: StepIO) -> dict[str, Any]:
        checker = self.checker(io)
        return {
            "settings": self.settings(io).model_dump(mode="json"),
            "mode": io.arm.mode,
            "generator": self.writer(io).key(),
            "checker": checker.key() if checker is not None else None,
            "task": io.cfg.task.model_dump(mode="json"),
            "seed": io.cfg.seed,
        }

    def summary(self, st: dict[str, Any]) -> str:
        return f"{st['n_candidates']} instances"

    def run(self, io: StepIO) -> dict[str, Any]:
        arm, s = io.arm, self.settings(io)
        principles: list[dict] = []
        if arm.uses_principles:
            principles = io.read("principles", of_run=True) if arm.round == 1 else io.read("arm_principles")
            principles = principles["principles"]
        caller = io.caller(arm.writer, self.writer(io))
        model = self.checker(io)
        checker = io.caller("checker", model) if model is not None else None
        seed = round_seed(io.cfg.seed, arm.round)
        records, stats = generate_instances(
            io.task, io.seeds, principles, caller, s, seed, arm.mode, checker=checker
        )
        io.write("candidates", records)
        if stats.get("warning"):
            io.log(f"WARNING ({arm.name}): {stats['warning']}")
        if io.cfg.generate.category_weights == "train" or arm.round > 1:  # the shares used in this run
            stats["category_weights"] = s.category_weights
        return {"n_candidates": len(records), **{k: v for k, v in stats.items() if k != "tokens"}}
