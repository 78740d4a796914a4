"""Local models through Hugging Face transformers: HF folders and GGUF files (dequantized).

The CPU default. Batched generation with left padding; the chat template comes from the
tokenizer (GGUF files carry theirs in their metadata).
"""

from __future__ import annotations

import threading
from functools import lru_cache

from psilm.errors import BackendError
from psilm.llm.base import Completion, Messages, ModelConfig, SamplingParams
from psilm.llm.registry import ResolvedModel, resolve_model

_LOCK = threading.Lock()


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # bf16 matmuls are slow on most CPUs; fp32 there, bf16 on GPUs
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


@lru_cache(maxsize=4)
def load_model(path: str, gguf_file: str | None, device: str, dtype: str):
    """(model, tokenizer), cached per process: teacher, generator and student often share one."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, dev), **kwargs)
    except (OSError, ValueError) as e:
        raise BackendError(
            f"model at {path}{'/' + gguf_file if gguf_file else ''} could not be loaded: {e}"
        ) from None
    model.to(dev).eval()
    prepare_tokenizer(tok)
    return model, tok


def prepare_tokenizer(tok) -> None:
    """Left padding for batched generation, and a pad token where the model has none."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        # ChatML, which SmolLM2 and many small instruct models use
        tok.chat_template = (
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )


class TransformersBackend:
    def __init__(self, config: ModelConfig, resolved: ResolvedModel | None = None):
        self.config = config
        self.resolved = resolved or resolve_model(config.model)
        self.model_id = config.model
        self.model, self.tokenizer = load_model(
            str(self.resolved.path), self.resolved.gguf_file, config.device, config.dtype
        )

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        bs = self.config.batch_size
        for start in range(0, len(prompts), bs):
            out.extend(self._batch(prompts[start : start + bs], params, start))
        return out

    def _batch(self, prompts: list[Messages], params: SamplingParams, offset: int) -> list[Completion]:
        import torch

        texts = [self.render(m) for m in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        do_sample = params.temperature > 0
        gen_kwargs = dict(
            max_new_tokens=params.max_tokens,
            do_sample=do_sample,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if do_sample:
            gen_kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            gen_kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        with _LOCK, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed + offset)
            seqs = self.model.generate(**enc, **gen_kwargs)
        new = seqs[:, enc["input_ids"].shape[1] :]
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        results = []
        for i in range(len(prompts)):
            ids = new[i].tolist()
            n = next((j for j, t in enumerate(ids) if t in eos), None)
            finish = "stop" if n is not None else "length"
            ids = ids[:n] if n is not None else ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            for s in params.stop:
                if s in text:
                    text, finish = text.split(s, 1)[0], "stop"
            results.append(Completion(text.strip(), int(enc["attention_mask"][i].sum()), len(ids), finish))
        return results

    def close(self) -> None:
        pass
