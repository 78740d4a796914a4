"""Principles: teacher prompts and parsing (scripted teacher), error level, person-written files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from psilm.durable import JsonlLog
from psilm.errors import ConfigError, DataError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.principles import PrinciplesSettings
from psilm.stages.principles.file import load_principles_file
from psilm.stages.principles.mistakes import generated_answers
from psilm.stages.principles.reading import one_sentence, parse_list
from psilm.stages.principles.write import write_principles
from psilm.tasks import load_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "principles"


class Scripted:
    """A Backend whose reply is a function of the prompt text; it records every prompt."""

    def __init__(self, reply: Callable[[str, SamplingParams], str], model_id: str = "scripted"):
        self.reply, self.model_id, self.prompts = reply, model_id, []

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        out = []
        for m in prompts:
            prompt = "\n".join(msg["content"] for msg in m)  # system + user, as a template would
            self.prompts.append((prompt, params))
            text = self.reply(prompt, params)
            out.append(Completion(text, len(prompt.split()), len(text.split()), "stop"))
        return out

    def close(self) -> None:
        pass


def caller(tmp_path: Path, backend: Scripted, role: str) -> ModelCaller:
    return ModelCaller(role, backend.model_id, lambda: backend, JsonlLog(tmp_path / f"{role}.jsonl"))


@pytest.fixture
def trec():
    return load_task("trec")


@pytest.fixture
def trec_seeds(trec):
    rows = [
        ("What does NASA stand for ?", "abbreviation"),
        ("Why is the sky blue ?", "description"),
        ("What kind of tree is a maple ?", "entity"),
        ("Who wrote Hamlet ?", "human"),
        ("Where is Lake Titicaca ?", "location"),
        ("How far is the Moon ?", "numeric"),
        ("When did the Titanic sink ?", "numeric"),
    ]
    return [trec.example({"text": t, "label_name": lbl}) for t, lbl in rows]


def test_task_and_category_levels_parse_numbered_lists(tmp_path, trec, trec_seeds):
    def reply(prompt: str, _) -> str:
        return (
            "Here are the principles:\n1. **Ask one short factual question per input.**\n"
            "2) Keep the question under twenty words long.\n- Use a question mark at the end.\n"
            "4. Never copy an example word for word."
        )

    teacher = Scripted(reply, "big-teacher")
    s = PrinciplesSettings(levels=["task", "category"], per_category=2, task_count=3)
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"), s, seed=7)

    assert out["teacher"] == "big-teacher"
    assert out["categories"] == {lb: trec.config.label_descriptions[lb] for lb in trec.labels}
    task_level = [p for p in out["principles"] if p["level"] == "task"]
    assert [p["id"] for p in task_level] == ["t1", "t2", "t3"]  # capped at task_count
    assert task_level[0]["text"] == "Ask one short factual question per input."
    assert {p["source"] for p in out["principles"]} == {"teacher:big-teacher"}
    for lb in trec.labels:  # per category: per_category create; no solving advice (TREC's
        mine = [p for p in out["principles"] if p["category"] == lb]  # generator does not solve)
        assert [p["use"] for p in mine] == ["create", "create"]
        assert [p["id"] for p in mine] == [f"c-{lb}-{k}" for k in (1, 2)]
    assert not any("solving" in c for c, _ in teacher.prompts)
    assert out["dropped"]["heading"] == 1 + 6  # one heading per response
    assert out["dropped"]["over_cap"] == 1 + 6 * 2  # task: 4 for 3; create: 4 lines read for 2
    assert len(out["prompts"]) == 1 + 6 and all(p["response"] for p in out["prompts"])
    # the label's own seeds are shown in its create prompt, which asks for per_category + extra_forms
    numeric = next(c for c, _ in teacher.prompts if "whose label is 'numeric'" in c)
    assert "How far is the Moon" in numeric and "Who wrote Hamlet" not in numeric.split("Examples")[1]
    assert "Write 4 new questions" in numeric and '"example"' in numeric


def test_a_task_rule_about_some_labels_is_dropped(tmp_path):
    """Task rules head every generation prompt, so one that names some labels but not all goes
    (the 1.5B teacher wrote "Reviews must not contain any negative comments" on SST-2); one that
    names every label, or none, stays. Off: all stay."""
    sst2 = load_task("sst2")
    seeds = [
        sst2.example({"text": t, "label": lb})
        for t, lb in [("a gem .", "positive"), ("a mess .", "negative")]
    ]
    rules = [
        "Every review must express a clear opinion, either positive or negative.",
        "Reviews must not contain any negative comments about the film.",
        "Keep each review to one sentence.",
        "Write positively about the actors.",
    ]
    teacher = Scripted(lambda p, _: "\n".join(f"{k}. {r}" for k, r in enumerate(rules, start=1)))
    s = PrinciplesSettings(levels=["task"], task_count=4)
    out = write_principles(sst2, seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    assert [p["text"] for p in out["principles"]] == [rules[0], rules[2]]
    assert out["dropped"]["task_rule_names_a_label"] == 2 and len(out["prompts"]) == 1
    off = PrinciplesSettings(levels=["task"], task_count=4, check_task_rules=False)
    out = write_principles(sst2, seeds, caller(tmp_path, Scripted(teacher.reply), "t2"), off, seed=0)
    assert [p["text"] for p in out["principles"]] == rules


def test_teacher_garbage_is_counted_and_dropped(tmp_path, trec, trec_seeds):
    garbage = iter(
        [
            "",
            "1.\n2.\n\n",
            "ok\n" + "x" * 500,
            "Sure!\n1. A fine principle about questions.\n2. A fine principle about questions!",
            "\x00\x01 ??? ###",
        ]
        * 10
    )
    teacher = Scripted(lambda p, _: next(garbage))
    s = PrinciplesSettings(levels=["task", "category"])
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    d = out["dropped"]
    assert d["no_items"] >= 3 and d["empty"] >= 2 and d["too_short"] >= 2 and d["too_long"] >= 1
    assert d["duplicate"] >= 1 and d["preamble"] >= 1
    assert all(len(p["text"]) >= s.min_chars for p in out["principles"])


def test_parse_list_handles_inline_numbering_and_bullets():
    from collections import Counter

    dropped: Counter = Counter()
    text = "1. Ask about one thing. 2. Keep it short and clear. 3. End with a question mark.\n* Done"
    items = parse_list(text, 8, 100, dropped)
    assert items == ["Ask about one thing.", "Keep it short and clear.", "End with a question mark."]
    assert dropped == {"too_short": 1}
    assert parse_list(None, 8, 100, dropped) == [] and dropped["no_items"] == 1
    dropped.clear()
    cut = "1. When creating:\n2. Keep each question short.\n3. Ask about one thing and"
    assert parse_list(cut, 8, 100, dropped, truncated=True) == ["Keep each question short."]
    assert dropped == {"heading": 1, "truncated": 1}


def test_non_classification_categories_from_the_teacher(tmp_path):
    task = load_task("gsm8k")
    seeds = [
        task.example(
            {
                "question": f"Sam buys {i} pens at $2 each. How much does he pay?",
                "answer": f"{i}*2={2 * i}\n#### {2 * i}",
            }
        )
        for i in range(1, 5)
    ]

    def reply(prompt: str, _) -> str:
        if "sub-types" in prompt:
            return (
                "1. Money Problems: buying things at a price (examples 1, 2)\n"
                "2. rates: speed times time\nnot a category line\n1. money problems: again"
            )
        return "1. Use whole numbers that divide evenly.\n2. Ask exactly one question at the end."

    teacher = Scripted(reply)
    out = write_principles(
        task, seeds, caller(tmp_path, teacher, "teacher"), PrinciplesSettings(levels=["category"]), seed=0
    )
    assert out["categories"] == {"money-problems": "buying things at a price", "rates": "speed times time"}
    assert out["dropped"]["not_a_category"] == 1 and out["dropped"]["duplicate"] >= 1
    cats = {p["category"] for p in out["principles"]}
    assert cats == {"money-problems", "rates"}
    money = next(c for c, _ in teacher.prompts if "'money-problems'" in c)
    assert "Sam buys 1 pens" in money and "Sam buys 3 pens" not in money


def test_error_level_writes_principles_only_from_mistakes(tmp_path, trec, trec_seeds):
    wrong = {"Who wrote Hamlet ?", "How far is the Moon ?"}

    def student_reply(prompt: str, params) -> str:
        assert params.temperature == 0  # greedy
        question = prompt.rsplit("Question: ", 1)[1]
        gold = next(s.answer for s in trec_seeds if s.input == question)
        return "entity" if question in wrong else gold

    def teacher_reply(prompt: str, _) -> str:
        if "Merge them" in prompt:
            return "1. Decide by the type of the answer, not the topic.\n2. Who asks for a human."
        return "Questions starting with who ask for a person, so the label is human."

    student, teacher = Scripted(student_reply, "tiny"), Scripted(teacher_reply, "big")
    s = PrinciplesSettings(levels=["error"], condense_to=5)
    out = write_principles(
        trec,
        trec_seeds,
        caller(tmp_path, teacher, "teacher"),
        s,
        seed=3,
        student=generated_answers(trec, caller(tmp_path, student, "student"), s, seed=3),
    )
    assert len(student.prompts) == len(trec_seeds)
    mistake_prompts = [c for c, _ in teacher.prompts if "A small model was given" in c]
    assert len(mistake_prompts) == 2
    assert any("Who wrote Hamlet" in c for c in mistake_prompts)
    assert not any("NASA" in c for c in mistake_prompts)
    assert out["error"]["mistakes"] == 2 and out["error"]["student"] == "tiny"
    assert [p["id"] for p in out["principles"]] == ["e1", "e2"]
    # classification: one principle per mistake, kept with the label the student missed (so it
    # reaches that label's generation prompts), not merged into label-less ones
    assert not any("Merge them" in c for c, _ in teacher.prompts)
    assert {p["category"] for p in out["principles"]} == {"human", "numeric"}
    assert all(p["level"] == "error" for p in out["principles"])
    assert "new training questions" in mistake_prompts[0] and '{"items": [{"example"' in mistake_prompts[0]


def items_json(*pairs: tuple[str, str]) -> str:
    return json.dumps({"items": [{"example": ex, "form": form} for ex, form in pairs]})


def test_create_principles_are_checked_examples_in_a_persons_shape(tmp_path, trec, trec_seeds):
    """The create prompt asks for JSON items (example, then form); each example is cleaned and
    checked: a placeholder, a statement where the seeds are questions, a copy of a seed, and one the
    teacher labels as another label (shown the labels' meanings and the seeds) go."""

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:  # the check
            assert "abbreviation (asks what" in prompt and "Who wrote Hamlet ?" in prompt
            assert prompt.endswith("Which label does this question have? Reply with the label only.")
            return "location" if "capital of France" in prompt else "abbreviation"
        if "whose label is 'abbreviation'" in prompt:
            assert "not description, entity, human, location, numeric" in prompt
            return items_json(
                (
                    "What does NASA stand for ? It stands for National Aeronautics.",
                    "asks what an acronym stands for",
                ),
                ("What is the capital of France?", "asks for a capital"),
                ("<a new question>", "placeholder"),
                ("HTML stands for HyperText Markup Language.", "a statement"),
                ("What does NASA stand for?", "abbreviation"),  # the seed, again
                ("What does CPU stand for?", "abbreviation"),
            )
        return items_json()

    teacher = Scripted(reply)
    settings = PrinciplesSettings(levels=["category"], per_category=2, extra_forms=4, refill=False)
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"), settings, seed=0)
    abbr = [p["text"] for p in out["principles"] if p["category"] == "abbreviation"]
    assert abbr == ['Write a question like "What does CPU stand for?".']
    d = out["dropped"]
    assert d["example_off_label"] == 1 and d["example_placeholder"] == 1
    assert d["example_not_a_question"] == 1 and d["example_copies_seed"] == 2
    checked = [str(p["messages"]) for p in out["prompts"] if p["level"] == "check"]
    assert len(checked) == 2 and any("capital of France" in c for c in checked)


@pytest.mark.parametrize("refill", [False, True])
def test_refill_asks_a_category_the_check_left_short_again_naming_its_off_label_examples(
    tmp_path, trec, trec_seeds, refill
):
    """principles.refill: abbreviation keeps one of its two examples (the other reads as location);
    asked again, shown that one and the label it read as, the teacher gives one new example and a
    copy of the kept one: the new one is kept, the copy dropped. Off: one principle, no second ask."""

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:  # the check
            return "location" if "capital of France" in prompt else "abbreviation"
        if "whose label is 'abbreviation'" in prompt and "could not be used" in prompt:
            assert "These questions were written for 'abbreviation' but could not be used:" in prompt
            assert "- its label is 'location', not 'abbreviation': What is the capital of France?" in prompt
            assert prompt.index("could not be used") < prompt.index("Write 2 new questions whose label is")
            return items_json(("What does CPU stand for?", "a copy"), ("What does GPU stand for?", "new"))
        if "whose label is 'abbreviation'" in prompt:
            return items_json(("What does CPU stand for?", "x"), ("What is the capital of France?", "y"))
        return items_json()

    teacher = Scripted(reply)
    settings = PrinciplesSettings(levels=["category"], per_category=2, extra_forms=0, refill=refill)
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"), settings, seed=0)
    abbr = [p["text"] for p in out["principles"] if p["category"] == "abbreviation"]
    asked_again = [p for p, _ in teacher.prompts if "could not be used" in p]
    if not refill:
        assert abbr == ['Write a question like "What does CPU stand for?".'] and not asked_again
        assert "refilled" not in out
        return
    assert abbr == ['Write a question like "What does CPU stand for?".',
                    'Write a question like "What does GPU stand for?".']  # fmt: skip
    assert len(asked_again) == 1  # the other short categories had no example to show: asked plainly
    assert out["refilled"] == {lb: int(lb == "abbreviation") for lb in trec.labels}
    assert out["dropped"]["duplicate"] == 1 and out["dropped"]["example_off_label"] == 1


def test_a_form_worth_keeping_leads_the_principle(tmp_path, trec, trec_seeds):
    from psilm.stages.principles.reading import render

    assert render("asks what an acronym stands for", "What does CPU stand for?", "question") == (
        'Ask what an acronym stands for, for example "What does CPU stand for?".'
    )
    # a form with its own example keeps one example: the checked one
    assert render(
        'Ask what an acronym stands for, for example "NASA"', "What does CPU stand for?", "question"
    ) == ('Ask what an acronym stands for, for example "What does CPU stand for?".')
    for vague in ("abbreviation", "What is", "What does CPU stand for?", "<what the question does>", ""):
        assert (
            render(vague, "What does CPU stand for?", "question")
            == 'Write a question like "What does CPU stand for?".'
        )


def test_forms_are_read_from_cut_or_odd_json(tmp_path, trec, trec_seeds):
    from psilm.stages.principles.reading import read_forms

    cut = '{"items": [{"example": "Who \\"wrote\\" it?", "form": "asks who"}, {"example": "What is'
    assert read_forms(cut) == [("asks who", 'Who "wrote" it?')]
    assert read_forms('{"items": [{"form": "first", "example": "Where is Rome?"}, {"example": "Why?"}]}') == [
        ("first", "Where is Rome?"),
        ("", "Why?"),
    ]
    for junk in (None, "", "1. a list", '{"items": []}', '{"example": 3}'):
        assert read_forms(junk) is None


def test_the_forms_schema_goes_to_a_teacher_that_holds_answers_to_it(tmp_path, trec, trec_seeds):
    """A backend that constrains chat answers gets the schema; a list answer from one that does not
    is read as before (a line's quoted example, or a bare question as its own example)."""
    seen: list = []

    def reply(prompt: str, params) -> str:
        seen.append(params.json_schema)
        if params.temperature == 0:
            return "abbreviation"
        return (
            '1. Ask what it stands for, for example "What does CPU stand for?".\n2. What does RAM stand for?'
        )

    backend = Scripted(reply)
    held = ModelCaller(
        "teacher", "t", lambda: backend, JsonlLog(tmp_path / "t.jsonl"), json_constrained=("chat",)
    )
    write_principles(trec, trec_seeds, held, PrinciplesSettings(levels=["category"]), seed=0)
    schemas = [x for x in seen if x is not None]
    # six create prompts, then five asked again: the check reads every example as abbreviation
    assert len(schemas) == 6 + 5 and schemas[0]["properties"]["items"]["minItems"] == 4
    seen.clear()  # a server is asked in the prompt only: servers differ in the response_format they take
    served = ModelCaller(
        "teacher",
        "t",
        lambda: backend,
        JsonlLog(tmp_path / "s.jsonl"),
        json_constrained=("chat",),
        remote=True,
    )
    write_principles(trec, trec_seeds, served, PrinciplesSettings(levels=["category"]), seed=0)
    assert seen and all(x is None for x in seen)
    seen.clear()
    out = write_principles(
        trec,
        trec_seeds,
        caller(tmp_path, Scripted(reply), "plain"),
        PrinciplesSettings(levels=["category"]),
        seed=0,
    )
    assert seen and all(x is None for x in seen)
    abbr = [p["text"] for p in out["principles"] if p["category"] == "abbreviation"]
    assert abbr == [
        'Ask what it stands for, for example "What does CPU stand for?".',
        'Write a question like "What does RAM stand for?".',
    ]


def test_lead_forms_ask_for_a_form_that_begins_with_the_lead_and_hold_it(tmp_path, trec, trec_seeds):
    """principles.lead_forms: the create prompt asks for a form beginning with "Ask" (questions) and
    a constraining backend gets a schema whose form must begin so; the JSON items read as before."""
    import re

    from llama_cpp.llama_grammar import LlamaGrammar

    from psilm.stages.principles.prompts import form_lead, forms_schema

    seen: list = []

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:
            return "abbreviation"
        seen.append((prompt, params.json_schema))
        return items_json(("What does CPU stand for?", "Ask what an acronym stands for"))

    backend = Scripted(reply)
    held = ModelCaller(
        "teacher", "t", lambda: backend, JsonlLog(tmp_path / "t.jsonl"), json_constrained=("chat",)
    )
    s = PrinciplesSettings(levels=["category"], lead_forms=True, per_category=1, extra_forms=0)
    out = write_principles(trec, trec_seeds, held, s, seed=0)
    prompt, schema = seen[0]
    assert '"form", beginning with "Ask", says what it asks for in general words' in prompt
    pattern = schema["properties"]["items"]["items"]["properties"]["form"]["pattern"]
    assert re.match(pattern, "Ask what an acronym stands for") and not re.match(pattern, "abbreviation")
    assert not re.match(pattern, 'Ask what "NASA" means')  # no quotes: the example is quoted after it
    LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)  # llama.cpp can hold it
    abbr = [p["text"] for p in out["principles"] if p["category"] == "abbreviation"]
    assert abbr == ['Ask what an acronym stands for, for example "What does CPU stand for?".']
    review = forms_schema(1, form_lead("movie review", questions=False))
    assert re.match(
        review["properties"]["items"]["items"]["properties"]["form"]["pattern"],
        "Write a movie review that praises the acting",
    )
    seen.clear()  # off (the default): no lead asked for
    write_principles(trec, trec_seeds, held, PrinciplesSettings(levels=["category"]), seed=0)
    assert "beginning with" not in seen[0][0] and "pattern" not in str(seen[0][1])


