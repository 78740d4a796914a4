"""What each task kind does in generation: categories, demos, prompts, parsing, targets.

The generate stage holds no kind branches; it asks the task. One class per kind:

- classification: the category is the label; the generator writes an input for it, the label is
  the target (optionally re-labelled k times: votes for the filter);
- numeric: categories come from the principles; the generator writes a problem, then solves it
  k times (the majority number is the answer);
- multiple_choice / free_text: the generator writes question and answer in one response.

TASK_CLASSES (at the end) names the class of each kind; load_task builds a task through it.

Two prompt styles (`generate.prompt_style`):

- chat: system message (task, category, "Tip:" principles) and a user message asking for one new
  input. What an instruct model expects; a 135M chat model tends to talk *about* the task.
- list: plain text to continue, no chat template: a header that states the task, the category
  and the sampled principle(s), then numbered demos, then the next number. A base model writes the
  next item; the header steers it, since it does not follow instructions. Why list is the
  default: docs/defaults.md#generate.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import ValidationError

from psilm.errors import ConfigError
from psilm.tasks.base import LETTERS, Example, Task, TaskConfig, _gold_letter, builtin_tasks, parse_number
from psilm.tasks.structured import JsonInstances, choice_count, read_generated_choices

Messages = list[dict[str, str]]
PAIR_DELIMITER = "###"  # between question-and-answer items in list prompts


def one_line(text: str) -> str:
    return " ".join(text.split())


def majority(votes: list[str | None]) -> str | None:
    """The most common non-empty vote; None on a tie or with no votes."""
    top = Counter(v for v in votes if v is not None).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def with_final_answer(solution: str, answer: str) -> str:
    body = solution.split("####", 1)[0].rstrip()
    return f"{body}\n#### {answer}" if body else f"#### {answer}"


_ANSWER_LINE = re.compile(r"^[ \t*#]*(?:correct |final )?answer\s*[:=-]\s*(?P<a>.*)$", re.I | re.M)


class GeneratingTask(JsonInstances, Task):
    """A Task that knows how a small model writes new instances of it (one subclass per kind);
    structured generation (one JSON object per instance) comes from psilm.tasks.structured."""

    # --- planning
    same_category_demos = False  # only demos of the drawn category (else: fill up with others)
    solves_inputs = False  # the generator solves each new input (plans sample solve principles)
    writes_answer = False  # input and answer come in one response
    # --- cleaning
    one_text_inputs = False  # an input is one text: a blank or numbered line starts another candidate
    word_problem_inputs = False  # an input holds a quantity and a question (cut what follows the question)

    # --- principles and scores
    category_word = "sub-type"  # what prompts to the teacher call a category
    short_answers = False  # an answer is a label or a letter (the student needs few tokens for it)
    extra_scores: tuple[str, ...] = ()  # evaluate adds these to the accuracy (see stages/evaluate.py)

    def fixed_categories(self) -> dict[str, str] | None:
        """{category: description} when the task defines its categories; None: the teacher finds
        sub-types in the seeds."""
        return None

    def category_problem(self, category: str) -> str | None:
        """Why a principle's category cannot belong to this task, or None."""
        return None

    def generation_categories(self, principles: list[dict]) -> list[str | None]:
        """Categories to draw per instance: the category-level principles' own, or [None]."""
        cats = [p["category"] for p in principles if p["level"] == "category" and p["category"]]
        return list(dict.fromkeys(cats)) or [None]

    # --- step 1: a new input -----------------------------------------------------------------
    def _head(self, category: str | None, describe: bool) -> tuple[str, str]:
        """(what to write, the task line): 'question (arithmetic)', 'We write questions for ...'."""
        noun = self.config.input_name
        what = f"{noun} ({category.replace('-', ' ')})" if category else noun
        return what, f"We write {noun}s for this task: {self.config.description}"

    def chat_input_prompt(self, demos: list[Example], category, tips: list[str], describe: bool) -> Messages:
        """System: the task and its tips (without one, chat templates add their own, e.g. "You are
        a helpful AI assistant named SmolLM", which a 135M generator then writes about); user: the
        demos and the request."""
        noun = self.config.input_name
        what, head = self._head(category, describe)
        system = "\n".join([head] + [f"Tip: {t}" for t in tips])
        lines: list[str] = []
        if demos:
            lines += [f"Examples of {noun}s:" if not self.writes_answer else "Examples:"]
            if self.multi_field:  # a block per demo, a 'Name: value' line per field
                lines += "\n\n".join(self._block(x) for x in demos).split("\n")
            else:
                lines += [self._chat_demo(x) for x in demos]
        lines += ["", self.fields_request(what, self.writes_answer) or self._chat_request(what)]
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines).strip()}]

    def _chat_demo(self, x: Example) -> str:
        return f"- {one_line(x.input)}"

    def _block(self, x: Example) -> str:
        """Several fields: a demo as its 'Name: value' lines (and 'Answer:' where one is written)."""
        return x.input + (f"\nAnswer: {x.output}" if self.writes_answer else "")

    def _first_field(self) -> str:
        return f"{self.field_label(self.fields[0])}:"

    def _with_first_field(self, raw: str) -> str:
        """A list completion continues after the first field's name: put it back, unless the
        model wrote the name itself."""
        raw = raw.strip()
        if self.split_fields(raw)[1] == f"missing_field:{self.fields[0]}":
            return f"{self._first_field()} {raw}"
        return raw

    def _chat_request(self, what: str) -> str:
        noun = self.config.input_name
        return (
            f"Write one new {what}, about as long as the examples. "
            f"Reply with the {noun} only, without solving it."
        )

    def list_input_prompt(self, demos: list[Example], category, tips: list[str], describe: bool) -> str:
        """A numbered list to continue: header (task, category, principles), demos, next number."""
        lines = self._list_header(category, tips, describe)
        if self.multi_field:  # an instance is several lines: '###'-separated blocks, as pair kinds
            for x in demos:
                lines += [self._block(x), PAIR_DELIMITER]
            return "\n".join(lines + [self._first_field()])
        lines += [f"{j}. {one_line(x.input)}" for j, x in enumerate(demos, start=1)]
        return "\n".join(lines + [f"{len(demos) + 1}."])

    def _list_header(self, category, tips: list[str], describe: bool) -> list[str]:
        noun = self.config.input_name
        _, head = self._head(category, describe)
        title = f"{noun.capitalize()}s" + (f" ({category.replace('-', ' ')})" if category else "") + ":"
        return [head, *tips, "", title]

    def list_stop(self) -> list[str]:
        """Where the first item ends in a list completion."""
        return [PAIR_DELIMITER] if self.multi_field else ["\n"]

    def parse_generated(self, raw: str, style: str) -> tuple[str | None, str | None, str | None]:
        """(input, answer or None, None) or (None, None, reason) from the generator's response."""
        if style == "list" and self.multi_field:  # the first block, its first field's name restored
            return self._with_first_field((raw or "").split(PAIR_DELIMITER, 1)[0]), None, None
        if style == "list":  # the first item: the backend stops at its end, and a log may not have
            raw = _first_line(raw)
        return raw, None, None

    # --- step 2: the target ------------------------------------------------------------------
    def target_samples(self, settings) -> int:
        """Times the generator answers each new input (0: the target is known already)."""
        return 0

    def target_prompt(self, text: str, demos: list[Example], tips: list[str], style: str):
        """The prompt for one sampled answer to a new input (chat messages or text to continue)."""
        raise NotImplementedError

    def target_stop(self, style: str) -> list[str]:
        return []

    def set_target(self, record: dict, texts: list[str]) -> None:
        """Fill the record's output/answer (and votes) from its sampled answers (maybe none)."""

    # --- filtering ---------------------------------------------------------------------------
    def answer_problem(self, answer: str, text: str) -> str | None:
        """Why a generated instance's (non-empty) answer is unusable for input `text`, or None."""
        return None

    def vote_key(self, vote: str) -> str:
        """The form in which two votes count as one."""
        return vote


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


