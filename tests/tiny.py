"""A tiny randomly initialised Llama with the embedded model's tokenizer, for fast deterministic runs."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer Llama with the embedded model's tokenizer (and chat template), saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from psilm.llm.registry import resolve_model

    embedded = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(str(embedded.path), gguf_file=embedded.gguf_file)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_model(tmp_path_factory) -> Path:
    """The tiny model, built once per test session (building it loads the GGUF tokenizer: seconds)."""
    folder = tmp_path_factory.getbasetemp() / "tiny-model"
    if not (folder / "model.safetensors").exists():
        build_tiny_model(folder)
    return folder


def write_tiny_run_config(folder: Path, model: Path, **sections: dict) -> Path:
    """A whole run (arm psi) on the tiny model: generator and student, person-written principles.

    Seeds and test rows come from the shipped SST-2 slice; `sections` override config sections.
    Generation and training on the tiny model take seconds, and with a fixed seed both are
    deterministic on CPU, so two runs of this config give identical files.
    """
    import json
    from importlib import resources

    import yaml

    demo = resources.files("psilm").joinpath("demo")
    rows = [json.loads(x) for x in demo.joinpath("sst2_train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in demo.joinpath("sst2_test.jsonl").read_text().splitlines()]
    seeds = _balanced(rows, 3)
    test = _balanced(test, 4)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    local = {"model": str(model), "device": "cpu", "batch_size": 4}
    cfg = {
        "name": "tiny",
        "seed": 0,
        "task": "sst2",
        "data": {"seeds": "seeds.jsonl", "test": "test.jsonl", "n_test": None},
        "models": {"generator": local, "student": local},
        "principles": {"file": str(demo.joinpath("sst2_principles.yaml"))},
        "generate": {"n": 24, "max_tokens": 24},
        "train": {"epochs": 1, "batch_size": 4, "max_length": 96},
        "evaluate": {"batch_size": 8},
        "arms": ["psi"],
        "emissions": {"enabled": False},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _balanced(rows: list[dict], k: int) -> list[dict]:
    return [r for r in rows if r["label"] == "positive"][:k] + [r for r in rows if r["label"] == "negative"][
        :k
    ]