def test_error_level_without_mistakes_says_so(tmp_path, trec, trec_seeds):
    def student_reply(prompt: str, _) -> str:
        q = prompt.rsplit("Question: ", 1)[1]
        return next(s.answer for s in trec_seeds if s.input == q)

    teacher = Scripted(lambda p, _: "1. never asked")
    out = write_principles(
        trec,
        trec_seeds,
        caller(tmp_path, teacher, "teacher"),
        PrinciplesSettings(levels=["error"]),
        seed=0,
        student=generated_answers(
            trec, caller(tmp_path, Scripted(student_reply), "student"), PrinciplesSettings(), 0
        ),
    )
    assert out["principles"] == [] and teacher.prompts == []
    assert out["error"]["mistakes"] == 0
    assert any("no error-level principles" in n for n in out["notes"])


def test_error_level_needs_a_student(tmp_path, trec, trec_seeds):
    with pytest.raises(ConfigError, match="principles.levels"):
        write_principles(
            trec,
            trec_seeds,
            caller(tmp_path, Scripted(lambda p, _: ""), "teacher"),
            PrinciplesSettings(),
            seed=0,
        )


def test_rerun_asks_the_teacher_nothing(tmp_path, trec, trec_seeds):
    teacher = Scripted(lambda p, _: "1. A principle long enough to keep.")
    s = PrinciplesSettings(levels=["task", "category"])
    first = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"), s, seed=1)
    again = caller(tmp_path, teacher, "teacher")
    assert write_principles(trec, trec_seeds, again, s, seed=1) == first
    assert again.new_calls == 0


