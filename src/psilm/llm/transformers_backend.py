"""Local models through Hugging Face transformers: HF folders and GGUF files (dequantized).

The CPU default. Batched generation with left padding; the chat template comes from the
tokenizer (GGUF files carry theirs in their metadata). Raw completion (`complete`) tokenizes the
plain text as is.
"""

from __future__ import annotations

import threading

from psilm.llm import hf
from psilm.llm.base import Completion, Messages, SamplingParams, Scored, common_prefix_len, text_logprob
from psilm.llm.settings import TransformersModel

_LOCK = threading.Lock()


class TransformersBackend:
    def __init__(self, config: TransformersModel):
        self.config = config
        self.model_id = config.model
        # one copy per process (psilm.llm.hf), shared with other roles, training and evaluation
        self.model, self.tokenizer = hf.load(config.model, config.device, config.dtype)

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        # the rendered template holds its own special tokens (BOS where the model uses one)
        return self._run([self.render(m) for m in prompts], params, add_special_tokens=False)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Raw completion: the text as is, with the tokenizer's own BOS where the model wants one."""
        return self._run(list(prompts), params, add_special_tokens=True)

    def _run(self, texts: list[str], params: SamplingParams, add_special_tokens: bool) -> list[Completion]:
        out: list[Completion] = []
        bs = self.config.batch_size
        for start in range(0, len(texts), bs):
            out.extend(self._batch(texts[start : start + bs], params, start, add_special_tokens))
        return out

    def _batch(
        self, texts: list[str], params: SamplingParams, offset: int, add_special_tokens: bool
    ) -> list[Completion]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
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
        for i in range(len(texts)):
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

    def score(self, prompts: list[str], texts: list[str]) -> list[Scored]:
        """Log-probability of each text continuing its plain-text prompt (one forward pass each)."""
        import torch

        out = []
        for prompt, text in zip(prompts, texts, strict=True):
            pre = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
            full = self.tokenizer(prompt + text, add_special_tokens=True)["input_ids"]
            k = max(1, min(common_prefix_len(pre, full), len(full) - 1))
            with _LOCK, torch.inference_mode():
                logits = self.model(torch.tensor([full], device=self.model.device)).logits[0]
            rows = logits[k - 1 : len(full) - 1].float().cpu().numpy()
            out.append(Scored(text_logprob(rows, full[k:]), len(full), len(full) - k))
        return out

    def close(self) -> None:
        pass
