"""What the principles stage checks in the teacher's answers, measured against the task's own seeds.

- Shape: how long one instance of this task is (the seeds' range, stretched by
  `principles.example_stretch`) and whether it is a question (every seed is one). The create
  prompts name that range; an example outside it is dropped.
- Forms: the teacher's (example, form) items. Each example is cleaned and checked (its shape, not
  a copy of a seed, not one kept already, and for a classification task read as its own label by
  the teacher, where the teacher reads the labels of the seeds it is not shown better than chance);
  what each category kept and dropped, and why, is counted (`coverage`), and a category left short
  is asked once more, told why its examples were dropped.
Task rules the seeds break: rules.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from psilm.durable import text_hash
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.principles import prompts, reading
from psilm.tasks import Example, Task

TEST_LEVEL = 0.05  # the teacher's label check is used where it reads held-out seeds better than chance


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely k or more right answers are by chance."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


# ---------------------------------------------------------------------------------------------
# The shape of one instance, from the seeds
# ---------------------------------------------------------------------------------------------
def words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Shape:
    """The seeds' lengths (characters and words) and whether every seed is a question."""

    shortest: int
    longest: int
    fewest_words: int
    most_words: int
    questions: bool
    stretch: float

    @classmethod
    def of(cls, seeds: list[Example], stretch: float) -> Shape:
        texts = [" ".join(x.input.split()) for x in seeds]
        return cls(
            shortest=min(map(len, texts)),
            longest=max(map(len, texts)),
            fewest_words=min(map(words, texts)),
            most_words=max(map(words, texts)),
            questions=all(t.rstrip().endswith("?") for t in texts),
            stretch=stretch,
        )

    @property
    def most_chars(self) -> int:
        """The longest example allowed: the longest seed, stretched."""
        return math.ceil(self.longest * self.stretch)

    def problem(self, example: str) -> str | None:
        """Why an example is not one instance of this task, or None."""
        if len(example) > self.most_chars:
            return "example_too_long"
        if (
            len(example) < math.floor(self.shortest / self.stretch)
            or words(example) < self.fewest_words / self.stretch
        ):
            return "example_too_short"
        if self.questions and not example.endswith("?"):
            return "example_not_a_question"
        return None

    def cut(self, example: str) -> str | None:
        """The example up to its last sentence end within the longest length allowed, where that
        is long enough to be one instance; else None."""
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", example[: self.most_chars + 1])]
        if not ends:
            return None
        cut = example[: ends[-1]].strip()
        return cut if self.problem(cut) is None else None

    def length_words(self) -> str:
        """The seeds' length in words, as the create prompts say it."""
        lo, hi = self.fewest_words, self.most_words
        return f"{lo} words" if lo == hi else f"{lo} to {hi} words"

    def why(self, reason: str, example: str) -> str:
        """What the teacher is told about an example dropped for `reason`."""
        n = words(example)
        return {
            "example_too_long": f"too long at {n} words; the examples have {self.length_words()}",
            "example_too_short": f"too short at {n} words; the examples have {self.length_words()}",
            "example_not_a_question": "not a question; every example is a question",
            "example_copies_seed": "a copy of an example above",
            "duplicate": "the same as another one",
            "example_placeholder": "a placeholder, not a real one",
        }.get(reason, reason.replace("_", " "))


# ---------------------------------------------------------------------------------------------
# Create and mistake items
# ---------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One (form, example) item of the teacher's, as a principle text, or why it was dropped."""

    text: str | None
    example: str | None
    reason: str | None = None


@dataclass
class Coverage:
    """Per category: principles kept, and the drops by reason, with the dropped examples."""

    kept: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)
    rejected: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (example, why)

    def drop(self, category: str | None, reason: str, why: str | None = None) -> None:
        key = str(category)
        self.dropped.setdefault(key, Counter())[reason] += 1
        if why is not None:
            self.rejected.setdefault(key, []).append((reason, why))

    def table(self, categories: list[str], cap: int) -> dict[str, dict[str, Any]]:
        return {
            c: {
                "kept": self.kept[c],
                "short": self.kept[c] < cap,
                "dropped": dict(sorted(self.dropped.get(c, Counter()).items())),
            }
            for c in categories
        }


def holds_json(teacher: ModelCaller) -> bool:
    """Whether the teacher's answers are held to the forms schema: a local backend that constrains
    chat answers (llama.cpp's grammar, vLLM). A server is only asked in the prompt: servers differ
    in the response_format they accept, and the answer is read forgivingly either way."""
    return "chat" in teacher.json_constrained and not teacher.remote


