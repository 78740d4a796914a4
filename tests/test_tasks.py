import pytest

from psilm.errors import ConfigError, DataError
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


# --- choices: three accepted forms, anything else one clear error ----------------------------------
MC = {
    "name": "mc",
    "kind": "multiple_choice",
    "description": "Pick.",
    "input_field": "question",
    "target_field": "answerKey",
    "choices_field": "choices",
}
TEXTS = ["bank", "river", "shop", "school", "park"]


@pytest.mark.parametrize(
    "choices, key",
    [
        (TEXTS, "C"),
        (TEXTS, 2),
        ([{"label": lbl, "text": t} for lbl, t in zip("ABCDE", TEXTS, strict=True)], "C"),
        ({"label": list("ABCDE"), "text": TEXTS}, "C"),
        ({"label": ["1", "2", "3", "4", "5"], "text": TEXTS}, "3"),  # ARC numbers some questions
        ([{"text": t} for t in TEXTS], "C"),
        ('{"label": ["A", "B", "C", "D", "E"], "text": ["bank", "river", "shop", "school", "park"]}', "C"),
    ],
    ids=[
        "strings",
        "index",
        "label-text-objects",
        "hf-dict-of-lists",
        "numbered-labels",
        "text-only",
        "json-cell",
    ],
)
def test_choices_forms_read_the_same(choices, key):
    ex = load_task(MC).example(
        {"question": "Where is money kept?", "choices": choices, "answerKey": key}, "f:1"
    )
    assert ex.input == "Where is money kept?\nA. bank\nB. river\nC. shop\nD. school\nE. park"
    assert ex.answer == "C" and ex.meta == {"n_choices": 5}


@pytest.mark.parametrize(
    "choices, needle",
    [
        ("bank", "got str 'bank'"),
        ([{"label": "A", "txt": "bank"}, {"label": "B", "txt": "river"}], "choice 1 has no `text`"),
        ({"label": ["A", "B"], "text": ["bank"]}, "2 labels but 1 texts"),
        ({"label": "AB", "text": "bank river"}, "must be lists"),
        ({"A": ["bank"], "B": ["river"]}, "got an object with keys ['A', 'B']"),
        (["bank", {"text": "river"}], "choice 2 is an object"),
        (["bank"], "1 choice(s); a question needs 2 to 10"),
        ([str(i) for i in range(11)], "11 choice(s)"),
        ([{"label": "A", "text": "bank"}, {"label": "A", "text": "river"}], "must be distinct"),
        (["bank", ""], "choice 2 is str ''"),
        ("[1, 2", "a JSON string that does not parse"),
        (None, "got NoneType"),
    ],
)
def test_choices_of_the_wrong_shape_name_file_row_and_field(choices, needle):
    row = {"question": "Where?", "choices": choices, "answerKey": "A"}
    with pytest.raises(DataError, match=r"^f\.jsonl:7: field `choices`: ") as e:
        load_task(MC).example(row, "f.jsonl:7")
    assert needle in str(e.value), str(e.value)


def test_choices_answer_outside_labels_and_missing_choices():
    t = load_task(MC)
    with pytest.raises(
        DataError, match=r"f:2: field `answerKey`: answer 'F' is not one of the choices' labels"
    ):
        t.example(
            {"question": "q", "choices": {"label": list("ABCDE"), "text": TEXTS}, "answerKey": "F"}, "f:2"
        )
    with pytest.raises(DataError, match=r"f:3: missing field `choices`.*set task\.choices_field"):
        t.example({"question": "q", "answerKey": "A"}, "f:3")


# --- several input fields -------------------------------------------------------------------------
NLI = {
    "name": "nli",
    "kind": "classification",
    "description": "Does the premise entail the hypothesis?",
    "input_fields": ["premise", "hypothesis"],
    "labels": ["entailment", "not_entailment"],
}


def test_input_fields_each_on_its_own_line():
    t = load_task(NLI)
    ex = t.example(
        {"premise": " A man plays a guitar. ", "hypothesis": "A man makes music.", "label": "entailment"}
    )
    assert ex.input == "Premise: A man plays a guitar.\nHypothesis: A man makes music."
    assert t.prompt(ex.input)[1]["content"] == ex.input  # no 'Input:' prefix over the field lines
    renamed = load_task(
        {**NLI, "input_fields": ["sentence1", "sentence2"], "field_names": {"sentence2": "Claim"}}
    )
    ex2 = renamed.example({"sentence1": "It rains.", "sentence2": "It is wet.", "label": "entailment"})
    assert ex2.input == "Sentence1: It rains.\nClaim: It is wet."


def test_input_fields_row_missing_one_names_file_line_field():
    t = load_task(NLI)
    with pytest.raises(DataError, match=r"^d\.jsonl:4: missing field `hypothesis` .*set task\.input_fields"):
        t.example({"premise": "A man plays.", "label": "entailment"}, "d.jsonl:4")
    with pytest.raises(DataError, match=r"^d\.jsonl:5: field `premise` is empty or not text"):
        t.example({"premise": "  ", "hypothesis": "x", "label": "entailment"}, "d.jsonl:5")


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"input_field": "text"}, "not both"),
        ({"input_fields": ["premise"]}, "two or more fields"),
        ({"input_fields": ["premise", "premise"]}, "lists a field twice"),
        ({"input_fields": ["premise", "label"]}, "`target_field` 'label' is also an input field"),
        ({"field_names": {"claim": "Claim"}}, r"not input fields: \['claim'\]"),
        ({"field_names": {"hypothesis": "premise"}}, "the same name"),
    ],
)
def test_input_fields_settings_errors(extra, needle):
    with pytest.raises(ConfigError, match=needle):
        load_task({**NLI, **extra})


def test_input_field_as_a_list_points_to_input_fields():
    spec = {k: v for k, v in NLI.items() if k != "input_fields"}
    with pytest.raises(ConfigError, match="write `input_fields: \\[a, b\\]`"):
        load_task({**spec, "input_field": ["premise", "hypothesis"]})


def test_split_fields_reads_what_a_generator_writes():
    t = load_task(NLI)
    fields, reason = t.split_fields(
        "Sure! Here is one:\n**Premise:** A dog runs in the park.\n\n**Hypothesis**: An animal is outside.\n"
        "Label: entailment\nPremise: a second pair"
    )
    assert reason is None
    assert fields == {
        "premise": "A dog runs in the park.",
        "hypothesis": "An animal is outside.\nLabel: entailment",
    }
    # an instance starts at its first field: a stray hypothesis before it belongs to nothing
    stray = 'Hypothesis: "A cat naps."\n\nExample:\nPremise: A man sings.\nHypothesis: There is a man.'
    assert t.split_fields(stray)[0] == {"premise": "A man sings.", "hypothesis": "There is a man."}
    assert t.split_fields("hypothesis: first\npremise: then") == (None, "missing_field:hypothesis")
    assert t.split_fields("Premise: A dog runs.") == (None, "missing_field:hypothesis")
    assert t.split_fields("Premise: A dog runs.\nHypothesis:") == (None, "missing_field:hypothesis")
    assert t.split_fields("just one blob of text") == (None, "missing_field:premise")
    joined = t.join_fields({"premise": "p", "hypothesis": "h"})
    assert t.split_fields(joined) == ({"premise": "p", "hypothesis": "h"}, None)