# --- person-written files ----------------------------------------------------------------------
def test_person_files_for_builtin_tasks_load():
    for name in ("sst2", "trec", "gsm8k"):
        task = load_task(name)
        out = load_principles_file(CONFIGS / f"{name}.yaml", task)
        assert out["teacher"] is None and out["principles"]
        assert {p["source"] for p in out["principles"]} == {f"person:{name}.yaml"}
        created = {p["category"] for p in out["principles"] if p["use"] == "create"}
        assert created == set(task.labels or out["categories"])  # every category can be written
        assert "written by a person" in (CONFIGS / f"{name}.yaml").read_text().lower()


def test_principles_file_json_and_yaml_shapes(tmp_path, trec):
    entries = [
        {"level": "task", "text": "One short question."},
        {"level": "category", "category": "human", "use": "create", "text": "Ask who."},
        {"level": "category", "category": "human", "text": "Who -> human."},
        {"level": "error", "text": "Type of answer, not topic.", "id": "x9", "source": "t"},
    ]
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"principles": entries}))
    out = load_principles_file(js, trec)
    assert [p["id"] for p in out["principles"]] == ["t1", "c-human-1", "c-human-2", "e1"]
    assert out["principles"][2]["use"] == "both" and out["principles"][0]["category"] is None
    ym = tmp_path / "p.yaml"
    ym.write_text("- level: task\n  text: |\n    One short\n    question.\n")
    assert load_principles_file(ym, trec)["principles"][0]["text"] == "One short question."


