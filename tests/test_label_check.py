"""generate.label_check: every new input scored under each label's list header, and the filter's
`label_unlikely` drop (filter.label_margin); real backends, a real run on the tiny model."""

from __future__ import annotations

import json
import re

import pytest
from tiny import tiny_model, write_tiny_run_config

from psilm.config import load_config
from psilm.durable import JsonlLog
from psilm.errors import ConfigError
from psilm.llm import ModelConfig, load_backend
from psilm.llm.base import text_logprob
from psilm.llm.calls import ModelCaller
from psilm.shell.cli import main
from psilm.stages.filter import FilterSettings, filter_instances
from psilm.stages.generate import GenerateSettings, generate_instances
from psilm.tasks import load_task


def _record(i: int, label: str, scores: dict[str, float]) -> dict:
    return {"id": f"r{i}", "mode": "psi", "input": f"Question number {i} about something ?",
            "raw_input": f"Question number {i} about something ?", "output": label, "answer": label,
            "category": label, "votes": [], "parse_error": None, "label_scores": scores}  # fmt: skip


def test_filter_drops_inputs_whose_label_is_more_than_the_margin_behind():
    task = load_task("trec")
    recs = [
        _record(0, "human", {"human": -10.0, "numeric": -12.0}),  # its label is the best
        _record(1, "human", {"human": -10.5, "numeric": -10.0}),  # 0.5 nats behind
        _record(2, "numeric", {"human": -8.0, "numeric": -11.0}),  # 3 nats behind
        {**_record(3, "human", {}), "label_scores": None},  # not checked: no opinion
    ]
    kept, report = filter_instances(task, recs, [], None, FilterSettings())  # margin 1
    assert [r["id"] for r in kept] == ["r0", "r1", "r3"]
    assert report["dropped"] == {"label_unlikely": 1}
    kept0, _ = filter_instances(task, recs, [], None, FilterSettings(label_margin=0))
    assert [r["id"] for r in kept0] == ["r0", "r3"]
    _, most = filter_instances(task, recs[1:3], [], None, FilterSettings(label_margin=0))
    assert "mostly label_unlikely" in most["warning"] and "filter.label_margin" in most["warning"]
    kept5, _ = filter_instances(task, recs, [], None, FilterSettings(label_margin=5))
    assert len(kept5) == 4


@pytest.fixture(scope="module")
def llamacpp():
    b = load_backend(ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=512, n_threads=1))
    yield b
    b.close()


def test_llamacpp_scores_match_one_at_a_time_whatever_the_order(llamacpp):
    """The prompt is read once for all its texts: scores must not depend on what came before."""
    task = load_task("trec")
    prompts = [task.label_check_prompt(lb) for lb in ("human", "numeric", "human", "numeric")]
    texts = [" Who wrote Hamlet ?", " Who wrote Hamlet ?", " How far is the Moon ?", " How far is the Moon ?"]
    together = llamacpp.score(prompts, texts)
    alone = [llamacpp.score([p], [t])[0] for p, t in zip(prompts[::-1], texts[::-1], strict=True)][::-1]
    assert [round(s.logprob, 3) for s in together] == [round(s.logprob, 3) for s in alone]
    for s in together:
        assert s.logprob < 0 and s.text_tokens >= 4 and s.prompt_tokens > s.text_tokens
    assert together[0].logprob != together[1].logprob  # the header changes the text's likelihood


def test_transformers_score_is_the_models_own_log_probability(tmp_path_factory):
    import torch

    backend = load_backend(ModelConfig(backend="transformers", model=str(tiny_model(tmp_path_factory))))
    prompt, text = "Questions:\n1.", " Who wrote Hamlet ?"
    (s,) = backend.score([prompt], [text])
    tok = backend.tokenizer
    full = tok(prompt + text)["input_ids"]
    k = len(tok(prompt)["input_ids"])
    with torch.inference_mode():
        logits = backend.model(torch.tensor([full])).logits[0]
    by_hand = torch.log_softmax(logits[k - 1 : -1].float(), -1)[torch.arange(len(full) - k), full[k:]].sum()
    assert s.logprob == pytest.approx(float(by_hand), abs=1e-3) and s.text_tokens == len(full) - k
    assert text_logprob([[0.0, 0.0]], [1]) == pytest.approx(-0.6931, abs=1e-4)  # log(1/2)