class PairTask(GeneratingTask):
    """multiple_choice and free_text: 'Question: ...' then 'Answer: ...' in one response."""

    writes_answer = True
    extra_scores = ("token_f1",)  # free text: exact match is harsh, token F1 gives partial credit

    def _chat_demo(self, x: Example) -> str:
        return f"Question: {x.input}\nAnswer: {x.output}"

    _format = "'Question:' with the question"

    def _chat_request(self, what: str) -> str:
        return f"Write one new {what} in the same format: {self._format}, then 'Answer:' with the answer."

    def list_input_prompt(self, demos: list[Example], category, tips: list[str], describe: bool) -> str:
        """Question-and-answer items separated by '###' lines, ending in an open 'Question:'."""
        _, head = self._head(category, describe)
        lines = [head, *tips, ""]
        for x in demos:
            lines += [self._block(x) if self.multi_field else self._chat_demo(x), PAIR_DELIMITER]
        return "\n".join(lines + [self._first_field() if self.multi_field else "Question:"])

    def list_stop(self) -> list[str]:
        return [PAIR_DELIMITER]

    def parse_generated(self, raw: str, style: str) -> tuple[str | None, str | None, str | None]:
        if style == "list":
            raw = (raw or "").split(PAIR_DELIMITER, 1)[0]
            if self.multi_field:  # the prompt ended in the first field's name
                raw = self._with_first_field(raw)
        return self.parse_pair(raw)

    def parse_pair(self, raw: str) -> tuple[str | None, str | None, str | None]:
        """(question, answer, None) or (None, None, reason) from 'Question: ... Answer: ...'."""
        matches = list(_ANSWER_LINE.finditer(raw or ""))
        if not matches:
            return None, None, "no_answer"
        m = matches[0]
        question, answer = raw[: m.start()].strip(), m.group("a").strip()
        if not answer:  # "Answer:\nB"
            answer = raw[m.end() :].strip().split("\n", 1)[0].strip()
        if not answer:
            return None, None, "no_answer"
        return self._pair_answer(question, answer)

    def _pair_answer(self, question: str, answer: str) -> tuple[str | None, str | None, str | None]:
        return question, answer.split("\n", 1)[0].strip(), None

    def set_target(self, record: dict, texts: list[str]) -> None:
        pass  # the answer came with the question

    # --- structured: the answer is one more key, the data's own target field
    def _answer_schema(self, seeds: list) -> dict:
        return {self.config.target_field: {"type": "string"}}

    def _answer_object(self, example: Example) -> tuple[str, dict]:
        return example.input, {self.config.target_field: example.output}

    def _answer_value(self, text: str, get) -> tuple[str, str | None, dict, str | None]:
        target = self.config.target_field
        answer = get(target)
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            return text, None, {}, f"missing_field:{target}"
        answer = one_line(answer)
        return text, answer, {target: answer}, None


