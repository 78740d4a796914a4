"""Generation: plans, prompts, targets and records (scripted generator), plus one real-model run."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from psilm.durable import JsonlLog
from psilm.errors import ConfigError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.generate import GenerateSettings, draw_instances, generate_instances, principles_shown
from psilm.stages.generate.prompts import parse_pair
from psilm.stages.generate.settings import PER_LABEL
from psilm.stages.principles.file import load_principles_file
from psilm.tasks import load_task
from psilm.tasks.kinds import majority, with_final_answer

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
        # system + user, as a template would
        return self.complete(["\n".join(msg["content"] for msg in m) for m in prompts], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        out = []
        for text in prompts:
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
    plans = draw_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=60), seed=0)
    assert Counter(p["category"] for p in plans) == {lb: 10 for lb in trec.labels}
    for block in range(10):  # and each run of six holds every label once
        assert {p["category"] for p in plans[block * 6 : (block + 1) * 6]} == set(trec.labels)
    # n not set (the Python API without a RunConfig): the default a label, as a config resolves it
    unset = draw_instances(trec, trec_seeds, trec_principles, GenerateSettings(), seed=0)
    assert Counter(p["category"] for p in unset) == {lb: PER_LABEL for lb in trec.labels}


def test_plan_is_deterministic_per_seed_and_index(trec, trec_seeds, trec_principles):
    def plan(n, seed):
        return draw_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=n), seed)

    assert plan(30, 5) == plan(30, 5)
    assert plan(30, 5) != plan(30, 6)
    assert plan(30, 5)[:12] == plan(12, 5)  # plan i does not depend on n


def test_demos_share_the_label(trec, trec_seeds, trec_principles):
    plans = draw_instances(trec, trec_seeds, trec_principles, GenerateSettings(n=24), seed=1)
    for p in plans:
        assert len(p["demo_ids"]) == 2
        assert {trec_seeds[i].category for i in p["demo_ids"]} == {p["category"]}


@pytest.mark.parametrize("k", [1, 2, None])
def test_principle_sampling_respects_count_and_category(trec, trec_seeds, trec_principles, k):
    by_id = {p["id"]: p for p in trec_principles}
    settings = GenerateSettings(n=30, principles_per_instance=k, principle_mix="own_first")
    for plan in draw_instances(trec, trec_seeds, trec_principles, settings, seed=2):
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
    """`category_weights: train` stands for the labels' shares of data.train, less test-split rows."""
    import yaml

    from psilm.config import load_config
    from psilm.run import prepare, run_stage

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
    assert ctx.category_weights == want
    # the config keeps the user's word; the generate stage records the shares it drew by
    assert yaml.safe_load(ctx.folder.config.read_text())["generate"]["category_weights"] == "train"
    ctx.caller = lambda role, stage, model: caller(tmp_path / "raw.jsonl", Scripted(lambda *_: "Who ?"))
    run_stage(ctx, "generate", "direct")
    st = json.loads(ctx.folder.manifest_path.read_text())["stages"]["generate/direct"]
    assert st["category_weights"] == want and st["by_category"]["human"] > st["by_category"]["numeric"]

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


def test_principle_mix_levels_shows_every_level(trec, trec_seeds, trec_principles):
    """principle_mix: levels puts one of the category's own and one task-level principle in each
    two-principle prompt, so no written level goes unseen; own_first never shows the task level."""
    by_id = {p["id"]: p for p in trec_principles}
    for mix, task_shown in (("own_first", False), ("levels", True)):
        settings = GenerateSettings(n=30, principle_mix=mix)
        plans = draw_instances(trec, trec_seeds, trec_principles, settings, seed=2)
        for plan in plans:
            levels = sorted(by_id[i]["level"] for i in plan["principle_ids"])
            assert levels == (["category", "task"] if task_shown else ["category", "category"])
            assert all(by_id[i]["category"] in (None, plan["category"]) for i in plan["principle_ids"])
        assert (principles_shown(trec_principles, plans)[1] is None) == task_shown


