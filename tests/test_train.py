"""Stage 4, train: TRL SFT on a tiny random model (plumbing), and one real LoRA step (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tiny import build_tiny_model

from psilm.errors import DataError
from psilm.llm.base import ModelConfig
from psilm.stages.evaluate import EvaluateSettings, evaluate_model
from psilm.stages.train import TrainSettings, to_dataset_rows, train_model
from psilm.tasks import Example, load_task

SST2 = Path(__file__).resolve().parents[1] / "data" / "sst2"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def sst2():
    return load_task("sst2")


def toy_examples(task, n: int = 8) -> list[Example]:
    """Short, clearly separated inputs: 'great ...' is positive, 'awful ...' negative."""
    words = ["film", "plot", "cast", "ending", "score", "script", "pacing", "acting"]
    out = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        text = f"{'great' if label == 'positive' else 'awful'} {words[i % len(words)]}"
        out.append(task.example({"text": text, "label": label}))
    return out


# --- data format ---------------------------------------------------------------------------------
def test_rows_are_conversational_prompt_completion(sst2):
    ex = toy_examples(sst2, 1)[0]
    (row,) = to_dataset_rows(sst2, [ex])
    assert row["prompt"] == sst2.prompt(ex.input)  # exactly what the student reads at evaluation
    assert row["completion"] == [{"role": "assistant", "content": ex.output}]


def test_empty_examples_is_a_data_error(sst2, tiny, tmp_path):
    with pytest.raises(DataError, match="no training examples"):
        train_model(sst2, [], ModelConfig(model=tiny), TrainSettings(), tmp_path, seed=0)


def test_rows_too_long_for_max_length_are_counted_or_a_clear_error(sst2, tiny, tmp_path):
    long = sst2.example({"text": "a very long and winding review " * 30, "label": "negative"})
    short = toy_examples(sst2, 4)
    settings = TrainSettings(epochs=1, batch_size=4, max_length=64)
    stats = train_model(sst2, [*short, long], ModelConfig(model=tiny), settings, tmp_path / "a", seed=0)
    assert stats["n_train"] == 4 and stats["n_too_long"] == 1  # what TRL dropped is said, not hidden
    with pytest.raises(DataError, match=r"all 1 training examples are longer than train.max_length=64"):
        train_model(sst2, [long], ModelConfig(model=tiny), settings, tmp_path / "b", seed=0)
    # unset (the default), it is the longest row's length: every row is trained on, none cut
    unset = TrainSettings(epochs=1, batch_size=4)
    stats = train_model(sst2, [*short, long], ModelConfig(model=tiny), unset, tmp_path / "c", seed=0)
    assert stats["n_train"] == 5 and stats["n_too_long"] == 0 and stats["max_length"] > 64


# --- LoRA ----------------------------------------------------------------------------------------
def test_lora_writes_adapter_and_merged_model_that_evaluates(sst2, tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    examples = toy_examples(sst2)
    settings = TrainSettings(epochs=1, batch_size=4)
    stats = train_model(sst2, examples, ModelConfig(model=tiny, device="cpu"), settings, tmp_path, seed=0)

    assert stats["n_train"] == 8 and stats["steps"] == 2 and stats["epochs"] == pytest.approx(1.0)
    assert stats["method"] == "lora" and stats["saved"] == ["adapter", "merged"]
    assert math.isfinite(stats["train_loss"]) and stats["train_tokens"] > 8 * 10
    assert stats["duration_s"] > 0 and stats["loss_curve"]
    json.dumps(stats)  # plain data

    # only the final model lands in out_dir: no checkpoint-* folders
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["adapter", "merged"]
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    merged = tmp_path / "merged"
    assert (merged / "config.json").exists() and (merged / "model.safetensors").exists()

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in name for name in model.state_dict())
    tok = AutoTokenizer.from_pretrained(merged)
    rendered = tok.apply_chat_template(sst2.prompt("x"), tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")  # the chat template travels with the model

    result = evaluate_model(sst2, str(merged), examples, EvaluateSettings(batch_size=3), device="cpu")
    assert result["n"] == 8 and result["method"] == "likelihood" and len(result["predictions"]) == 8


def test_same_seed_same_result(sst2, tiny, tmp_path):
    from safetensors.torch import load_file

    examples = toy_examples(sst2)
    settings = TrainSettings(epochs=1, batch_size=4)
    student = ModelConfig(model=tiny, device="cpu")
    a = train_model(sst2, examples, student, settings, tmp_path / "a", seed=3)
    b = train_model(sst2, examples, student, settings, tmp_path / "b", seed=3)
    assert a["loss_curve"] == b["loss_curve"]
    wa = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


# --- full fine-tuning ----------------------------------------------------------------------------
def test_full_finetuning_moves_the_model_to_its_targets(sst2, tiny, tmp_path):
    """Train on the label the untrained model does not pick: afterwards it picks it everywhere."""
    before = evaluate_model(sst2, tiny, toy_examples(sst2), EvaluateSettings(), device="cpu")
    picks = [p["pred"] for p in before["predictions"]]
    target = "negative" if picks.count("positive") >= picks.count("negative") else "positive"
    examples = [sst2.example({"text": ex.input, "label": target}) for ex in toy_examples(sst2)]

    settings = TrainSettings(method="full", epochs=4, batch_size=8, learning_rate=1e-2)
    stats = train_model(sst2, examples, ModelConfig(model=tiny, device="cpu"), settings, tmp_path, seed=0)

    assert stats["method"] == "full" and stats["saved"] == ["merged"] and stats["steps"] == 4
    assert not (tmp_path / "adapter").exists()
    curve = [loss for _, loss in stats["loss_curve"]]
    assert curve[-1] < curve[0]
    after = evaluate_model(sst2, str(tmp_path / "merged"), examples, EvaluateSettings(), device="cpu")
    assert after["accuracy"] == 1.0


# --- the embedded model --------------------------------------------------------------------------
@pytest.mark.slow
def test_lora_step_on_embedded_model_and_zero_shot_eval(sst2, tmp_path):
    rows = [json.loads(line) for line in (SST2 / "train.jsonl").read_text().splitlines()[:2]]
    train = [sst2.example(r) for r in rows]  # one of each label
    settings = TrainSettings(epochs=1, batch_size=2)
    student = ModelConfig(model="smollm2-135m", device="cpu")
    stats = train_model(sst2, train, student, settings, tmp_path / "a", seed=0)
    assert stats["steps"] == 1 and math.isfinite(stats["train_loss"])
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").exists()

    # training starts from a copy of the per-process inference model and never changes it
    from psilm.llm import hf

    cached, _ = hf.load("smollm2-135m", "cpu", "auto")
    before = {k: v.clone() for k, v in cached.state_dict().items()}
    again = train_model(sst2, train, student, settings, tmp_path / "b", seed=0)
    assert again["train_loss"] == stats["train_loss"]  # same seed, same result from the warm copy
    assert all(v.equal(before[k]) for k, v in cached.state_dict().items())
    assert not hasattr(cached, "peft_config")  # no adapter was put on the cached copy

    test_rows = [json.loads(line) for line in (SST2 / "test.jsonl").read_text().splitlines()]
    test = [sst2.example(r) for r in test_rows if r["label"] == "negative"][:5]
    test += [sst2.example(r) for r in test_rows if r["label"] == "positive"][:5]
    result = evaluate_model(sst2, "smollm2-135m", test, EvaluateSettings(), device="cpu")
    assert result["n"] == 10 and result["method"] == "likelihood" and result["unparsed"] == 0
    assert set(result["per_class"]) == {"negative", "positive"}
