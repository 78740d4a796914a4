"""The kinds whose generator writes question and answer in one response: free_text (PairTask) and
multiple_choice (the choices and a letter as well)."""

from __future__ import annotations

import re

from psilm.tasks.base import LETTERS, Example, _gold_letter
from psilm.tasks.generating import ANSWER_LINE, PAIR_DELIMITER, GeneratingTask, one_line
from psilm.tasks.structured import choice_count, read_generated_choices


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
        matches = list(ANSWER_LINE.finditer(raw or ""))
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