def test_principles_file_keeps_only_the_asked_levels(trec):
    only = load_principles_file(CONFIGS / "trec.yaml", trec, levels=["category"])["principles"]
    assert only and {p["level"] for p in only} == {"category"}
    assert only[0]["id"] == "c-abbreviation-1"  # ids count within what is kept
    with pytest.raises(DataError, match=r"trec.yaml: no principles at principles.levels \['error'\]"):
        load_principles_file(CONFIGS / "trec.yaml", trec, levels=["error"])


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"level": "global", "text": "x"}, "unknown level 'global'"),
        ({"level": "category", "category": "animal", "text": "x"}, "'animal' is not a label"),
        ({"level": "task", "text": "  "}, "`text` is empty"),
        ({"level": "category", "text": "x"}, "needs a `category`"),
        ({"level": "task", "category": "human", "text": "x"}, "takes no category"),
        ({"level": "task", "use": "write", "text": "x"}, "unknown use 'write'"),
        ({"level": "task", "txt": "x"}, "unknown key"),
        ("just a string", "expected a mapping"),
    ],
)
def test_principles_file_errors_name_file_and_entry(tmp_path, trec, entry, message):
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps([{"level": "task", "text": "fine"}, entry]))
    with pytest.raises(DataError, match=message) as e:
        load_principles_file(path, trec)
    assert "mine.yaml: principle #2" in str(e.value)


