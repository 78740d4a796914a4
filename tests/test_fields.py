"""Tasks with several input fields (NLI pairs) and 5-way multiple choice, from the fixtures' native
JSONL: inputs keep every field, generated instances are parsed into the fields or dropped with a
counted reason, and the filter cleans each field on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_generate import Scripted, caller

from psilm.data import load_examples
from psilm.stages.filter import clean_input, filter_instances
from psilm.stages.generate import GenerateSettings, draw_instances, generate_instances, input_prompt
from psilm.tasks import load_task

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NLI = {
    "name": "nli",
    "kind": "classification",
    "description": "Decide whether the premise entails the hypothesis.",
    "input_name": "premise and hypothesis pair",
    "input_fields": ["premise", "hypothesis"],
    "labels": ["entailment", "not_entailment"],
}
MC5 = {
    "name": "mc5",
    "kind": "multiple_choice",
    "description": "Answer an everyday-knowledge question by picking one of five choices.",
    "input_name": "question",
    "input_field": "question",
    "choices_field": "choices",
    "target_field": "answerKey",
}


@pytest.fixture
def nli():
    return load_task(NLI)


def test_fixtures_load_with_every_field(nli):
    rows = load_examples(nli, FIXTURES / "nli" / "train.jsonl")
    assert len(rows) == 32 and {r.answer for r in rows} == {"entailment", "not_entailment"}
    assert all(r.input.startswith("Premise: ") and "\nHypothesis: " in r.input for r in rows)
    mc = load_examples(load_task(MC5), FIXTURES / "mc5" / "train.jsonl")
    assert len(mc) == 20 and all(r.meta["n_choices"] == 5 for r in mc)
    assert mc[0].input.splitlines()[1:] == ["A. bank", "B. river", "C. oven", "D. garden", "E. shoe"]


def test_generation_prompt_shows_field_blocks_and_asks_for_every_field(nli):
    seeds = load_examples(nli, FIXTURES / "nli" / "train.jsonl")[:6]
    plan = draw_instances(nli, seeds, [], GenerateSettings(n=1), seed=0, mode="direct")[0]
    user = input_prompt(nli, seeds, plan, {})[1]["content"]
    assert f"Premise: {seeds[plan['demo_ids'][0]].input.split(': ', 1)[1].splitlines()[0]}" in user
    assert "'Premise: ...', then 'Hypothesis: ...'. Reply with those lines only." in user


def test_generated_instances_keep_every_field_or_are_dropped_counted(tmp_path, nli):
    seeds = load_examples(nli, FIXTURES / "nli" / "train.jsonl")
    replies = [
        "Here is a new pair:\n**Premise:** A cook stirs a pot of rice.\n**Hypothesis:** Food is being made.",
        "Premise: A girl reads a comic in the garden.",  # no hypothesis
        "A cyclist rides up a steep hill.",  # one blob, no fields
        "Premise: A cat naps by the window.\nHypothesis: An animal rests.\nLabel: entailment",
    ]
    calls = iter(range(100))
    backend = Scripted(lambda text, seen, p: replies[next(calls) % 4])
    records, stats = generate_instances(
        nli,
        seeds,
        [],
        caller(tmp_path / "raw.jsonl", backend),
        GenerateSettings(n=8, prompt_style="chat"),
        seed=0,
        mode="direct",
    )
    assert stats["parse_errors"] == {"missing_field:hypothesis": 2, "missing_field:premise": 2}
    good = [r for r in records if r["parse_error"] is None]
    assert len(good) == 4
    for r in good:
        fields, reason = nli.split_fields(r["input"])
        assert reason is None and set(fields) == {"premise", "hypothesis"}
        assert "Label" not in r["input"] and "**" not in r["input"]
    kept, report = filter_instances(nli, records, seeds, None)
    assert report["dropped"]["parse:missing_field:hypothesis"] == 2
    assert report["dropped"]["parse:missing_field:premise"] == 2
    assert all(nli.split_fields(r["input"])[1] is None for r in kept) and kept


def test_list_prompts_show_field_blocks_and_the_first_field_name_is_restored(tmp_path, nli):
    seeds = load_examples(nli, FIXTURES / "nli" / "train.jsonl")
    plan = draw_instances(nli, seeds, [], GenerateSettings(n=1), seed=0, mode="direct")[0]
    text = input_prompt(nli, seeds, plan, {}, style="list")
    demo = seeds[plan["demo_ids"][0]].input
    assert f"{demo}\n###\n" in text and text.endswith("\n###\nPremise:")
    replies = [
        " A dog runs on the beach.\nHypothesis: An animal is outside.\n###\nPremise: more",
        "Premise: A man paints a fence.\nHypothesis: A fence is being painted.",  # named it itself
        " A boy sings.",  # no hypothesis
    ]
    calls = iter(range(100))
    backend = Scripted(lambda text, seen, p: replies[next(calls) % 3])
    records, stats = generate_instances(
        nli, seeds, [], caller(tmp_path / "raw.jsonl", backend), GenerateSettings(n=6), seed=0, mode="direct"
    )
    assert stats["parse_errors"] == {"missing_field:hypothesis": 2}
    good = sorted({r["input"] for r in records if r["parse_error"] is None})
    assert good == [
        "Premise: A dog runs on the beach.\nHypothesis: An animal is outside.",
        "Premise: A man paints a fence.\nHypothesis: A fence is being painted.",
    ]


def test_cleaning_fields_is_idempotent_and_names_the_empty_field(nli):
    text, reason = clean_input('Premise: Sure! A bird sings.\nHypothesis: "Music is heard."', nli)
    assert (text, reason) == ("Premise: A bird sings.\nHypothesis: Music is heard.", None)
    assert clean_input(text, nli) == (text, None)
    assert clean_input('Premise: A bird sings.\nHypothesis: ""', nli) == (None, "missing_field:hypothesis")


def test_dedup_and_decontamination_use_the_joined_text(nli):
    seeds = load_examples(nli, FIXTURES / "nli" / "train.jsonl")
    copy = {
        "input": seeds[0].input,
        "answer": "entailment",
        "output": "entailment",
        "votes": [],
        "category": "entailment",
    }
    new = dict(copy, input="Premise: A potter shapes a bowl of clay.\nHypothesis: Someone is making pottery.")
    kept, report = filter_instances(nli, [copy, new, dict(new)], seeds, None)
    assert [r["input"] for r in kept] == [new["input"]]
    assert report["dropped"] == {"contaminated_seed": 1, "exact_duplicate": 1}


def test_mc5_in_hugging_face_form_reads_the_same_from_parquet_and_saved_folder(tmp_path):
    """HF stores choices as {"label": [...], "text": [...]} (a struct in Parquet and Arrow)."""
    import datasets

    task = load_task(MC5)
    native = load_examples(task, FIXTURES / "mc5" / "test.jsonl")
    rows = [json.loads(x) for x in (FIXTURES / "mc5" / "test.jsonl").read_text().splitlines()]
    for r in rows:
        r["choices"] = {
            "label": [c["label"] for c in r["choices"]],
            "text": [c["text"] for c in r["choices"]],
        }
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "t.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for src in (tmp_path / "t.parquet", tmp_path / "saved"):
        got = load_examples(task, src)
        assert [(e.input, e.answer) for e in got] == [(e.input, e.answer) for e in native], src
