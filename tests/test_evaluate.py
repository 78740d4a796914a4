"""Stage 5, evaluate: Wilson intervals, likelihood scoring, generation, on tiny built models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from psilm.errors import ConfigError, DataError
from psilm.stages.evaluate import EvaluateSettings, evaluate_model, option_logprobs, wilson_interval
from psilm.tasks import Example, load_task

# --- tiny models ---------------------------------------------------------------------------------


def build_tiny_model(folder: Path, tok, prefer: str | None = None) -> str:
    """A 2-layer Llama with the embedded model's tokenizer, saved as an HF folder.

    With `prefer`, the model is wired to put nearly all probability on that word's first token
    at every position, whatever the input: a model whose answer is known in advance.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=prefer is None,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    if prefer is not None:
        with torch.no_grad():
            for layer in model.model.layers:  # blocks add nothing to the residual stream
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.model.embed_tokens.weight.fill_(1.0)  # every position's final hidden state is all ones
            model.lm_head.weight.zero_()
            model.lm_head.weight[tok(prefer, add_special_tokens=False)["input_ids"][0]] = 0.5  # logit 16
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded model's tokenizer and chat template, read from its GGUF file."""
    from transformers import AutoTokenizer

    from psilm.llm.registry import resolve_model

    embedded = resolve_model("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(embedded.path), gguf_file=embedded.gguf_file)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), tokenizer)


@pytest.fixture(scope="module")
def likes_positive(tmp_path_factory, tokenizer) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("likes_positive"), tokenizer, prefer="positive")


@pytest.fixture(scope="module")
def sst2():
    return load_task("sst2")


def reviews(task, labels: list[str]) -> list[Example]:
    return [task.example({"text": f"review number {i}", "label": lab}) for i, lab in enumerate(labels)]


# --- Wilson interval -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(50, 100, z=2.576)  # 99%: wider than 95%
    lo95, hi95 = wilson_interval(50, 100)
    assert lo < lo95 < 0.5 < hi95 < hi


# --- likelihood ----------------------------------------------------------------------------------
def test_likelihood_picks_the_option_the_model_prefers(sst2, likes_positive):
    examples = reviews(sst2, ["positive", "negative", "positive", "negative", "negative"])
    result = evaluate_model(sst2, likes_positive, examples, EvaluateSettings(batch_size=2), device="cpu")

    assert result["method"] == "likelihood"  # auto: classification has options
    assert [p["pred"] for p in result["predictions"]] == ["positive"] * 5
    assert (result["correct"], result["n"], result["accuracy"]) == (2, 5, 0.4)
    assert result["ci95"] == pytest.approx(list(wilson_interval(2, 5)), abs=1e-4)
    assert result["per_class"] == {
        "negative": {"accuracy": 0.0, "n": 3, "predicted": 0},
        "positive": {"accuracy": 1.0, "n": 2, "predicted": 5},  # every row answered positive
    }
    assert result["unparsed"] == 0
    first = result["predictions"][0]
    assert first == {"input": "review number 0", "gold": "positive", "pred": "positive", "correct": True}


def _naive_logprob(model, tok, messages, option) -> float:
    """One unpadded forward pass over prompt + option; sum of the option's token log-probs."""
    import torch

    def ids(msgs, gen):
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return tok(text, add_special_tokens=False)["input_ids"]

    prompt = ids(messages, True)
    full = ids(messages + [{"role": "assistant", "content": option}], False)
    assert full[: len(prompt)] == prompt
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)
    return sum(logp[t - 1, full[t]].item() for t in range(len(prompt), len(full)))


def test_batched_scores_match_one_by_one_scoring(tiny):
    """Shared prefix cache, padding after it, and options of different lengths change nothing."""
    from psilm.llm import hf

    mood = load_task(
        {
            "name": "mood",
            "kind": "classification",
            "description": "Say how the text feels.",
            "labels": ["yes", "no", "somewhat mixed feelings"],
        }
    )
    quiz = load_task(
        {
            "name": "quiz",
            "kind": "multiple_choice",
            "description": "Pick the answer.",
            "input_field": "q",
            "target_field": "a",
            "choices_field": "choices",
        }
    )
    cases = [
        (mood, [mood.example({"text": t, "label": "yes"}) for t in ["ok", "a much longer text, really"]]),
        (
            quiz,
            [
                quiz.example({"q": "2+2?", "choices": ["3", "4"], "a": "B"}),
                quiz.example(
                    {"q": "Which is a colour, of these four options?", "choices": list("wxyz"), "a": 0}
                ),
                quiz.example({"q": "Pick one", "choices": ["p", "q", "r"], "a": "C"}),
            ],
        ),
    ]
    cases.append((mood, cases[0][1][:1]))  # one prompt: all of it shared but its last token
    model, tok = hf.load(tiny, "cpu", "auto")
    for task, examples in cases:
        scores, tokens = option_logprobs(model, tok, task, examples, batch_size=2)
        assert tokens > 0
        for ex, got in zip(examples, scores, strict=True):
            options = task.answer_options(ex)
            want = [_naive_logprob(model, tok, task.prompt(ex.input), opt) for opt in options]
            assert got == pytest.approx(want, abs=1e-3)


