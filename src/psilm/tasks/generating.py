"""What every task kind does in generation (GeneratingTask), and the helpers the kinds share.

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

from psilm.tasks.base import Example, Task
from psilm.tasks.structured import JsonInstances

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


ANSWER_LINE = re.compile(r"^[ \t*#]*(?:correct |final )?answer\s*[:=-]\s*(?P<a>.*)$", re.I | re.M)


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
            raw = first_line(raw)
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


def first_line(text: str) -> str:
    text = (text or "").strip()
    return text.split("\n", 1)[0].strip() if text else text