def test_principle_mix_task_header_puts_the_tasks_rules_in_every_prompt(trec, trec_seeds, trec_principles):
    """task_header: every task-level principle heads every prompt, outside principles_per_instance,
    which the category's own fill; no written level goes unseen."""
    by_id = {p["id"]: p for p in trec_principles}
    rules = [p["id"] for p in trec_principles if p["level"] == "task" and p["use"] in ("create", "both")]
    assert rules
    plans = draw_instances(
        trec, trec_seeds, trec_principles, GenerateSettings(n=30, principle_mix="task_header"), 2
    )
    for plan in plans:
        ids = plan["principle_ids"]
        assert ids[: len(rules)] == rules
        assert [by_id[i]["category"] for i in ids[len(rules) :]] == [plan["category"]] * 2
    assert principles_shown(trec_principles, plans)[1] is None


def test_category_weights(trec, trec_seeds, trec_principles):
    w = {"human": 3, "numeric": 1}
    plans = draw_instances(
        trec, trec_seeds, trec_principles, GenerateSettings(n=40, category_weights=w), seed=0
    )
    assert Counter(p["category"] for p in plans) == {"human": 30, "numeric": 10}
    with pytest.raises(ConfigError, match="generate.category_weights"):
        draw_instances(
            trec, trec_seeds, trec_principles, GenerateSettings(n=4, category_weights={"animal": 1}), seed=0
        )
    with pytest.raises(ConfigError, match="resolved from data.train"):
        draw_instances(
            trec, trec_seeds, trec_principles, GenerateSettings(n=4, category_weights="train"), seed=0
        )


