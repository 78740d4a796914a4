"""The kinds with a label or a number for an answer (classification, numeric), and the table of
every kind's class: load_task builds a task through it (pairs.py: free_text, multiple_choice)."""

from __future__ import annotations

import re

from pydantic import ValidationError

from psilm.errors import ConfigError
from psilm.tasks.base import Example, Task, TaskConfig, builtin_tasks, parse_number
from psilm.tasks.generating import GeneratingTask, majority, one_line, with_final_answer
from psilm.tasks.pairs import MultipleChoiceTask, PairTask


class ClassificationTask(GeneratingTask):
    same_category_demos = True  # a demo of another label invites copying that label
    one_text_inputs = True
    category_word = "label"
    short_answers = True
    extra_scores = ("per_class",)

    def fixed_categories(self) -> dict[str, str] | None:
        return {lb: self.config.label_descriptions.get(lb, "") for lb in self.labels}

    def category_problem(self, category: str) -> str | None:
        if category in self.labels:
            return None
        return f"is not a label of task {self.name!r} ({', '.join(self.labels)})"

    def generation_categories(self, principles: list[dict]) -> list[str | None]:
        return list(self.labels)

    def _head(self, category, describe: bool) -> tuple[str, str]:
        c = self.config
        desc = c.label_descriptions.get(category) if describe else None
        what = f'{c.input_name} labelled "{category}"'
        return what, f'{c.description} Label "{category}"' + (f": {desc}." if desc else ".")

    def _chat_request(self, what: str) -> str:
        noun = self.config.input_name
        return f"Write one new {what}, about as long as the examples. Reply with the {noun} only."

    def _list_header(self, category, tips: list[str], describe: bool) -> list[str]:
        c = self.config
        desc = c.label_descriptions.get(category) if describe else None
        label = f'Label "{category}"' + (f": {desc}." if desc else ".")
        return [c.description, label, *tips, "", f'{c.input_name.capitalize()}s labelled "{category}":']

    def target_samples(self, settings) -> int:
        return settings.verify_samples

    def label_check_prompt(self, label: str) -> str:
        """What generate.label_check reads before an input: the list header of one label, as the
        list prompt writes it (with the label's description), up to the first item's number."""
        return "\n".join([*self._list_header(label, [], True), "1."])

    def label_check_text(self, text: str) -> str:
        """The input as item 1 of that list."""
        return " " + one_line(text)

    def target_prompt(self, text: str, demos: list[Example], tips: list[str], style: str):
        if style == "chat":
            return self.prompt(text)
        shown = self.user_text(text if self.multi_field else one_line(text))
        return f"{self.instruction()}\n\n{shown}\nAnswer:"

    def target_stop(self, style: str) -> list[str]:
        return ["\n"] if style == "list" else []

    def set_target(self, record: dict, texts: list[str]) -> None:
        record["output"] = record["answer"] = record["category"]
        record["votes"] = [self.extract(t) for t in texts]

    def answer_problem(self, answer: str, text: str) -> str | None:
        return None if answer in self.labels else "bad_label"


class NumericTask(GeneratingTask):
    solves_inputs = True
    word_problem_inputs = True

    def target_samples(self, settings) -> int:
        return settings.solve_samples

    def target_prompt(self, text: str, demos: list[Example], tips: list[str], style: str):
        lines: list[str] = []
        for x in demos:
            worked = re.sub(r"<<[^>]*>>", "", x.output)  # GSM8K calculator notes
            lines += [self.user_text(x.input), f"Solution: {worked}", ""]
        lines += [self.user_text(text)]
        system = "\n".join([self.instruction()] + [f"Tip: {t}" for t in tips])
        if style == "chat":
            return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]
        return "\n".join([system, "", *lines, "Solution:"])

    def target_stop(self, style: str) -> list[str]:
        first = self._first_field() if self.multi_field else f"{self.config.input_name.capitalize()}:"
        return [f"\n{first}"] if style == "list" else []

    def set_target(self, record: dict, texts: list[str]) -> None:
        record["votes"] = votes = [self.extract(t) for t in texts]
        record["answer"] = majority(votes)
        record["output"] = None
        if record["answer"] is not None:
            first = next(t for t, v in zip(texts, votes, strict=True) if v == record["answer"])
            record["output"] = with_final_answer(first, record["answer"])

    def answer_problem(self, answer: str, text: str) -> str | None:
        return None if re.fullmatch(r"-?\d+(?:\.\d+)?", answer.replace(",", "")) else "bad_number"

    def vote_key(self, vote: str) -> str:
        return parse_number(vote) or vote  # '8.0' and '8' are one vote


TASK_CLASSES: dict[str, type[GeneratingTask]] = {
    "classification": ClassificationTask,
    "numeric": NumericTask,
    "multiple_choice": MultipleChoiceTask,
    "free_text": PairTask,
}


def load_task(spec: str | dict | TaskConfig) -> Task:
    """A Task from a built-in name, a YAML-style dict, or a TaskConfig (its kind's class)."""
    if isinstance(spec, TaskConfig):
        return TASK_CLASSES[spec.kind](spec)
    if isinstance(spec, str):
        known = builtin_tasks()
        if spec not in known:
            raise ConfigError(
                f"task: unknown task {spec!r}; built-in tasks are {sorted(known)}, "
                "or define one inline (see docs/tasks.md)"
            )
        spec = known[spec]
    try:
        config = TaskConfig(**spec)
    except ValidationError as e:
        raise ConfigError(_first_error("task", e)) from None
    return TASK_CLASSES[config.kind](config)


def _first_error(prefix: str, e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]))
    return f"{loc}: {err['msg'].removeprefix('Value error, ')}"
