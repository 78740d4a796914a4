"""Generation: plans, prompts, targets and records (scripted generator), plus one real-model run."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from psilm.errors import ConfigError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.generate import (
    GenerateSettings,
    generate_instances,
    majority,
    parse_pair,
    plan_instances,
    principles_shown,
    with_final_answer,
)
from psilm.stages.principles import load_principles_file
from psilm.store import JsonlLog
from psilm.tasks import load_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "principles"
RECORD_KEYS = {
    "id",
    "mode",
    "input",
    "raw_input",
    "output",
    "answer",
    "category",
    "principle_ids",
    "demo_ids",
    "votes",
    "parse_error",
    "generator",
}


class Scripted:
    """A Backend whose reply is a function of (prompt text, how often it was seen, params)."""

    def __init__(self, reply: Callable[[str, int, SamplingParams], str], model_id: str = "scripted"):
        self.reply, self.model_id, self.seen, self.calls = reply, model_id, Counter(), 0

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        out = []
        for m in prompts:
            text = "\n".join(msg["content"] for msg in m)  # system + user, as a template would
            self.calls += 1
            reply = self.reply(text, self.seen[text], params)
            self.seen[text] += 1
            out.append(Completion(reply, len(text.split()), len(reply.split()), "stop"))
        return out

    def close(self) -> None:
        pass


def caller(path: Path, backend) -> ModelCaller:
    return ModelCaller("generator", backend.model_id, lambda: backend, JsonlLog(path))


@pytest.fixture
def trec():
    return load_task("trec")


@pytest.fixture
def trec_seeds(trec):
    rows = [
        ("What does NASA stand for ?", "abbreviation"),
        ("What is CPR ?", "abbreviation"),
        ("Why is the sky blue ?", "description"),
        ("What is a golf handicap ?", "description"),
        ("What kind of tree is a maple ?", "entity"),
        ("Name a famous racehorse .", "entity"),
        ("Who wrote Hamlet ?", "human"),
        ("Who invented the telephone ?", "human"),
        ("Where is Lake Titicaca ?", "location"),
        ("What city is the Louvre in ?", "location"),
        ("How far is the Moon ?", "numeric"),
        ("When did the Titanic sink ?", "numeric"),
    ]
    return [trec.example({"text": t, "label_name": lbl}) for t, lbl in rows]


@pytest.fixture
def trec_principles(trec):
    return load_principles_file(CONFIGS / "trec.yaml", trec)["principles"]


# --- planning ----------------------------------------------------------------------------------
def test_plan_is_balanced_across_labels(trec, trec_seeds, trec_principles):
    plans = plan_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=60), seed=0)
    assert Counter(p["category"] for p in plans) == {lb: 10 for lb in trec.labels}
    for block in range(10):  # and each run of six holds every label once
        assert {p["category"] for p in plans[block * 6 : (block + 1) * 6]} == set(trec.labels)


def test_plan_is_deterministic_per_seed_and_index(trec, trec_seeds, trec_principles):
    def plan(n, seed):
        return plan_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=n), seed)

    assert plan(30, 5) == plan(30, 5)
    assert plan(30, 5) != plan(30, 6)
    assert plan(30, 5)[:12] == plan(12, 5)  # plan i does not depend on n


def test_demos_share_the_label(trec, trec_seeds, trec_principles):
    plans = plan_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=24), seed=1)
    for p in plans:
        assert len(p["demo_ids"]) == 2
        assert {trec_seeds[i].category for i in p["demo_ids"]} == {p["category"]}


@pytest.mark.parametrize("k", [1, 2, None])
def test_principle_sampling_respects_count_and_category(trec, trec_seeds, trec_principles, k):
    by_id = {p["id"]: p for p in trec_principles}
    settings = GenerateSettings(n=30, principles_per_instance=k)
    for plan in plan_instances(trec, trec_seeds, trec_principles, settings, seed=2):
        chosen = [by_id[i] for i in plan["principle_ids"]]
        pool = [
            p
            for p in trec_principles
            if p["use"] != "solve"
            and p["level"] != "category"
            or p["category"] == plan["category"]
            and p["use"] != "solve"
        ]
        assert len(chosen) == (len(pool) if k is None else k)
        for p in chosen:
            assert p["use"] in ("create", "both")
            assert p["level"] != "category" or p["category"] == plan["category"]
        if k == 1:  # the category's own principle comes first
            assert chosen[0]["level"] == "category"


def test_category_weights_from_train(tmp_path, write_jsonl):
    """`category_weights: train` becomes the labels' shares of data.train, less the rows in the test split."""
    import yaml

    from psilm.config import load_config
    from psilm.pipeline import prepare

    counts = {"abbreviation": 2, "description": 4, "entity": 4, "human": 6, "location": 2, "numeric": 2}
    rows = [
        {"text": f"Question {lbl} {i} ?", "label_name": lbl} for lbl in counts for i in range(counts[lbl])
    ]
    shared = {"text": "Who shared this row ?", "label_name": "human"}  # in both splits: not counted
    cfg = {
        "task": "trec",
        "data": {
            "train": str(write_jsonl("train.jsonl", rows + [shared])),
            "test": str(write_jsonl("test.jsonl", [shared, {"text": "Where ?", "label_name": "location"}])),
            "n_seeds": 6,
        },
        "generate": {"category_weights": "train"},
    }
    ctx = prepare(load_config(data=cfg), tmp_path / "run", log=lambda m: None)
    want = {
        "abbreviation": 0.1,
        "description": 0.2,
        "entity": 0.2,
        "human": 0.3,
        "location": 0.1,
        "numeric": 0.1,
    }
    assert ctx.cfg.generate.category_weights == want
    # the run folder records the shares used, not the word
    assert (
        yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["generate"]["category_weights"] == want
    )

    with pytest.raises(ConfigError, match="'train' needs data.train"):
        seeds = write_jsonl("seeds.jsonl", rows)
        prepare(load_config(data={**cfg, "data": {"seeds": str(seeds)}}), tmp_path / "r2", log=lambda m: None)
    gsm = {"question": "Ann has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}
    pool = str(write_jsonl("g.jsonl", [gsm]))
    gsm_cfg = {
        "task": "gsm8k",
        "data": {"train": pool, "n_seeds": 1},
        "generate": {"category_weights": "train"},
    }
    with pytest.raises(ConfigError, match="classification"):
        prepare(load_config(data=gsm_cfg), tmp_path / "r3", log=lambda m: None)
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()  # nothing written on error


def test_category_weights(trec, trec_seeds, trec_principles):
    w = {"human": 3, "numeric": 1}
    plans = plan_instances(
        trec, trec_seeds, trec_principles, GenerateSettings(n=40, category_weights=w), seed=0
    )
    assert Counter(p["category"] for p in plans) == {"human": 30, "numeric": 10}
    with pytest.raises(ConfigError, match="generate.category_weights"):
        plan_instances(
            trec, trec_seeds, trec_principles, GenerateSettings(n=4, category_weights={"animal": 1}), seed=0
        )
    with pytest.raises(ConfigError, match="resolved from data.train"):
        plan_instances(
            trec, trec_seeds, trec_principles, GenerateSettings(n=4, category_weights="train"), seed=0
        )


def test_non_classification_categories_come_from_principles():
    task = load_task("gsm8k")
    seeds = [task.example({"question": f"Q{i}? How many?", "answer": f"#### {i}"}) for i in range(4)]
    principles = load_principles_file(CONFIGS / "gsm8k.yaml", task)["principles"]
    plans = plan_instances(task, seeds, principles, GenerateSettings(n=8), seed=0)
    assert Counter(p["category"] for p in plans) == {
        c: 2 for c in ("money", "rates-and-time", "fractions-and-percents", "counting-and-groups")
    }
    assert all(len(p["solve_principle_ids"]) == 1 for p in plans)
    direct = plan_instances(task, seeds, principles, GenerateSettings(n=8, mode="direct"), 0)
    assert {p["category"] for p in direct} == {None}  # the baseline gets no teacher sub-types


# --- generating --------------------------------------------------------------------------------
def _trec_reply(prompt: str, seen: int, params) -> str:
    label = re.search(r'labelled "(\w+)"', prompt).group(1)
    if label == "abbreviation":
        return "I'm sorry, but I can't help with that."
    if label == "entity":
        return "Here's a new question:\n\nWhat is the fastest land animal?"
    return f"Which {label} question is this number {seen}?"


def test_records_have_the_schema(tmp_path, trec, trec_seeds, trec_principles):
    gen = caller(tmp_path / "raw.jsonl", Scripted(_trec_reply, "tiny-gen"))
    settings = GenerateSettings(n=12, temperature=0.8, top_p=0.9, max_tokens=40)
    records, stats = generate_instances(trec, trec_seeds, trec_principles, gen, settings, seed=0)
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["mode"] == "psi" and r["generator"] == {
            "model": "tiny-gen",
            "temperature": 0.8,
            "top_p": 0.9,
            "max_tokens": 40,
        }
        assert r["raw_input"] and len(r["principle_ids"]) == 1 and r["votes"] == []
        if r["category"] == "abbreviation":
            assert r["parse_error"] == "refusal" and r["input"] is None and r["answer"] is None
        else:
            assert r["parse_error"] is None and r["answer"] == r["output"] == r["category"]
    entity = next(r for r in records if r["category"] == "entity")
    assert entity["input"] == "What is the fastest land animal?"
    assert stats["planned"] == 12 and stats["parsed"] == 10 and stats["parse_errors"] == {"refusal": 2}
    assert stats["new_calls"] == 12
    # one principle per instance, the category's own first: the task level is never shown, and it says so
    assert stats["principles_shown"] == {"task": 0, "category": 12}
    assert "['task']" in stats["warning"] and "principles_per_instance" in stats["warning"]


def test_principles_shown_counts_each_level_once_per_instance(trec, trec_principles):
    settings = GenerateSettings(n=12, principles_per_instance=None)
    plans = plan_instances(trec, [], trec_principles, settings, seed=0)
    shown, warning = principles_shown(trec_principles, plans)
    assert shown == {"task": 12, "category": 12} and warning is None
    assert principles_shown(trec_principles, []) == ({"task": 0, "category": 0}, None)


def test_prompts_are_short_and_direct_mode_has_no_principles(tmp_path, trec, trec_seeds, trec_principles):
    prompts = []

    def reply(prompt, seen, params):
        prompts.append(prompt)
        return "What is a new question here?"

    gen = caller(tmp_path / "raw.jsonl", Scripted(reply))
    generate_instances(trec, trec_seeds, trec_principles, gen, GenerateSettings(n=6), seed=0)
    assert all(p.count("Tip:") == 1 and len(p) < 800 for p in prompts)
    numeric = next(p for p in prompts if 'labelled "numeric"' in p)
    assert "How far is the Moon" in numeric and "Who wrote Hamlet" not in numeric
    prompts.clear()
    records, stats = generate_instances(
        trec, trec_seeds, trec_principles, gen, GenerateSettings(n=6, mode="direct"), seed=0
    )
    assert len(prompts) == 6 and not any("Tip:" in p for p in prompts)
    assert all(r["principle_ids"] == [] and r["mode"] == "direct" for r in records)
    assert Counter(r["category"] for r in records) == {lb: 1 for lb in trec.labels}


@pytest.mark.parametrize("describe", [True, False])
def test_label_descriptions_are_switchable(tmp_path, trec, trec_seeds, trec_principles, describe):
    prompts = []

    def reply(prompt, seen, params):
        prompts.append(prompt)
        return "What is a new question here?"

    gen = caller(tmp_path / "raw.jsonl", Scripted(reply))
    settings = GenerateSettings(n=6, mode="direct", label_descriptions=describe)
    generate_instances(trec, trec_seeds, trec_principles, gen, settings, seed=0)
    numeric = next(p for p in prompts if 'labelled "numeric"' in p)
    desc = trec.config.label_descriptions["numeric"]
    assert (desc in numeric) is describe
    assert 'Label "numeric"' in numeric and "How far is the Moon" in numeric  # name and demos stay


def test_verify_votes_for_classification(tmp_path, trec, trec_seeds, trec_principles):
    def reply(prompt, seen, params):
        if "Answer with one label" in prompt:
            return ["human", "location", "human"][seen % 3]
        return "Who painted the Mona Lisa?"

    gen = caller(tmp_path / "raw.jsonl", Scripted(reply))
    records, _ = generate_instances(
        trec, trec_seeds, trec_principles, gen, GenerateSettings(n=6, verify_samples=3), seed=0
    )
    assert all(r["votes"] == ["human", "location", "human"] for r in records)
    assert all(r["answer"] == r["category"] for r in records)  # the asked label stays the answer


def _gsm8k():
    task = load_task("gsm8k")
    seeds = [
        task.example(
            {
                "question": "Ann has 2 bags with 3 apples each. How many apples?",
                "answer": "2*3=<<2*3=6>>6\n#### 6",
            }
        ),
        task.example({"question": "A pen costs $2. How much do 4 pens cost?", "answer": "4*2=8\n#### 8"}),
    ]
    return task, seeds


def test_numeric_majority_vote_and_ties(tmp_path):
    task, seeds = _gsm8k()
    questions = iter(
        [
            "Tom has 3 apples and buys 4 more. How many apples does he have?",
            "Mia reads 5 pages a day for 2 days. How many pages does she read?",
            "Sure! Here is a cat.",
        ]
    )
    solutions = {
        "Tom": ["3 + 4 = 7. The answer is 7.", "3 + 4 = 8 #### 8", "3+4=7\n#### 7"],
        "Mia": ["5 * 2 = 10\n#### 10", "5 + 2 = 7\n#### 7", "I do not know."],
    }

    def reply(prompt, seen, params):
        if "Solve it step by step" in prompt:
            assert "<<" not in prompt  # calculator notes are not shown
            who = prompt.rsplit("Problem: ", 1)[1].split()[0]
            return solutions[who][seen]
        return next(questions)

    backend = Scripted(reply)
    settings = GenerateSettings(n=3, solve_samples=3)
    records, stats = generate_instances(
        task, seeds, [], caller(tmp_path / "r.jsonl", backend), settings, seed=0
    )
    tom, mia, cat = records
    assert tom["votes"] == ["7", "8", "7"] and tom["answer"] == "7"
    assert tom["output"] == "3 + 4 = 7. The answer is 7.\n#### 7"
    assert mia["votes"] == ["10", "7", None] and mia["answer"] is None and mia["output"] is None
    assert cat["parse_error"] == "off_format" and cat["votes"] == []
    assert backend.calls == 3 + 2 * 3  # the unparsed one is not solved
    assert stats["no_answer"] == 1


def test_majority_and_final_answer_helpers():
    assert majority(["3", "3", "4"]) == "3"
    assert majority(["3", "4"]) is None and majority([None, None]) is None and majority([]) is None
    assert with_final_answer("2+2=4\n#### 5", "4") == "2+2=4\n#### 4"
    assert with_final_answer("", "4") == "#### 4"


def test_question_and_answer_in_one_response(tmp_path):
    free = load_task(
        {
            "name": "qa",
            "kind": "free_text",
            "description": "Answer a trivia question.",
            "input_name": "question",
            "input_field": "q",
            "target_field": "a",
        }
    )
    mc = load_task(
        {
            "name": "mc",
            "kind": "multiple_choice",
            "description": "Pick the answer.",
            "input_field": "q",
            "target_field": "a",
            "choices_field": "c",
        }
    )
    assert parse_pair("Question: What is the capital of France?\nAnswer: Paris\nExtra", free) == (
        "Question: What is the capital of France?",
        "Paris",
        None,
    )
    assert parse_pair("What is 2+2?\nA. 3\nB. 4\nAnswer: B", mc) == ("What is 2+2?\nA. 3\nB. 4", "B", None)
    assert parse_pair("What is 2+2?\nA. 3\nB. 4\nAnswer: D", mc)[2] == "bad_answer"
    assert parse_pair("no answer here", free)[2] == "no_answer"
    seeds = [free.example({"q": "Who wrote Hamlet?", "a": "Shakespeare"})]
    gen = caller(
        tmp_path / "r.jsonl",
        Scripted(lambda p, s, x: "Question: What is the largest planet?\nAnswer: Jupiter"),
    )
    (rec,), _ = generate_instances(free, seeds, [], gen, GenerateSettings(n=1), seed=0)
    assert rec["input"] == "What is the largest planet?" and rec["answer"] == rec["output"] == "Jupiter"


def test_rerun_makes_no_new_calls(tmp_path):
    task, seeds = _gsm8k()
    backend = Scripted(
        lambda p, seen, x: (
            "Bo has 2 cats and 3 dogs. How many pets does he have?"
            if "Write one new" in p
            else f"2 + 3 = 5 #### {5 + seen % 2}"
        )
    )
    settings = GenerateSettings(n=4, solve_samples=3)
    first, _ = generate_instances(task, seeds, [], caller(tmp_path / "r.jsonl", backend), settings, 9)
    calls = backend.calls
    again = caller(tmp_path / "r.jsonl", backend)
    second, stats = generate_instances(task, seeds, [], again, settings, 9)
    assert second == first and backend.calls == calls
    assert again.new_calls == 0 and stats["new_calls"] == 0


# --- the real embedded model ---------------------------------------------------------------------
@pytest.mark.slow
def test_real_model_writes_sst2_instances(tmp_path):
    from psilm.llm import ModelConfig, load_backend

    task = load_task("sst2")
    rows = [
        ("a gorgeous , witty , seductive movie .", "positive"),
        ("the acting is superb and the story moves .", "positive"),
        ("a dull , lifeless mess of a film .", "negative"),
        ("it drags on and never finds its point .", "negative"),
    ]
    seeds = [task.example({"text": t, "label": lbl}) for t, lbl in rows]
    principles = load_principles_file(CONFIGS / "sst2.yaml", task)["principles"]
    backend = load_backend(ModelConfig())
    gen = ModelCaller("generator", backend.model_id, lambda: backend, JsonlLog(tmp_path / "r.jsonl"))
    records, stats = generate_instances(
        task, seeds, principles, gen, GenerateSettings(n=6, max_tokens=40), seed=0
    )
    assert len(records) == 6 and stats["new_calls"] == 6
    assert Counter(r["category"] for r in records) == {"positive": 3, "negative": 3}
    for r in records:
        assert set(r) == RECORD_KEYS and r["generator"]["model"] == "smollm2-135m"
        assert isinstance(r["raw_input"], str) and len(r["principle_ids"]) == 1
        assert (r["input"] is None) == (r["parse_error"] is not None)
        if r["parse_error"] is None:
            assert r["answer"] == r["category"] and r["input"].strip()