def test_non_classification_categories_come_from_principles():
    task = load_task("gsm8k")
    seeds = [task.example({"question": f"Q{i}? How many?", "answer": f"#### {i}"}) for i in range(4)]
    principles = load_principles_file(CONFIGS / "gsm8k.yaml", task)["principles"]
    plans = draw_instances(task, seeds, principles, GenerateSettings(n=8, principles_per_instance=1), seed=0)
    assert Counter(p["category"] for p in plans) == {
        c: 2 for c in ("money", "rates-and-time", "fractions-and-percents", "counting-and-groups")
    }
    assert all(len(p["solve_principle_ids"]) == 1 for p in plans)
    direct = draw_instances(task, seeds, principles, GenerateSettings(n=8), 0, mode="direct")
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
    # chat: a reply may hold a preamble and blank lines (a list reply is its first line)
    settings = GenerateSettings(
        n=12,
        temperature=0.8,
        top_p=0.9,
        max_tokens=40,
        prompt_style="chat",
        principles_per_instance=1,
        principle_mix="own_first",
    )
    records, stats = generate_instances(trec, trec_seeds, trec_principles, gen, settings, seed=0)
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["mode"] == "psi" and r["generator"] == {
            "model": "tiny-gen",
            "temperature": 0.8,
            "top_p": 0.9,
            "max_tokens": 40,
            "prompt_style": "chat",
            "structured": None,
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
    plans = draw_instances(trec, [], trec_principles, settings, seed=0)
    shown, warning = principles_shown(trec_principles, plans)
    assert shown == {"task": 12, "category": 12} and warning is None
    assert principles_shown(trec_principles, []) == ({"task": 0, "category": 0}, None)


def test_prompts_are_short_and_direct_mode_has_no_principles(tmp_path, trec, trec_seeds, trec_principles):
    prompts = []

    def reply(prompt, seen, params):
        prompts.append(prompt)
        return "What is a new question here?"

    gen = caller(tmp_path / "raw.jsonl", Scripted(reply))
    chat = GenerateSettings(n=6, prompt_style="chat", principle_mix="own_first")
    generate_instances(trec, trec_seeds, trec_principles, gen, chat, seed=0)
    assert all(p.count("Tip:") == 2 and len(p) < 800 for p in prompts)  # two principles by default
    numeric = next(p for p in prompts if 'labelled "numeric"' in p)
    assert "How far is the Moon" in numeric and "Who wrote Hamlet" not in numeric
    prompts.clear()
    records, stats = generate_instances(
        trec,
        trec_seeds,
        trec_principles,
        gen,
        GenerateSettings(n=6, prompt_style="chat"),
        seed=0,
        mode="direct",
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
    settings = GenerateSettings(n=6, label_descriptions=describe)
    generate_instances(trec, trec_seeds, trec_principles, gen, settings, seed=0, mode="direct")
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
        rules = [p["id"] for p in principles if p["level"] == "task" and p["use"] in ("create", "both")]
        # the default: the task's rules, then two sampled principles
        assert isinstance(r["raw_input"], str) and r["principle_ids"][: len(rules)] == rules
        assert len(r["principle_ids"]) == len(rules) + 2
        assert (r["input"] is None) == (r["parse_error"] is not None)
        if r["parse_error"] is None:
            assert r["answer"] == r["category"] and r["input"].strip()


# --- raw completion through the caller: own keys, same log and resume rule ----------------------
def test_raw_and_chat_requests_have_their_own_records_and_resume(tmp_path):
    backend = Scripted(lambda p, seen, x: f"reply {seen}")
    log = tmp_path / "raw.jsonl"
    text = "Questions:\n1. Who wrote Hamlet?\n2."
    params = SamplingParams(temperature=0.5, seed=1, stop=["\n"])
    out = caller(log, backend)([("r0", text), ("r1", text + " x")], params)
    assert [out["r0"].text, out["r1"].text] == ["reply 0", "reply 0"]
    # the same id and text as chat is another request: a new call, not the raw record
    chat = caller(log, backend)([("r0", [{"role": "user", "content": text}])], params)
    assert chat["r0"].text == "reply 1" and backend.calls == 3
    # a new caller over the same log (a resumed run) answers both kinds from disk
    again = caller(log, backend)
    raw = again([("r0", text), ("r1", text + " x")], params)
    assert again.new_calls == 0 and raw["r0"].text == "reply 0" and backend.calls == 3
    assert len(log.read_text().splitlines()) == 3
    # one backend call never mixes the two kinds
    with pytest.raises(ValueError, match="mixes"):
        caller(tmp_path / "other.jsonl", backend)(
            [("a", "x"), ("b", [{"role": "user", "content": "y"}])], params
        )


# --- chat prompts are as they were: old runs' raw logs and cache keys stay valid -----------------
class Recorder:
    """A Backend that records chat prompts and answers by a rule; raw completion is an error."""

    model_id = "rec"

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, params):
        self.prompts += prompts
        return [Completion(self.reply(m), 1, 1, "stop") for m in prompts]

    def complete(self, prompts, params):
        raise AssertionError("prompt_style chat sends chat messages only")

    def close(self):
        pass


def _chat_prompts(tmp_path) -> dict:
    """The prompts of tests/references/generate_chat_prompts.json, built as that file was (with
    the code before prompt styles existed)."""
    import json

    repo = CONFIGS.parents[1]

    def rows(path, n):
        return [json.loads(x) for x in (repo / path).read_text().splitlines()[:n]]

    def run(name, task, seeds, principles, settings, reply, mode="psi"):
        b = Recorder(reply)
        log = JsonlLog(tmp_path / f"{name}.jsonl")
        caller = ModelCaller("g", "rec", lambda: b, log)
        generate_instances(task, seeds, principles, caller, settings, seed=3, mode=mode)
        return b.prompts

    out = {}
    trec = load_task("trec")
    by: dict = {}
    for s in (trec.example(r) for r in rows("data/trec/train.jsonl", 400)):
        by.setdefault(s.category, []).append(s)
    seeds = [x for lb in trec.labels for x in by[lb][:2]]
    pr = load_principles_file(CONFIGS / "trec.yaml", trec)["principles"]
    chat = {"prompt_style": "chat", "principles_per_instance": 1, "principle_mix": "own_first"}  # as then

    def q(m):
        return "What is the capital of France ?"

    out["trec_psi"] = run(
        "a", trec, seeds, pr, GenerateSettings(n=6, verify_samples=1, **chat),
        lambda m: "What is a cat ?" if "Answer with one label" not in m[0]["content"] else "entity",
    )  # fmt: skip
    out["trec_direct"] = run("b", trec, seeds, [], GenerateSettings(n=6, **chat), q, "direct")
    bare = GenerateSettings(n=6, label_descriptions=False, **chat)
    out["trec_bare"] = run("c", trec, seeds, [], bare, q, "direct")
    sst = load_task("sst2")
    sseeds = [sst.example(r) for r in rows("data/sst2/train.jsonl", 8)]
    spr = load_principles_file(CONFIGS / "sst2.yaml", sst)["principles"]
    out["sst2_psi"] = run(
        "d",
        sst,
        sseeds,
        spr,
        GenerateSettings(n=4, **{**chat, "principles_per_instance": 2}),
        lambda m: "A fine film .",
    )
    gsm = load_task("gsm8k")
    gseeds = [gsm.example(r) for r in rows("data/gsm8k/train.jsonl", 4)]
    gpr = load_principles_file(CONFIGS / "gsm8k.yaml", gsm)["principles"]
    out["gsm8k_psi"] = run(
        "e", gsm, gseeds, gpr, GenerateSettings(n=3, solve_samples=2, **chat),
        lambda m: "Tom has 3 apples and buys 4 more. How many apples does he have?"
        if "Solution:" not in m[1]["content"] else "3+4=7\n#### 7",
    )  # fmt: skip
    free, mc = _pair_tasks()
    fseeds = [
        free.example({"q": "Who wrote Hamlet?", "a": "Shakespeare"}),
        free.example({"q": "What is the largest ocean?", "a": "Pacific"}),
    ]
    out["free_text"] = run(
        "f", free, fseeds, [], GenerateSettings(n=2, **chat),
        lambda m: "Question: What is the largest planet?\nAnswer: Jupiter",
    )  # fmt: skip
    mseeds = [
        mc.example({"q": "What is 2+2?", "c": ["3", "4"], "a": "B"}),
        mc.example({"q": "Sky colour?", "c": ["blue", "red", "green"], "a": 0}),
    ]
    out["multiple_choice"] = run(
        "g",
        mc,
        mseeds,
        [],
        GenerateSettings(n=2, **chat),
        lambda m: "Question: What is 1+1?\nA. 2\nB. 3\nAnswer: A",
    )
    return out


def _pair_tasks():
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
    return free, mc


def test_chat_prompts_are_byte_identical_to_the_reference(tmp_path):
    import json

    reference = json.loads((Path(__file__).parent / "references" / "generate_chat_prompts.json").read_text())
    assert _chat_prompts(tmp_path) == reference


# --- list prompts: plain text to continue -------------------------------------------------------
def _record_raw(prompts: list, params_seen: list, answer: str = " What is a new question here?"):
    def reply(prompt, seen, params):
        prompts.append(prompt)
        params_seen.append(params)
        return answer

    return reply


def test_list_prompt_for_classification(tmp_path, trec, trec_seeds, trec_principles):
    prompts, params = [], []
    backend = Scripted(_record_raw(prompts, params, " Who discovered penicillin ?\n4. Who wrote"))
    backend.generate = None  # list style must never send chat messages
    gen = caller(tmp_path / "raw.jsonl", backend)
    settings = GenerateSettings(n=6, prompt_style="list")
    records, stats = generate_instances(trec, trec_seeds, trec_principles, gen, settings, seed=0)
    human = next(p for p in prompts if 'labelled "human"' in p)
    lines = human.split("\n")
    assert lines[0] == trec.config.description
    assert lines[1] == f'Label "human": {trec.config.label_descriptions["human"]}.'
    by_id = {p["id"]: p for p in trec_principles}
    plan = next(r for r in records if r["category"] == "human")
    # the task's rules (every prompt), then the two sampled principles (the default), as statements
    rules = [p["id"] for p in trec_principles if p["level"] == "task" and p["use"] in ("create", "both")]
    ids = plan["principle_ids"]
    assert ids[: len(rules)] == rules and len(ids) == len(rules) + 2
    assert lines[2 : 2 + len(ids)] == [by_id[i]["text"] for i in ids]
    assert "Tip:" not in human and "Write one new" not in human
    assert lines[-4:] == [
        'Questions labelled "human":',
        "1. Who wrote Hamlet ?",
        "2. Who invented the telephone ?",
        "3.",
    ]
    assert all(p.stop == ["\n"] for p in params)
    # the answer is the first line; the label is the one asked for
    assert all(r["input"] == "Who discovered penicillin ?" and r["answer"] == r["category"] for r in records)
    assert records[0]["generator"]["prompt_style"] == "list" and stats["parsed"] == 6


def test_list_prompt_direct_and_bare(tmp_path, trec, trec_seeds, trec_principles):
    prompts, params = [], []
    gen = caller(tmp_path / "raw.jsonl", Scripted(_record_raw(prompts, params)))
    direct = GenerateSettings(n=6, prompt_style="list")
    generate_instances(trec, trec_seeds, trec_principles, gen, direct, seed=0, mode="direct")
    numeric = next(p for p in prompts if 'labelled "numeric"' in p)
    assert numeric.split("\n")[:3] == [
        trec.config.description,
        f'Label "numeric": {trec.config.label_descriptions["numeric"]}.',
        "",
    ]  # no principle line
    prompts.clear()
    bare = GenerateSettings(n=6, prompt_style="list", label_descriptions=False)
    generate_instances(trec, trec_seeds, trec_principles, gen, bare, seed=0, mode="direct")
    numeric = next(p for p in prompts if 'labelled "numeric"' in p)
    assert numeric.split("\n")[1] == 'Label "numeric".' and "How far is the Moon" in numeric


def test_list_and_chat_requests_do_not_share_records(tmp_path, trec, trec_seeds, trec_principles):
    backend = Scripted(lambda p, seen, x: "What is a new question here?")
    log = tmp_path / "raw.jsonl"
    for style in ("chat", "list", "chat", "list"):  # the second round comes from the log
        settings = GenerateSettings(n=6, prompt_style=style)
        generate_instances(trec, trec_seeds, trec_principles, caller(log, backend), settings, seed=0)
    assert backend.calls == 12 and len(log.read_text().splitlines()) == 12


def test_list_prompt_for_numeric_solves_by_raw_completion(tmp_path):
    task, seeds = _gsm8k()
    prompts, params = [], []

    def reply(prompt, seen, p):
        prompts.append(prompt)
        params.append(p)
        if prompt.endswith("Solution:"):
            return " 3 + 4 = 7\n#### 7"
        return " Tom has 3 apples and buys 4 more. How many apples does he have?"

    backend = Scripted(reply)
    backend.generate = None
    settings = GenerateSettings(n=2, solve_samples=3, prompt_style="list")
    records, _ = generate_instances(task, seeds, [], caller(tmp_path / "r.jsonl", backend), settings, seed=0)
    first = prompts[0].split("\n")
    assert first[0].startswith("We write") and first[-1] == "3." and first[-3].startswith("1. ")
    assert params[0].stop == ["\n"]
    solve = prompts[-1]
    assert "Solve it step by step" in solve and "<<" not in solve and solve.endswith("Solution:")
    assert params[-1].stop == ["\nProblem:"]
    assert all(
        r["answer"] == "7" and r["output"].endswith("#### 7") and r["votes"] == ["7"] * 3 for r in records
    )


def test_list_prompt_for_question_and_answer_kinds(tmp_path):
    free, mc = _pair_tasks()
    seeds = [mc.example({"q": "What is 2+2?", "c": ["3", "4"], "a": "B"})]
    prompts, params = [], []
    backend = Scripted(_record_raw(prompts, params, " What is 1+1?\nA. 2\nB. 3\nAnswer: A\n"))
    records, _ = generate_instances(
        mc,
        seeds,
        [],
        caller(tmp_path / "r.jsonl", backend),
        GenerateSettings(n=1, prompt_style="list"),
        seed=0,
    )
    assert prompts[0].endswith("Question: What is 2+2?\nA. 3\nB. 4\nAnswer: B\n###\nQuestion:")
    assert params[0].stop == ["###"]
    assert records[0]["input"] == "What is 1+1?\nA. 2\nB. 3" and records[0]["answer"] == "A"
    # a log written without the stop still gives the first item only
    assert free.parse_generated(" Who?\nAnswer: Ann\n###\nQuestion: Why?\nAnswer: no", "list") == (
        "Who?",
        "Ann",
        None,
    )


def test_base_model_needs_list_prompts(tiny_config, tmp_path):
    from psilm.config import load_config

    with pytest.raises(ConfigError, match=r"generate\.prompt_style.*base model.*prompt_style=list"):
        load_config(
            data=tiny_config, overrides=["models.generator.model=gemma3-270m", "generate.prompt_style=chat"]
        )
    for role in ("teacher", "student"):
        with pytest.raises(ConfigError, match=rf"models\.{role}\.model: 'gemma3-270m' is a base model"):
            load_config(data=tiny_config, overrides=[f"models.{role}.model=gemma3-270m"])
    cfg = load_config(
        data=tiny_config, overrides=["models.generator.model=gemma3-270m", "generate.prompt_style=list"]
    )
    assert cfg.generate.prompt_style == "list"
    # and in the stage itself, for callers that build settings by hand
    task = load_task("trec")
    gen = ModelCaller("generator", "gemma3-270m", lambda: None, JsonlLog(tmp_path / "r.jsonl"))
    with pytest.raises(ConfigError, match="generate.prompt_style"):
        generate_instances(task, [], [], gen, GenerateSettings(n=1, prompt_style="chat"), seed=0)