def test_principles_file_unreadable(tmp_path, trec):
    with pytest.raises(DataError, match="not found"):
        load_principles_file(tmp_path / "none.yaml", trec)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- level: task\n  text: [unclosed\n")
    with pytest.raises(DataError, match=r"bad.yaml:\d+: invalid YAML"):
        load_principles_file(bad, trec)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(DataError, match="expected a list"):
        load_principles_file(empty, trec)


def test_round_mistake_principles_are_checked_examples_of_the_missed_label(tmp_path, trec, trec_seeds):
    """A round's mistakes become principles as round 1's error level writes them: one JSON example
    per mistake, kept with the missed label when the teacher reads it as that label."""
    from psilm.stages.principles.mistakes import mistake_principles

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:
            return "human" if "Who" in prompt.rsplit("Question:", 1)[1] else "entity"
        if "Who built the pyramids" in prompt:
            return items_json(("Who painted the Mona Lisa?", "asks for the person who made something"))
        return items_json(("What colour is the sky?", "asks for a colour"))

    def mistake(row: int, text: str, gold: str) -> dict:
        return {
            "row": row,
            "input": text,
            "output": gold,
            "gold": gold,
            "predicted": "entity",
            "category": gold,
        }

    mistakes = [mistake(3, "Who built the pyramids ?", "human"), mistake(5, "How far is Mars ?", "numeric")]
    teacher = caller(tmp_path, Scripted(reply), "teacher")
    added, info = mistake_principles(trec, mistakes, teacher, trec_seeds, PrinciplesSettings(), seed=0, rnd=2)
    assert [(p["id"], p["category"], p["round"], p["level"]) for p in added] == [
        ("r2-e1", "human", 2, "error")
    ]
    assert (
        added[0]["text"] == 'Ask for the person who made something, for example "Who painted the Mona Lisa?".'
    )
    assert info == {"mistakes_sent": 2, "dropped": {"example_off_label": 1}}


# --- limits from the task's own data (a task whose inputs are paragraphs) -------------------------
@pytest.fixture
def news():
    return load_task(
        {
            "name": "news",
            "kind": "classification",
            "description": "Classify a news article by its topic.",
            "input_name": "news article",
            "input_field": "text",
            "target_field": "label",
            "labels": ["sports", "world"],
        }
    )


def _article(topic: str, n: int) -> str:
    """A headline, then n words of story in words of the topic's own (AG News' shape: 'Title.
    Description'); two topics share almost no words, so neither reads as a copy of the other."""
    import random

    rng = random.Random(topic)
    vocab = [
        "".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(rng.randint(5, 9))) for _ in range(60)
    ]
    return (
        f"{topic.title()} news this week. "
        + " ".join(rng.choice(vocab) for _ in range(n - 4)).capitalize()
        + "."
    )


