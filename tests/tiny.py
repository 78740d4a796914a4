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