def test_evaluation_leaves_the_cached_model_unchanged(sst2, tiny):
    import torch

    from psilm.llm import hf

    model, tok = hf.load(tiny, "cpu", "auto")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    side = tok.padding_side
    evaluate_model(sst2, tiny, reviews(sst2, ["positive", "negative"]), EvaluateSettings(), device="cpu")
    after = hf.load(tiny, "cpu", "auto")[0]
    assert after is model and not model.training and tok.padding_side == side
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_students_dtype_applies_at_evaluation(tiny_config, tmp_path, tiny):
    """models.student.dtype reaches evaluation, as it does generation and training: the zero_shot
    arm is scored by a bfloat16 copy of the model."""
    import torch

    from psilm.config import load_config
    from psilm.llm import hf
    from psilm.run import prepare, run_stage

    student = {"model": tiny, "device": "cpu", "dtype": "bfloat16"}
    cfg = {**tiny_config, "models": {"student": student}, "arms": ["zero_shot"]}
    cfg["emissions"] = {"enabled": False}
    ctx = prepare(load_config(data=cfg), tmp_path / "run", log=lambda m: None)
    loads = hf._cached.cache_info().misses
    run_stage(ctx, "evaluate", "zero_shot")
    result = ctx.folder.read(ctx.folder.arm_metrics("zero_shot"))
    assert result["n"] == 10 and result["method"] == "likelihood"
    assert hf._cached.cache_info().misses == loads + 1  # evaluation loaded one copy ...
    model, _ = hf.load(tiny, "cpu", "bfloat16")
    assert hf._cached.cache_info().misses == loads + 1  # ... and it is the bfloat16 one
    assert model.dtype == torch.bfloat16 and hf.load(tiny, "cpu", "auto")[0].dtype == torch.float32


# --- generation ----------------------------------------------------------------------------------
def test_generate_on_a_numeric_task_counts_unparsed(tiny):
    gsm8k = load_task("gsm8k")
    question = "Tom has {} apples and buys 2 more. How many now?"
    examples = [gsm8k.example({"question": question.format(i), "answer": f"#### {i + 2}"}) for i in range(4)]
    result = evaluate_model(gsm8k, tiny, examples, EvaluateSettings(max_tokens=6, batch_size=3), device="cpu")

    assert result["method"] == "generate" and result["n"] == 4
    preds = result["predictions"]
    assert result["unparsed"] == sum(p["pred"] is None for p in preds)
    assert all("text" in p for p in preds)  # the raw generation is kept beside the parsed answer
    assert 0.0 <= result["accuracy"] <= 1.0 and "per_class" not in result
    assert result["tokens"]["completion"] > 0


def test_generate_on_classification_extracts_the_label(sst2, likes_positive):
    examples = reviews(sst2, ["positive", "negative"])
    settings = EvaluateSettings(method="generate", max_tokens=4)
    result = evaluate_model(sst2, likes_positive, examples, settings, device="cpu")
    assert result["method"] == "generate"
    assert [p["pred"] for p in result["predictions"]] == ["positive", "positive"]
    assert result["accuracy"] == 0.5 and result["unparsed"] == 0


def test_free_text_reports_token_f1_beside_exact_match(tiny):
    from psilm.tasks.base import token_f1

    spec = {
        "name": "ft",
        "kind": "free_text",
        "description": "Answer.",
        "input_field": "q",
        "target_field": "a",
    }
    task = load_task(spec)
    examples = [task.example({"q": f"Name city {i}.", "a": "new york city"}) for i in range(3)]
    result = evaluate_model(task, tiny, examples, EvaluateSettings(max_tokens=6), device="cpu")
    preds = result["predictions"]
    want = sum(token_f1(p["pred"] or "", p["gold"]) for p in preds) / 3
    assert result["method"] == "generate" and result["token_f1"] == pytest.approx(want, abs=1e-4)
    assert result["token_f1"] >= result["accuracy"]  # exact matches score 1.0 in both


# --- errors --------------------------------------------------------------------------------------
def test_no_examples_is_a_data_error(sst2, tiny):
    with pytest.raises(DataError, match="no test examples"):
        evaluate_model(sst2, tiny, [], EvaluateSettings())


def test_likelihood_needs_options(tiny):
    gsm8k = load_task("gsm8k")
    examples = [gsm8k.example({"question": "1+1?", "answer": "#### 2"})]
    with pytest.raises(ConfigError, match="evaluate.method"):
        evaluate_model(gsm8k, tiny, examples, EvaluateSettings(method="likelihood"))


def test_result_is_plain_json(sst2, tiny):
    import json

    result = evaluate_model(sst2, tiny, reviews(sst2, ["positive"]), EvaluateSettings(), device="cpu")
    assert json.loads(json.dumps(result)) == result
    assert math.isfinite(result["duration_s"])