class Forms:
    """Create and mistake principles: the teacher's (form, example) items, each example cleaned
    and checked (the seeds' shape, not a copy of a seed, for a classification task labelled by
    the teacher as the category it is written for), then rendered as one principle each."""

    def __init__(self, task: Task, seeds: list[Example], s, seed: int, ask, dropped: Counter, as_json: bool):
        self.task, self.seeds, self.s, self.seed, self.ask, self.dropped = task, seeds, s, seed, ask, dropped
        self.as_json = as_json  # the teacher's backend holds chat answers to a schema
        self.noun = task.config.input_name
        self.shape = Shape.of(seeds, s.example_stretch)
        # what every form begins with (lead_forms), in the prompt and, held, in the schema
        self.lead = prompts.form_lead(self.noun, self.shape.questions) if s.lead_forms else None
        self.coverage = Coverage()
        self.refilled: dict[str, int] = {}  # principles added per category asked again
        self.labelled: dict[str, str | None] = {}  # example -> the label the teacher read in it
        self.label_check: dict[str, Any] | None = None  # how well the teacher reads labels (reads_labels)

    def _drop(self, category: str | None, reason: str, example: str | None = None, why: str | None = None):
        self.dropped[reason] += 1
        if category is not None:
            told = why or (self.shape.why(reason, example) if example else None)
            self.coverage.drop(category, reason, f"{told}: {prompts.trim(example, 160)}" if told else None)

    def ask_forms(
        self, level: str, requests: list[tuple[str, Messages]], n: int, categories: list[str | None]
    ) -> dict[str, list[Item]]:
        """Per request id: every item of the answer, usable (`text` set) or dropped (`reason`)."""
        s = self.s
        how = SamplingParams(
            temperature=s.temperature,
            top_p=1.0,
            max_tokens=max(s.max_tokens, 96 * n, self.shape.most_words * 4 * n),  # n items of form + example
            seed=self.seed,
            json_schema=prompts.forms_schema(n, self.lead) if self.as_json else None,
        )
        out = self.ask(level, requests, how)
        return {rid: self._read(out[rid], n, cat) for (rid, _), cat in zip(requests, categories, strict=True)}

    def _read(self, c: Completion, n: int, category: str | None) -> list[Item]:
        pairs = reading.read_forms(c.text)
        if pairs is None:  # no JSON: read it as a list, each line's quoted example (or itself, a bare one)
            s = self.s
            lines = reading.parse_list(
                c.text, s.min_chars, s.max_chars, self.dropped, c.finish_reason == "length"
            )
            pairs = [(ln, reading.quoted_example(ln) or (ln if ln.endswith("?") else None)) for ln in lines]
            items = [self._one(text, ex, category, raw=True) for text, ex in pairs[:n]]
        else:
            items = [self._one(form, ex, category) for form, ex in pairs[:n]]
        if not items:
            self.coverage.drop(category, "no_items")  # nothing to read in the answer
        return items

    def _one(self, form: str, example: str | None, category: str | None, raw: bool = False) -> Item:
        if example is None:
            return Item(form, None) if raw else Item(None, None, "no_example")
        ex = reading.clean_example(example, self.noun, self.shape.questions, self.task.labels or None)
        reason = None
        if ex is None:
            reason = "example_placeholder"
        elif any(reading.overlap(ex, x.input) > 0.8 for x in self.seeds):
            reason = "example_copies_seed"
        else:
            reason = self.shape.problem(ex)
            if reason == "example_too_long" and (cut := self.shape.cut(ex)) is not None:
                ex, reason = cut, None  # one instance, then more text: the instance is kept
                self.dropped["example_cut_to_length"] += 1
        if reason is not None:
            self._drop(category, reason, ex or example)
            return Item(None, ex or example, reason)
        if raw and form.strip().strip('"') != example:
            return Item(form, ex)
        return Item(reading.render(form, ex, self.noun, self.s.max_chars), ex)

    def per_mistake(
        self, requests: list[tuple[str, Messages]], labels: list[str], cap: int
    ) -> list[tuple[str, str]]:
        """(label, principle) for each mistake's one JSON item that passes the checks, kept with
        the label the student missed (`labels`, one per request); at most `cap` per label."""
        answers = self.ask_forms("error", requests, 1, list(labels))
        got: dict[str, list[Item]] = {}
        for (rid, _), label in zip(requests, labels, strict=True):
            got.setdefault(label, []).extend(answers[rid])
        return [(label, text) for label, texts in self.keep(got, cap, count=False).items() for text in texts]

    def read_labels(self, named: dict[str, str]) -> dict[str, str | None]:
        """The label the teacher reads in each text (request id -> text), greedily, shown the
        labels' meanings and the seeds: one check call for them all."""
        greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16, seed=self.seed)
        prompt = prompts.label_prompt
        reqs = [(rid, prompt(self.task, self.seeds, text, self.s)) for rid, text in named.items()]
        out = self.ask("check", reqs, greedy) if reqs else {}
        return {rid: self.task.extract(out[rid].text) for rid in named}

    def reads_labels(self) -> bool:
        """Whether the teacher's label check is used: it labels the seeds its prompt does not show
        and must beat chance (one-sided binomial test at TEST_LEVEL) where their number could show
        it, so that a teacher that cannot tell the labels apart drops no example
        (docs/defaults.md#principles). Asked once; `label_check` holds what it found."""
        if self.label_check is None:
            labels, held = self.task.labels, self.seeds[self.s.seeds_shown :]
            chance = 1 / len(labels)
            if chance ** len(held) >= TEST_LEVEL:  # even all right could be luck: nothing to test
                self.label_check = {"held_seeds": len(held), "used": True, "tested": False}
                return True
            start = self.s.seeds_shown
            read = self.read_labels(
                {f"principles/{self.seed}/check-seed/{i}": x.input for i, x in enumerate(held, start=start)}
            )
            right = sum(got == x.answer for got, x in zip(read.values(), held, strict=True))
            p = binomial_tail(right, len(held), chance)
            self.label_check = {
                "held_seeds": len(held), "right": right, "chance": round(chance, 3), "p": round(p, 4),
                "used": p < TEST_LEVEL, "tested": True,
            }  # fmt: skip
        return self.label_check["used"]

    def keep(
        self, got: dict[str, list[Item]], cap: int, taken: set[str] | None = None, count: bool = True
    ) -> dict[str, list[str]]:
        """Per category: its usable principles whose example is new (not one kept already, nor one
        of `taken`) and, for a classification task whose labels the teacher reads (reads_labels),
        labelled as that category by the teacher; at most `cap`. `count`: these are the
        category's create principles (coverage.kept)."""
        task = self.task
        check = task.fixed_categories() is not None and self.reads_labels()
        labelled = self.labelled
        usable = [i for items in got.values() for i in items if i.text is not None]
        if check:  # each example labelled once
            examples = sorted({i.example for i in usable if i.example is not None} - set(labelled))
            rid = {ex: f"principles/{self.seed}/check/{text_hash(ex)[:16]}" for ex in examples}
            read = self.read_labels({rid[ex]: ex for ex in examples})
            labelled.update({ex: read[rid[ex]] for ex in examples})
        kept: dict[str, list[str]] = {}
        seen = {" ".join(sorted(reading.words_of(ex))) for ex in taken or ()}
        for name, items in got.items():
            kept[name] = []
            for item in items:
                if item.text is None:
                    continue
                ex = item.example
                key = None if ex is None else " ".join(sorted(reading.words_of(ex)))
                if ex is not None and check and labelled.get(ex) != name:
                    other = labelled.get(ex)
                    told = (
                        f"its {task.category_word} is '{other}', not '{name}'" if other else "no label read"
                    )
                    self._drop(name, "example_off_label", ex, told)
                elif key is not None and key in seen:
                    self._drop(name, "duplicate", ex)
                elif len(kept[name]) >= cap:
                    self.dropped["over_cap"] += 1
                else:
                    kept[name].append(item.text)
                    if key is not None:
                        seen.add(key)
            if count:
                self.coverage.kept[name] = len(kept[name])
        return kept

    def refill(
        self, categories: dict[str, str], members: dict[str, list[Example]], kept: dict[str, list[str]],
        create: dict[str, list[Item]], n: int,
    ) -> dict[str, list[str]]:  # fmt: skip
        """Each category left with fewer than per_category create principles, asked once more,
        shown the examples it wrote that were dropped and why; its principles kept before, then
        the new ones that pass."""
        cap = self.s.per_category
        short = [c for c in categories if len(kept[c]) < cap]
        if not short:
            return kept
        rid = {c: f"principles/{self.seed}/category/{c}/refill" for c in short}
        reqs = [
            (rid[c], prompts.refill_prompt(
                self.task, c, categories[c], members.get(c, []), n, self.s,
                [why for _, why in self.coverage.rejected.get(c, [])], self.shape, self.lead))
            for c in short
        ]  # fmt: skip
        again = self.ask_forms("category", reqs, n, short)
        before = {c: [i for i in create[c] if i.text in kept[c]] for c in short}
        taken = {i.example for c, items in create.items() if c not in short
                 for i in items if i.example and i.text in kept[c]}  # fmt: skip
        more = self.keep({c: before[c] + again[rid[c]] for c in short}, cap, taken)
        self.refilled = {c: len(more[c]) - len(kept[c]) for c in short}
        return {**kept, **more}