def test_generate_scores_every_input_under_every_label_and_resumes_from_its_log(tmp_path, llamacpp):
    task = load_task("trec")
    rows = [("What does NASA stand for ?", "abbreviation"), ("Why is the sky blue ?", "description"),
            ("What kind of tree is a maple ?", "entity"), ("Who wrote Hamlet ?", "human"),
            ("Where is Lake Titicaca ?", "location"), ("How far is the Moon ?", "numeric")]  # fmt: skip
    seeds = [task.example({"text": t, "label_name": lb}) for t, lb in rows] * 2
    settings = GenerateSettings(n=6, max_tokens=24, label_check=True)

    def run():
        gen = ModelCaller("generator", "smollm2-135m", lambda: llamacpp, JsonlLog(tmp_path / "g.jsonl"))
        check = ModelCaller("checker", "smollm2-135m", lambda: llamacpp, JsonlLog(tmp_path / "c.jsonl"))
        records, stats = generate_instances(
            task, seeds, [], gen, settings, seed=0, mode="direct", checker=check
        )
        return records, stats, check

    records, stats, check = run()
    good = [r for r in records if r["parse_error"] is None]
    assert good and stats["label_checked"] == len(good) and check.new_calls == 6 * len(good)
    for r in good:
        assert set(r["label_scores"]) == set(task.labels) and all(v < 0 for v in r["label_scores"].values())
    assert check.tokens["prompt"] > 0
    again, _, check2 = run()  # a resumed stage: every score from the log, none asked again
    assert check2.new_calls == 0 and again == records


def test_a_run_with_label_check_keys_and_records_the_checker(tmp_path_factory):
    base = tmp_path_factory.mktemp("label-check")
    model = tiny_model(tmp_path_factory)
    cfg = write_tiny_run_config(base / "cfg", model, generate={"n": 8, "label_check": True})
    run = base / "run"
    assert main(["run", str(cfg), "--out", str(run), "-q"]) == 0
    cands = [json.loads(x) for x in (run / "arms" / "psi" / "candidates.jsonl").read_text().splitlines()]
    scored = [c for c in cands if c["parse_error"] is None]
    assert scored and all(set(c["label_scores"]) == {"negative", "positive"} for c in scored)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["generate/psi"]["tokens"]["checker"]["prompt"] > 0
    shown = (run / "report.md").read_text()
    assert re.search(r"\| generate/psi \| done \|.*generator [\d,]+, checker [\d,]+ \|", shown)  # its tokens
    report = json.loads((run / "arms" / "psi" / "filter_report.json").read_text())
    assert report["n_kept"] + sum(report["dropped"].values()) == 8
    # a looser margin re-runs the filter and what follows, not generation (no model call)
    assert main(["run", str(cfg), "--out", str(run), "-q", "--set", "filter.label_margin=50"]) == 0
    again = json.loads((run / "manifest.json").read_text())
    assert again["stages"]["generate/psi"] == manifest["stages"]["generate/psi"]
    assert (
        "label_unlikely"
        not in json.loads((run / "arms" / "psi" / "filter_report.json").read_text())["dropped"]
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=gsm8k", "generate.label_check=true"],
         r"generate\.label_check .* 'gsm8k' is numeric, not classification"),
        (["generate.label_check=true", "models.generator.backend=openai"],
         r"models\.generator \(the default checker\) uses backend openai, which cannot score text"),
        (["generate.label_check=true", "models.checker.backend=vllm"], r"models\.checker uses backend vllm"),
        (["filter.label_margin=-1"], r"filter\.label_margin: Input should be greater than or equal to 0"),
    ],
)  # fmt: skip
def test_bad_label_check_settings_are_named(tiny_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data=tiny_config, overrides=overrides)


def test_bad_label_check_setting_exits_2_in_one_line(tmp_path_factory, capfd):
    cfg = write_tiny_run_config(tmp_path_factory.mktemp("bad"), tiny_model(tmp_path_factory))
    code = main(["run", str(cfg), "--out", str(tmp_path_factory.mktemp("r")), "--set", "task=gsm8k",
                 "--set", "generate.label_check=true"])  # fmt: skip
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err and "generate.label_check" in err
