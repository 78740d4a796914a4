"""A GGUF student outside psilm: the Ollama Modelfile that serves it, and how often it picks the
answer its Hugging Face model picks (psilm export --to gguf checks this on the run's test rows)."""

from __future__ import annotations

import json
from pathlib import Path

from psilm.errors import PsilmError
from psilm.llm import hf
from psilm.llm.llamacpp_check import ensure_works
from psilm.run.finished import FinishedRun
from psilm.stages.evaluate.likelihood import encode, option_logprobs

# --- ollama ---------------------------------------------------------------------------------------------
_SYSTEM_MARK = "\x00psilm-system\x00"
_INPUT_MARK = "\x00psilm-input\x00"
_ANSWER_MARK = "\x00psilm-answer\x00"


def ollama_modelfile(fin: FinishedRun, model: Path, gguf_name: str) -> str:
    """An Ollama Modelfile for `gguf_name`, read as psilm's student reads: the student's chat template
    rendered around a system message (the task's instruction) and the user's input, turned into
    Ollama's Go template; greedy (temperature 0), stopping at the end of the assistant's turn."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    task = fin.task
    user = task.user_text(_INPUT_MARK)
    messages = [{"role": "system", "content": _SYSTEM_MARK}, {"role": "user", "content": user}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(
        [*messages, {"role": "assistant", "content": _ANSWER_MARK}], tokenize=False
    )
    if _SYSTEM_MARK not in prompt or _INPUT_MARK not in prompt:
        raise PsilmError(
            f"--to gguf: the student's chat template ({model}) drops the system or user message; "
            "psilm cannot write an Ollama template for it"
        )
    end_of_turn = full.split(_ANSWER_MARK, 1)[1].strip() if _ANSWER_MARK in full else ""
    stops = list(dict.fromkeys(s for s in (end_of_turn, tok.eos_token) if s))
    template = (
        _go_literal(prompt)
        .replace(_go_literal(_SYSTEM_MARK), "{{ .System }}")
        .replace(_go_literal(_INPUT_MARK), "{{ .Prompt }}")
    )
    lines = [
        f"# psilm run {fin.cfg.name}: task {task.name} ({task.kind}); `ollama create NAME -f Modelfile`",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        f'SYSTEM """{task.instruction()}"""',
        "PARAMETER temperature 0",
        f"PARAMETER num_predict {fin.cfg.evaluate.max_tokens}",
        *(f"PARAMETER stop {json.dumps(s)}" for s in stops),
    ]
    return "\n".join(lines) + "\n"


def _go_literal(text: str) -> str:
    """Text that a Go template prints as it is: `{{` would open an action."""
    return text.replace("{{", '{{ "{{" }}')


# --- checking a GGUF against the HF model ---------------------------------------------------------------
def gguf_option_logprobs(llm, encoded) -> list[list[float]]:
    """Each option's log-probability as psilm's option_logprobs computes it, by llama.cpp: the
    same token ids (the HF tokenizer's, from evaluate's _encode), the prompt decoded once, each
    option continuing it. `llm` is a llama_cpp.Llama made with logits_all=True."""
    import numpy as np

    out = []
    for prompt, options in encoded:
        llm.reset()
        llm.eval(prompt)
        scores = []
        for cont, start in options:
            llm.n_tokens = len(prompt)  # the next eval drops the previous option's cache cells
            llm.eval(cont)
            rows = np.asarray(llm.scores[len(prompt) - 1 : len(prompt) + len(cont) - 1], dtype=np.float64)
            logp = rows - np.logaddexp.reduce(rows, axis=-1, keepdims=True)
            scores.append(float(sum(logp[j, cont[j]] for j in range(start, len(cont)))))
        out.append(scores)
    return out


def gguf_agreement(model: str | Path, gguf: str | Path, task, examples, batch_size: int = 8) -> dict:
    """How often a GGUF file picks the same answer option as the HF model it came from, each option
    scored as psilm's evaluate scores it. Returns n, agree (rows with the same pick), each model's
    correct picks, the largest difference of the two models' option log-probabilities (relative
    to the first option), and the token check (the GGUF's tokenizer gives the HF tokenizer's ids
    on the first prompt)."""
    import llama_cpp
    import numpy as np

    if not all(task.answer_options(ex) for ex in examples):
        raise PsilmError(
            f"task {task.name} ({task.kind}) has no answer options: GGUF agreement is measured on "
            "classification and multiple-choice tasks"
        )
    weights, tok = hf.load(str(model), "cpu", "float32")
    ref, _ = option_logprobs(weights, tok, task, examples, batch_size)
    encoded = [encode(tok, task.prompt(ex.input), task.answer_options(ex)) for ex in examples]
    ensure_works(Path(gguf), 1)  # in a child first: a crash here would end this process
    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    try:
        first = task.prompt(examples[0].input)
        text = tok.apply_chat_template(first, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        same_tokens = llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        got = gguf_option_logprobs(llm, encoded)
    finally:
        llm.close()
    agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(ref, got, strict=True))

    def correct(scores: list[list[float]]) -> int:
        return sum(
            task.answer_options(ex)[int(np.argmax(row))] == ex.answer
            for ex, row in zip(examples, scores, strict=True)
        )

    diff = max(
        abs((a[i] - a[0]) - (b[i] - b[0])) for a, b in zip(ref, got, strict=True) for i in range(len(a))
    )
    return {
        "n": len(examples),
        "agree": agree,
        "agreement": agree / len(examples),
        "hf_correct": correct(ref),
        "gguf_correct": correct(got),
        "max_logprob_diff": diff,
        "same_tokens": same_tokens,
    }
