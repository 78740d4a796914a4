"""Structured generation: one JSON object per instance in the data's own fields, its schema from the
task's kind, held to it by backends that can (llama.cpp grammar, vLLM structured outputs, OpenAI
response_format) and parsed or dropped (with a counted reason) elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_fields import FIXTURES, MC5, NLI
from test_generate import Scripted, caller

from psilm.data import load_examples
from psilm.durable import JsonlLog
from psilm.llm import LlamaCppModel, ModelConfig, load_backend
from psilm.llm.base import SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.llm.openai_backend import response_format
from psilm.llm.vllm_backend import request_kwargs
from psilm.stages.filter import filter_instances
from psilm.stages.generate import GenerateSettings, generate_instances, structured_mode
from psilm.tasks import load_task
from psilm.tasks.structured import first_object

QA = {
    "name": "qa",
    "kind": "free_text",
    "description": "Answer a trivia question in a few words.",
    "input_name": "question",
    "input_field": "question",
    "target_field": "answer",
}


def seeds_of(name: str):
    task = load_task({"nli": NLI, "mc5": MC5}[name])
    return task, load_examples(task, FIXTURES / name / "train.jsonl")


# --- the schema: one home, the task's kind ----------------------------------------------------------
def test_schema_per_kind():
    nli, nli_seeds = seeds_of("nli")
    assert nli.multi_part and nli.instance_schema(nli_seeds) == {
        "type": "object",
        "properties": {"premise": {"type": "string"}, "hypothesis": {"type": "string"}},
        "required": ["premise", "hypothesis"],
        "additionalProperties": False,
    }
    mc5, mc_seeds = seeds_of("mc5")
    props = mc5.instance_schema(mc_seeds)["properties"]
    assert list(props) == ["question", "choices", "answerKey"]  # the data's own names, in writing order
    assert props["choices"] == {"type": "array", "items": {"type": "string"}, "minItems": 5, "maxItems": 5}
    assert props["answerKey"] == {"type": "string", "enum": ["A", "B", "C", "D", "E"]}
    qa = load_task(QA)
    assert qa.multi_part and list(qa.instance_schema([])["properties"]) == ["question", "answer"]
    sst2 = load_task("sst2")  # one field, label drawn: nothing to keep apart
    assert not sst2.multi_part and list(sst2.instance_schema([])["properties"]) == ["text"]


def test_seeds_become_objects_that_parse_back_to_the_same_instance():
    for name in ("nli", "mc5"):
        task, seeds = seeds_of(name)
        for x in seeds:
            obj = task.instance_object(x)
            assert list(obj) == list(task.instance_schema(seeds)["properties"])
            text, answer, fields, reason = task.parse_instance(json.dumps(obj))
            assert reason is None and text == x.input and fields == obj
            assert answer == (x.answer if name == "mc5" else None)


# --- parsing: good objects in any dress, bad ones dropped with a reason -----------------------------
MC_GOOD = {"question": "What do you wear on your feet?", "choices": ["hat", "shoes", "cup", "tree", "door"],
           "answerKey": "B"}  # fmt: skip

LABELLED = list(zip("ABCDE", MC_GOOD["choices"], strict=True))


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(MC_GOOD),
        "Sure! Here it is:\n```json\n" + json.dumps(MC_GOOD, indent=2) + "\n```\nHope it helps.",
        json.dumps({**MC_GOOD, "answerKey": "shoes"}),  # the answer written as its choice
        json.dumps({**MC_GOOD, "choices": [{"label": c, "text": t} for c, t in LABELLED]}),
        json.dumps({**MC_GOOD, "answerKey": 1}),  # a 0-based index, as some data sets have it
    ],
)
def test_mc_object_parses(raw):
    mc5, _ = seeds_of("mc5")
    text, answer, fields, reason = mc5.parse_instance(raw)
    assert reason is None and answer == "B"
    assert text == "What do you wear on your feet?\nA. hat\nB. shoes\nC. cup\nD. tree\nE. door"
    assert fields == {**MC_GOOD, "answerKey": "B"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("What do you wear? A. hat B. shoes\nAnswer: B", "unparseable_json"),
        ('{"question": "What do you wear on your feet?", "choices": ["hat", "sho', "unparseable_json"),
        ("[1, 2, 3]", "unparseable_json"),
        ('{"note": 1} then ' + json.dumps(MC_GOOD), "missing_field:question"),  # the first object counts
        (json.dumps({k: v for k, v in MC_GOOD.items() if k != "question"}), "missing_field:question"),
        (json.dumps({**MC_GOOD, "question": "  "}), "missing_field:question"),
        (json.dumps({**MC_GOOD, "question": ["a list"]}), "missing_field:question"),
        (json.dumps({k: v for k, v in MC_GOOD.items() if k != "choices"}), "missing_field:choices"),
        (json.dumps({**MC_GOOD, "choices": "hat, shoes"}), "bad_choices"),
        (json.dumps({**MC_GOOD, "choices": ["hat"]}), "bad_choices"),
        (json.dumps({**MC_GOOD, "choices": ["hat", "Hat", "cup"]}), "bad_choices"),
        (json.dumps({**MC_GOOD, "choices": ["hat", "", "cup"]}), "bad_choices"),
        (json.dumps({k: v for k, v in MC_GOOD.items() if k != "answerKey"}), "missing_field:answerKey"),
        (json.dumps({**MC_GOOD, "answerKey": "Z"}), "bad_answer"),
        (json.dumps({**MC_GOOD, "answerKey": "socks"}), "bad_answer"),
    ],
)
def test_mc_bad_object_is_dropped_with_reason(raw, reason):
    mc5, _ = seeds_of("mc5")
    assert mc5.parse_instance(raw) == (None, None, None, reason)


def test_pair_and_free_text_objects():
    nli, _ = seeds_of("nli")
    good = nli.parse_instance('{"Premise": "A cat sleeps.", "hypothesis": "An animal rests."}')
    assert good[0] == "Premise: A cat sleeps.\nHypothesis: An animal rests." and good[3] is None
    assert (
        nli.parse_instance('{"premise": "A cat sleeps.", "hypothesis": ""}')[3] == "missing_field:hypothesis"
    )
    assert nli.parse_instance('{"premise": "A cat sleeps."}')[3] == "missing_field:hypothesis"
    qa = load_task(QA)
    assert qa.parse_instance('{"question": "Capital of France?", "answer": "Paris\\n"}')[:2] == (
        "Capital of France?",
        "Paris",
    )
    assert qa.parse_instance('{"question": "Year of the moon landing?", "answer": 1969}')[1] == "1969"
    assert qa.parse_instance('{"question": "Capital of France?"}')[3] == "missing_field:answer"
    assert first_object('{"a": {"b": 1}} {"c": 2}') == {"a": {"b": 1}} and first_object("{]") is None
    # a list prompt without a grammar opens the object: the answer continues after its first '"'
    assert qa.parse_instance('Capital of Peru?", "answer": "Lima"}', primed=True)[1] == "Lima"
    assert qa.parse_instance('{"question": "Capital of Peru?", "answer": "Lima"}', primed=True)[1] == "Lima"


# --- on or off: the setting, the kind and the backend ----------------------------------------------
def test_auto_is_on_for_multi_part_kinds_where_the_backend_constrains():
    mc5, _ = seeds_of("mc5")
    sst2 = load_task("sst2")
    llama = LlamaCppModel().json_constrained
    openai = ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1").json_constrained
    transformers = ModelConfig(backend="transformers").json_constrained
    vllm = ModelConfig(backend="vllm").json_constrained
    on = {"structured": "json", "constrained": True}
    assert structured_mode(mc5, GenerateSettings(), llama) == on
    assert structured_mode(mc5, GenerateSettings(), vllm) == on
    assert structured_mode(mc5, GenerateSettings(), transformers) is None
    assert structured_mode(mc5, GenerateSettings(), openai) is None  # /completions takes no schema
    assert structured_mode(mc5, GenerateSettings(prompt_style="chat"), openai) == on
    assert structured_mode(sst2, GenerateSettings(), llama) is None  # one part: the old lines
    assert structured_mode(mc5, GenerateSettings(structured="off"), llama) is None
    assert structured_mode(mc5, GenerateSettings(structured="json"), transformers) == {
        "structured": "json",
        "constrained": False,
    }


def test_the_schema_is_part_of_a_request_key():
    plain = SamplingParams(max_tokens=8, seed=1)
    assert plain.key()["json_schema"] is None
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    gen = ModelCaller("generator", "m", lambda: None, JsonlLog(Path("/nonexistent/r.jsonl")))
    with_schema = SamplingParams(max_tokens=8, seed=1, json_schema=schema)
    assert gen._key("r", "text", plain) != gen._key("r", "text", with_schema)
    assert with_schema.key()["json_schema"] == schema


# --- requests each backend builds ---------------------------------------------------------------
def test_openai_and_vllm_requests_carry_the_schema():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert response_format(schema, "json_schema") == {
        "type": "json_schema",
        "json_schema": {"name": "instance", "schema": schema, "strict": True},
    }
    assert response_format(schema, "json_object") == {"type": "json_object", "schema": schema}
    params = SamplingParams(temperature=0.5, max_tokens=9, seed=3, json_schema=schema)
    kw = request_kwargs(params, 2)
    assert kw["structured_outputs"] == {"json": schema} and kw["seed"] == 5 and kw["max_tokens"] == 9
    assert "structured_outputs" not in request_kwargs(SamplingParams(), 0)


def test_openai_chat_request_body_has_response_format():
    from test_openai_backend import CHAT_BODY, stub_server

    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    params = SamplingParams(max_tokens=4, json_schema=schema)

    def reply(n, req):
        return 200, {}, json.dumps(CHAT_BODY).encode()

    with stub_server(reply) as (url, seen):
        cfg = ModelConfig(backend="openai", base_url=url, model="stub", json_format="json_object")
        load_backend(cfg).generate([[{"role": "user", "content": "hi"}]], params)
    assert seen[0]["response_format"] == {"type": "json_object", "schema": schema}


def test_a_server_that_refuses_response_format_names_json_format():
    from test_openai_backend import stub_server

    from psilm.errors import BackendError

    def refuse(n, req):
        return 400, {}, b'{"error": {"message": "unknown response_format type"}}'

    params = SamplingParams(max_tokens=4, json_schema={"type": "object"})
    with stub_server(refuse) as (url, _), pytest.raises(BackendError) as info:
        load_backend(ModelConfig(backend="openai", base_url=url, model="stub")).generate(
            [[{"role": "user", "content": "hi"}]], params
        )
    msg = str(info.value)
    assert "\n" not in msg and "json_format: json_object" in msg and "generate.structured=off" in msg


# --- generation without a constraint: JSON prompts, parse or drop, counted -------------------------
def test_unconstrained_json_generation_parses_or_drops_counted(tmp_path):
    mc5, seeds = seeds_of("mc5")
    replies = [
        json.dumps(MC_GOOD),
        "Question: What is red?\nA. sky\nB. apple\nAnswer: B",  # the old lines: not JSON
        json.dumps({**MC_GOOD, "question": "What grows in a garden?", "answerKey": "Q"}),
        json.dumps({**MC_GOOD, "question": "What do bees make?", "answerKey": "A"}),
    ]
    calls = iter(range(100))
    backend = Scripted(lambda text, seen, p: replies[next(calls) % 4])
    seen_params = []
    complete = backend.complete
    backend.complete = lambda prompts, params: seen_params.append(params) or complete(prompts, params)
    records, stats = generate_instances(
        mc5, seeds[:8], [], caller(tmp_path / "raw.jsonl", backend),
        GenerateSettings(n=8, structured="json"), seed=0, mode="direct",
    )  # fmt: skip
    assert seen_params[0].json_schema is None and seen_params[0].stop == ["\n"]  # nothing to hold it to
    assert all(text.endswith('}\n{"question": "') for text in backend.seen)  # the object opened
    assert stats["structured"] == "json" and stats["constrained"] is False
    assert stats["parse_errors"] == {"unparseable_json": 2, "bad_answer": 2}
    good = [r for r in records if r["parse_error"] is None]
    assert len(good) == 4 and all(r["generator"]["structured"] == "json" for r in records)
    for r in good:
        assert (
            set(r["fields"]) == {"question", "choices", "answerKey"}
            and r["answer"] == r["fields"]["answerKey"]
        )
        assert r["input"].splitlines()[1:] == [
            f"{ltr}. {c}" for ltr, c in zip("ABCDE", r["fields"]["choices"], strict=True)
        ]
    again, _ = generate_instances(  # resumed from the raw log: no new call, the same records
        mc5, seeds[:8], [], caller(tmp_path / "raw.jsonl", backend),
        GenerateSettings(n=8, structured="json"), seed=0, mode="direct",
    )  # fmt: skip
    assert again == records and len(seen_params) == 1
    kept, report = filter_instances(mc5, records, seeds, None)
    assert report["dropped"]["parse:unparseable_json"] == 2 and report["dropped"]["parse:bad_answer"] == 2
    assert {r["input"].split("\n")[0] for r in kept} == {MC_GOOD["question"], "What do bees make?"}


# --- the embedded model under the grammar: every answer parses -------------------------------------
@pytest.fixture(scope="module")
def llama():
    cfg = LlamaCppModel(n_threads=1)
    backend = load_backend(cfg)
    yield cfg, backend
    backend.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mc5", "nli"])
@pytest.mark.parametrize("style", ["list", "chat"])
def test_llamacpp_grammar_gives_parseable_objects(tmp_path, llama, name, style):
    cfg, backend = llama
    task, seeds = seeds_of(name)
    gen = ModelCaller("generator", cfg.model, lambda: backend, JsonlLog(tmp_path / "r.jsonl"),
                      json_constrained=cfg.json_constrained)  # fmt: skip
    settings = GenerateSettings(n=4, prompt_style=style)  # auto: on for these two kinds
    records, stats = generate_instances(task, seeds[:8], [], gen, settings, seed=0, mode="direct")
    assert stats["constrained"] is True
    keys = list(task.instance_schema(seeds)["properties"])
    for r in records:
        assert isinstance(json.loads(r["raw_input"]), dict), r["raw_input"]  # the whole answer is JSON
        # what a grammar cannot rule out: two choices alike (seen: ["spoon", "pillow", "spoon", ...])
        assert r["parse_error"] in (None, "bad_choices"), r
    good = [r for r in records if r["parse_error"] is None]
    assert len(good) >= 2
    for r in good:
        assert list(r["fields"]) == keys
        if name == "mc5":
            assert r["answer"] in "ABCDE" and len(r["fields"]["choices"]) == 5
        else:
            assert task.split_fields(r["input"])[1] is None and r["answer"] == r["category"]


# --- end to end: the shipped pair and 5-way multiple-choice configs, tiny settings -----------------
TINY = [
    "arms=[psi]", "data.n_test=10", "generate.n=8",
    "models.generator.n_threads=1", "train.epochs=1", "train.batch_size=4", "train.max_length=160",
    "emissions.enabled=false",
]  # fmt: skip


def check_run_folder(run: Path, name: str) -> None:
    """Every candidate asked for as JSON under the grammar; kept instances with every field, in the
    data's own names; every drop counted by its reason."""
    from psilm.config import load_config
    from psilm.run.folder import Layout

    task = load_task(load_config(run / "config.yaml").task)
    layout = Layout(run)
    candidates = [json.loads(x) for x in layout.candidates("psi").read_text().splitlines()]
    kept = [json.loads(x) for x in layout.rows("psi").read_text().splitlines()]
    report = json.loads(layout.filter_report("psi").read_text())
    assert len(candidates) == 8 and report["n_in"] == 8 and report["n_kept"] == len(kept) > 0
    assert all(c["generator"]["structured"] == "json" and c["generator"]["constrained"] for c in candidates)
    keys = {"nli": ["premise", "hypothesis"], "mc5": ["question", "choices", "answerKey"]}[name]
    for rec in kept:
        assert list(rec["fields"]) == keys, rec
        if name == "nli":
            fields, reason = task.split_fields(rec["input"])
            assert (
                reason is None
                and set(fields) == {"premise", "hypothesis"}
                and rec["answer"] == rec["category"]
            )
        else:
            lines = rec["input"].splitlines()
            assert lines[1:] == [
                f"{ltr}. {c}" for ltr, c in zip("ABCDE", rec["fields"]["choices"], strict=True)
            ]
            assert rec["answer"] == rec["fields"]["answerKey"] in "ABCDE"
    assert sum(report["dropped"].values()) + len(kept) == 8


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nli", "mc5"])
def test_config_generates_and_filters_json_instances(tmp_path, name):
    """configs/{nli,mc5}.yaml through the pipeline's generate and filter stages (no training)."""
    from psilm.config import load_config
    from psilm.run import prepare, run_stage

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml", TINY)
    ctx = prepare(cfg, tmp_path / "run", log=lambda m: None)
    run_stage(ctx, "generate", "psi")
    run_stage(ctx, "filter", "psi")
    check_run_folder(tmp_path / "run", name)


@pytest.mark.slow
def test_mc5_runs_end_to_end(tmp_path, capsys):
    """The multiple-choice config that kept no instance from 'Answer:' lines, the whole run."""
    from psilm.shell.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "mc5.yaml"
    run = tmp_path / "run"
    rc = main(["run", str(config), "--out", str(run), "-q", *[x for t in TINY for x in ("--set", t)]])
    assert rc == 0, capsys.readouterr().err
    check_run_folder(run, "mc5")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["arms"]["psi"]["n"] == 10
