import pytest

from psilm.errors import DataError
from psilm.tasks import load_task
from psilm.tasks.base import token_f1


def test_classification_reads_and_extracts():
    t = load_task("sst2")
    ex = t.example({"text": "a fine film .", "label": "positive"}, "f:1")
    assert (ex.input, ex.output, ex.answer, ex.category) == (
        "a fine film .",
        "positive",
        "positive",
        "positive",
    )
    assert t.extract("The answer is Negative.") == "negative"
    assert t.extract("no idea") is None
    assert t.score("positive", "positive") == 1.0
    msgs = t.prompt("x")
    assert "negative, positive" in msgs[0]["content"] and msgs[1]["content"] == "Movie review: x"


def test_classification_label_outside_set_names_row():
    t = load_task("sst2")
    with pytest.raises(DataError, match=r"f\.jsonl:3: label 'neutral' is not in task\.labels"):
        t.example({"text": "meh", "label": "neutral"}, "f.jsonl:3")


def test_missing_field_names_row_and_fields():
    t = load_task("trec")
    with pytest.raises(DataError, match=r"f:2: missing field `label_name`"):
        t.example({"text": "Who ?", "label": "HUM"}, "f:2")


def test_numeric_gsm8k_convention():
    t = load_task("gsm8k")
    ex = t.example({"question": "2+2?", "answer": "2 plus 2 is <<2+2=4>>4.\n#### 4"}, "f:1")
    assert ex.answer == "4" and ex.output.endswith("#### 4")
    assert t.extract("so we get 1,234.50 dollars\n#### 1,234.50") == "1234.5"
    assert t.extract("The answer is 12.") == "12"
    assert t.extract("first 3 then 7") == "7"
    assert t.score("4", "4.0") == 1.0
    bare = t.example({"question": "q", "answer": 7}, "f:2")
    assert bare.output == "#### 7"


def test_multiple_choice_and_free_text():
    t = load_task(
        {
            "name": "mc",
            "kind": "multiple_choice",
            "description": "Pick.",
            "input_field": "q",
            "target_field": "a",
            "choices_field": "choices",
        }
    )
    ex = t.example({"q": "Sky?", "choices": ["blue", "green"], "a": 0}, "f:1")
    assert ex.answer == "A" and "B. green" in ex.input
    assert t.answer_options(ex) == ["A", "B"]
    assert t.extract("I think (B)") == "B"
    ft = load_task(
        {"name": "ft", "kind": "free_text", "description": "Answer.", "input_field": "q", "target_field": "a"}
    )
    assert ft.score("The Paris", "paris") == 1.0
    assert token_f1("new york city", "new york") == pytest.approx(0.8)