class MultipleChoiceTask(PairTask):
    short_answers = True
    extra_scores = ()
    _format = "'Question:' with the question and its lettered choices"

    def _pair_answer(self, question: str, answer: str) -> tuple[str | None, str | None, str | None]:
        letter = self.extract(answer)
        if letter is None or not re.search(rf"(?m)^\s*\(?{letter}[.)]\s*\S", question):
            return None, None, "bad_answer"
        return question, letter, None

    def answer_problem(self, answer: str, text: str) -> str | None:
        letters = re.findall(r"^\s*([A-Z])[.)]\s", text, flags=re.MULTILINE)
        if not re.fullmatch(r"[A-Z]", answer) or (letters and answer not in letters):
            return "bad_letter"
        return None

    def vote_key(self, vote: str) -> str:
        return vote.upper()

    # --- structured: the choices as a list of texts, the answer as one of their letters
    def _answer_schema(self, seeds: list) -> dict:
        n = choice_count(seeds)
        c = self.config
        return {
            c.choices_field: {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n},
            c.target_field: {"type": "string", "enum": list(LETTERS[:n])},
        }

    def _answer_object(self, example: Example) -> tuple[str, dict]:
        """The input without its last n_choices lines ('A. bank', ...), which become the choices."""
        n = example.meta.get("n_choices", 0)
        lines = example.input.split("\n")
        question, choices = lines[: len(lines) - n], [ln.split(". ", 1)[1] for ln in lines[len(lines) - n :]]
        return "\n".join(question), {
            self.config.choices_field: choices,
            self.config.target_field: example.output,
        }

    def _answer_value(self, text: str, get) -> tuple[str, str | None, dict, str | None]:
        c = self.config
        value = get(c.choices_field)
        if value is None:
            return text, None, {}, f"missing_field:{c.choices_field}"
        if (read := read_generated_choices(value)) is None:
            return text, None, {}, "bad_choices"
        choices, labels = read
        target = get(c.target_field)
        if target is None or not str(target).strip():
            return text, None, {}, f"missing_field:{c.target_field}"
        letters = LETTERS[: len(choices)]
        # by its letter, label or index; or written out as its choice's text
        by_text = dict(zip((ch.lower() for ch in choices), letters, strict=True))
        answer = _gold_letter(target, labels, letters) or by_text.get(str(target).strip().lower())
        if answer is None:
            return text, None, {}, "bad_answer"
        body = text + "\n" + "\n".join(f"{ltr}. {ch}" for ltr, ch in zip(letters, choices, strict=True))
        return body, answer, {c.choices_field: choices, c.target_field: answer}, None


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.split("\n", 1)[0].strip() if text else text


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
