"""A GGUF that transformers reads is unpacked once into a plain folder in psilm's cache: it reads as
the GGUF does (the same tokens and logits), later loads read the folder, a damaged one is named and
made again."""

import pytest
import torch

from psilm.llm import hf
from psilm.llm.registry import resolve_model

MESSAGES = [{"role": "user", "content": "Is this review positive? 'A gorgeous, witty, seductive movie.' 🙂"}]


def _logits(model, tok):
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return ids, model(ids).logits


@pytest.mark.slow
def test_the_unpacked_copy_reads_as_the_gguf_and_a_damaged_one_is_made_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PSILM_CACHE", str(tmp_path))
    r = resolve_model("smollm2-135m")
    direct, direct_tok = hf._read(str(r.path), r.gguf_file, torch.float32, copy_ok=False)
    hf.prepare_tokenizer(direct_tok)

    folder = hf.unpacked(r.file)
    assert folder is not None and folder.parent == tmp_path / "hf"
    assert (folder / hf.UNPACKED_MARK).is_file() and hf.unpacked(r.file) == folder  # made once
    model, tok = hf._read(str(r.path), r.gguf_file, torch.float32)
    hf.prepare_tokenizer(tok)
    assert tok.chat_template == direct_tok.chat_template
    assert (tok.pad_token_id, tok.eos_token_id) == (direct_tok.pad_token_id, direct_tok.eos_token_id)
    ids, logits = _logits(model, tok)
    direct_ids, direct_logits = _logits(direct.eval(), direct_tok)
    assert ids.tolist() == direct_ids.tolist() and torch.equal(logits, direct_logits)

    # the weights cut short: named on stderr, unpacked again, read as before
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    again, again_tok = hf._read(str(r.path), r.gguf_file, torch.float32)
    err = capsys.readouterr().err
    assert f"{folder}: could not be read" in err and "psilm unpacks it again" in err
    assert torch.equal(_logits(again, again_tok)[1], direct_logits)