@pytest.fixture
def news_seeds(news):
    rows = [(_article("match", 30), "sports"), (_article("league", 40), "sports"),
            (_article("summit", 28), "world"), (_article("election", 46), "world")]  # fmt: skip
    return [news.example({"text": t, "label": lb}) for t, lb in rows]


def test_an_example_is_held_to_the_seeds_length_not_to_a_constant(tmp_path, news, news_seeds):
    """Seeds of 28-46 words: a 40-word example (over the old 300-character cap) is kept, a 200-word
    one is dropped as too long and a 3-word one as too short; the create prompt names the range."""
    long_ok = "Striker scores twice " + _article("cup final", 38)
    too_long = _article("season", 200)

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:
            return "sports" if "Striker" in prompt or "season" in prompt else "world"
        if "whose label is 'sports'" in prompt:
            return items_json((long_ok, "a match report"), (too_long, "x"), ("Goal!", "x"))
        return items_json((_article("ceasefire talks", 35), "a report on talks between states"))

    teacher = Scripted(reply)
    s = PrinciplesSettings(levels=["category"], per_category=1, extra_forms=2, refill=False)
    out = write_principles(news, news_seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    assert len(long_ok) > 300
    sports = [p["text"] for p in out["principles"] if p["category"] == "sports"]
    assert sports == [f'A match report, for example "{long_ok}".']
    assert out["coverage"]["sports"] == {
        "kept": 1,
        "short": False,
        "dropped": {"example_too_long": 1, "example_too_short": 1},
    }
    create = next(c for c, _ in teacher.prompts if "whose label is 'sports'" in c)
    assert "as long as they are (28 to 46 words)" in create


@pytest.mark.parametrize("reads", [True, False])
def test_the_label_check_is_used_only_where_the_teacher_reads_the_held_out_seeds(tmp_path, news, reads):
    """12 seeds, 4 shown in each prompt: the teacher first labels the other 8. Reading them right
    (8 of 8), its check drops an example it reads as the other label; reading every one as 'world'
    (4 of 8, chance for two labels), its check is not used, the run says so and keeps the example."""
    topics = {"sports": ["match", "league", "derby", "cup", "final", "race"],
              "world": ["summit", "election", "treaty", "embassy", "border", "envoy"]}  # fmt: skip
    rows = [(_article(t, 30 + i), lb) for i in range(6) for lb, ts in topics.items() for t in [ts[i]]]
    seeds = [news.example({"text": t, "label": lb}) for t, lb in rows]
    truth = {x.input: x.answer for x in seeds}

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:  # a check: the example is the prompt's last input
            if not reads:
                return "world"
            shown = prompt.rsplit("News article: ", 1)[1].split("\nWhich label")[0]
            return truth.get(shown, "world")  # the teacher's examples read as world
        return items_json((_article("penalty shootout", 33), "a match report"))

    teacher = Scripted(reply)
    s = PrinciplesSettings(
        levels=["category"], per_category=1, extra_forms=0, refill=False, seeds_shown=4, describe_labels=False
    )
    out = write_principles(news, seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    check = out["label_check"]
    assert check["held_seeds"] == 8 and check["tested"] and check["used"] is reads
    assert check["right"] == (8 if reads else 4)
    kept = [p for p in out["principles"] if p["category"] == "sports"]
    if reads:
        assert not kept and out["coverage"]["sports"]["dropped"] == {"example_off_label": 1}
    else:
        assert len(kept) == 1 and "label check was not used: it labelled 4 of the 8 seeds" in out["warning"]
        assert out["dropped"].get("example_off_label") is None


def test_too_few_held_out_seeds_to_test_the_label_check_keep_it(tmp_path, news, news_seeds):
    """4 seeds, all shown: nothing to test the check on, so it is used as it is (not tested)."""
    teacher = Scripted(lambda prompt, params: "world" if params.temperature == 0 else items_json(
        (_article("cup match", 33), "a match report")))  # fmt: skip
    s = PrinciplesSettings(levels=["category"], per_category=1, extra_forms=0, refill=False)
    out = write_principles(news, news_seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    assert out["label_check"] == {"held_seeds": 0, "used": True, "tested": False}
    assert out["coverage"]["sports"]["dropped"] == {"example_off_label": 1}


def test_a_label_left_short_is_asked_again_told_why_then_named(tmp_path, news, news_seeds):
    """Every example for 'world' is too long: the teacher is asked once more, shown them with why;
    still short, the label is named in the warning with its reasons, and the coverage says so."""

    def reply(prompt: str, params) -> str:
        if params.temperature == 0:
            return "world" if "summit talks" in prompt else "sports"
        if "whose label is 'world'" in prompt:
            return items_json(
                (_article("summit talks", 150), "a report"), (_article("summit talks", 160), "b")
            )
        return items_json(
            (_article("cup match", 33), "a match report"), (_article("derby", 36), "a derby report")
        )

    teacher = Scripted(reply)
    s = PrinciplesSettings(levels=["category"], per_category=2, extra_forms=0)
    out = write_principles(news, news_seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    again = [c for c, _ in teacher.prompts if "could not be used" in c]
    assert len(again) == 1 and "whose label is 'world'" in again[0]
    assert "- too long at 151 words; the examples have 28 to 46 words: Summit Talks news" in again[0]
    assert out["coverage"]["world"]["kept"] == 0 and out["coverage"]["world"]["short"]
    assert out["coverage"]["sports"] == {"kept": 2, "short": False, "dropped": {}}
    assert "1 label(s) kept fewer than 2 category principles" in out["warning"]
    assert "world 0 of 2 (dropped: 4 too long)" in out["warning"]


@pytest.mark.parametrize(
    "rule, reason",
    [
        ("The article should be between 500 and 1500 words long.", "task_rule_seeds_break_length"),
        ("Each article must be a single sentence.", "task_rule_seeds_break_length"),
        ("Keep every article under 20 words.", "task_rule_seeds_break_length"),
        ("The article must be phrased as a question.", "task_rule_seeds_break_form"),
        ("Do not include any numbers in the article.", None),
        ("Keep every article under 60 words.", None),
        ("The article must not contain more than 60 words.", None),  # a highest length, not a lowest
        ("The article must not contain more than 20 words.", "task_rule_seeds_break_length"),
        ("The article should not be shorter than 40 words.", "task_rule_seeds_break_length"),
        ("Write about one event, in plain English.", None),
        ("A world article must not mention sport.", "task_rule_names_a_label"),
    ],
)
def test_a_task_rule_the_seeds_break_is_dropped(tmp_path, news, news_seeds, rule, reason):
    teacher = Scripted(lambda p, _: f"1. {rule}")
    out = write_principles(news, news_seeds, caller(tmp_path, teacher, "teacher"),
                           PrinciplesSettings(levels=["task"]), seed=0)  # fmt: skip
    if reason is None:
        assert [p["text"] for p in out["principles"]] == [rule] and out["rules_dropped"] == []
    else:
        assert out["principles"] == [] and out["rules_dropped"] == [{"rule": rule, "reason": reason}]
        assert out["dropped"][reason] == 1


def test_answers_with_nothing_to_read_are_not_mistakes(tmp_path, trec, trec_seeds):
    """An unread answer (None) is no mistake of content: with one wrong answer and the rest unread,
    only the wrong one reaches the teacher; with every answer unread the level is skipped, saying why."""
    from psilm.stages.principles.mistakes import StudentAnswers

    def teacher_reply(prompt: str, params) -> str:
        if params.temperature == 0:
            return "human"
        return items_json(("Who painted the Mona Lisa?", "asks for the person who made something"))

    some = StudentAnswers(
        "tiny", lambda seeds: [("entity" if "Hamlet" in x.input else None, "?") for x in seeds]
    )
    teacher = Scripted(teacher_reply)
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "teacher"),
                           PrinciplesSettings(levels=["error"]), seed=0, student=some)  # fmt: skip
    assert out["error"]["mistakes"] == 1 and out["error"]["unread"] == len(trec_seeds) - 1
    assert len([c for c, _ in teacher.prompts if "A small model was given" in c]) == 1
    assert [(p["category"], p["level"]) for p in out["principles"]] == [("human", "error")]

    none = StudentAnswers("tiny", lambda seeds: [(None, "") for _ in seeds])
    teacher = Scripted(teacher_reply)
    out = write_principles(trec, trec_seeds, caller(tmp_path, teacher, "t2"),
                           PrinciplesSettings(levels=["error"]), seed=0, student=none)  # fmt: skip
    assert out["principles"] == [] and teacher.prompts == []
    assert out["error"]["skipped"].startswith("error level skipped: none of the student's 7 answers")
    assert out["error"]["skipped"] in out["notes"]


def test_an_example_loses_the_lead_it_copied_from_the_prompt():
    from psilm.stages.principles.reading import clean_example

    labels = ["sports", "world"]
    assert clean_example("News article: Rain stops play at the Oval.", "news article", False, labels) == (
        "Rain stops play at the Oval."
    )
    news = clean_example("Sports: Rain stops play. (42 words)", "news article", False, labels)
    assert news == "Rain stops play."
    answered = "Who wrote Hamlet? Shakespeare did."
    assert clean_example(answered, "question", True) == "Who wrote Hamlet?"
    assert clean_example(answered, "text", False) == answered
    assert clean_example("News article: <a new news article>", "news article") is None


@pytest.mark.parametrize(
    "answer, meaning",
    [
        ("The label 'world' in this task refers to news of other lands. More.", "news of other lands"),
        ("The label means: international politics and diplomacy.", "international politics and diplomacy"),
        ("The label 'sadness' is an emotion of sorrow or grief.", "an emotion of sorrow or grief"),
        ("Sadness is an emotion that expresses sorrow.", "Sadness is an emotion that expresses sorrow"),
        ("Too short.", None),
    ],
)
def test_a_meaning_is_the_first_sentence_without_its_lead_in(answer, meaning):
    assert one_sentence(answer, 300) == meaning  # 'is' inside 'this' is not a lead-in's end


def test_an_undescribed_label_is_described_by_the_teacher_and_every_later_prompt_shows_it(
    tmp_path, news, news_seeds
):
    """news has no label descriptions: the teacher writes one per label from its seeds (greedy),
    and the create and check prompts show it, so a label is not read by its name alone."""

    def reply(prompt: str, params) -> str:
        if "In one sentence, say what the label" in prompt:
            assert params.temperature == 0 and "in general terms that fit any" in prompt
            return "The label means: international politics and diplomacy. More words."
        if params.temperature == 0:
            return "world"
        return items_json((_article("summit talks", 35), "a report on talks"))

    teacher = Scripted(reply)
    s = PrinciplesSettings(levels=["category"], per_category=1, extra_forms=0, refill=False)
    out = write_principles(news, news_seeds, caller(tmp_path, teacher, "teacher"), s, seed=0)
    assert out["meanings"] == {lb: "international politics and diplomacy" for lb in news.labels}
    create = next(c for c, _ in teacher.prompts if "whose label is 'world'" in c)
    assert "The label 'world' means: international politics and diplomacy." in create
    check = next(c for c, _ in teacher.prompts if "Which label does this" in c)
    assert "world (international politics and diplomacy)" in check
    off = PrinciplesSettings(
        levels=["category"], per_category=1, extra_forms=0, refill=False, describe_labels=False
    )
    out = write_principles(news, news_seeds, caller(tmp_path, Scripted(reply), "t2"), off, seed=0)
    assert out["meanings"] == {}


def test_a_too_long_example_is_cut_at_a_sentence_end_within_the_seeds_length():
    from psilm.stages.principles.checks import Shape

    seeds = [TREC_LIKE.example({"text": t, "label_name": "human"}) for t in ("One two three four five.",) * 2]
    shape = Shape.of(seeds, 2.0)  # up to 50 characters
    long = "Alpha beta gamma delta epsilon. Zeta eta theta iota kappa lambda mu nu xi omicron pi rho."
    assert shape.problem(long) == "example_too_long"
    assert shape.cut(long) == "Alpha beta gamma delta epsilon."
    assert shape.cut("No sentence end here at all but many many many words that run on and on") is None


TREC_LIKE = load_task("trec")
