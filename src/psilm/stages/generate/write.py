"""Stage 2: a small model writes new instances from seed demos and sampled principles.

Per instance (planned deterministically from (seed, index)): a category, a few seed demos and a
sample of the principles for that category. Step 1 asks the generator for a new input in a short
prompt, as a list to continue or as chat (`prompt_style`; the task's kind writes both, see
psilm.tasks.kinds); step 2 makes the target:

- classification: the label the generator was asked to write for (optionally re-labelled k times
  by the generator, recorded as votes for the filter);
- numeric: the generator solves it k times; the majority number is the answer, a tie gives none;
- multiple_choice / free_text: the generator writes question and answer in one response.

With `structured` on, step 1 asks for one JSON object per instance in the data's own field names
(psilm.tasks.structured): its schema comes from the task's kind, and a backend that can constrain
decoding (ModelBase.json_constrained) is held to it; elsewhere the object is parsed or dropped.

Prompts stay short (a few sampled principles, few demos): a long block of principles makes a
small generator drift and mislabel (docs/defaults.md#generate). Every record keeps its raw text,
the principles and demos that made it, and the model and sampling settings.
"""

from __future__ import annotations

from collections import Counter

from psilm.arms import Mode
from psilm.errors import ConfigError
from psilm.llm.base import SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.llm.registry import chat_capable
from psilm.stages.filter.clean import clean_input
from psilm.stages.generate.draw import draw_instances
from psilm.stages.generate.prompts import (
    input_prompt,
    structured_mode,
    target_prompt,
)
from psilm.stages.generate.settings import GenerateSettings
from psilm.tasks import Example, Task


def generate_instances(
    task: Task,
    seeds: list[Example],
    principles: list[dict],
    generator: ModelCaller,
    settings: GenerateSettings,
    seed: int,
    mode: Mode = "psi",
    checker: ModelCaller | None = None,
) -> tuple[list[dict], dict]:
    """(candidate records, stats). Request ids depend only on (mode, seed, index, step). `checker`
    scores the new inputs under every label when settings.label_check is on."""
    s = settings
    style = s.prompt_style
    # --- validate, then plan
    if style == "chat" and not chat_capable(generator.model_id):
        raise ConfigError(
            f"generate.prompt_style: chat needs a chat model, and generator {generator.model_id!r} is a "
            "base model; set generate.prompt_style=list"
        )
    by_id = {p["id"]: p for p in principles}
    plans = draw_instances(task, seeds, principles, s, seed, mode)
    calls_before = generator.new_calls
    rid = "generate/{mode}/{seed}/{i}/{step}".format
    gen = {
        "model": generator.model_id,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.pair_max_tokens if task.writes_answer else s.max_tokens,
    }
    gen["prompt_style"] = style
    structured = structured_mode(task, s, generator.json_constrained)
    gen.update(structured or {"structured": None})

    # --- step 1: a new input per plan, in one batch through the caller
    stop = task.list_stop() if style == "list" else []
    schema, primed = None, False
    if structured:  # one JSON object on one line; held to the schema where the backend can
        schema = task.instance_schema(seeds)
        # without a grammar a list prompt opens the object up to its first value (else a small
        # model starts a blank line, or a template's "{% ... %}" after a bare "{")
        primed = style == "list" and not structured["constrained"]
        stop = ["\n"] if primed else []
    params = SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=gen["max_tokens"],
        seed=seed,
        stop=stop,
        json_schema=schema if structured and structured["constrained"] else None,
    )
    requests = [
        (
            rid(mode=p["mode"], seed=seed, i=p["index"], step="input"),
            input_prompt(task, seeds, p, by_id, s.label_descriptions, style, structured is not None, primed),
        )
        for p in plans
    ]
    outs = generator(requests, params)
    records = []
    for p, (r, _) in zip(plans, requests, strict=True):
        raw = outs[r].text
        fields = None
        if structured:
            question, answer, fields, reason = task.parse_instance(raw, primed)
        else:
            question, answer, reason = task.parse_generated(raw, style)
        text = None
        if reason is None:
            text, reason = clean_input(question, task)
        records.append(
            {
                "id": p["id"],
                "mode": p["mode"],
                "input": text,
                "raw_input": raw,
                "output": answer,
                "answer": answer,
                "category": p["category"],
                "principle_ids": p["principle_ids"]
                + [i for i in p["solve_principle_ids"] if i not in p["principle_ids"]],
                "demo_ids": p["demo_ids"],
                "votes": [],
                "parse_error": reason,
                "generator": gen,
                **({"fields": fields} if structured else {}),  # the object as the generator wrote it
            }
        )

    # --- step 2: the target, from k sampled answers per input where the kind needs them
    good = [(p, r) for p, r in zip(plans, records, strict=True) if r["parse_error"] is None]
    k = task.target_samples(s)
    texts: list[str] = []
    if k and good:
        step = "solve" if task.solves_inputs else "verify"
        sp = SamplingParams(
            temperature=s.solve_temperature,
            top_p=s.top_p,
            max_tokens=s.solve_max_tokens,
            seed=seed,
            stop=task.target_stop(style),
        )
        reqs = [
            (
                rid(mode=p["mode"], seed=seed, i=p["index"], step=f"{step}/{j}"),
                target_prompt(
                    task, seeds, p, by_id, r["input"], s.solve_demos if task.solves_inputs else 0, style
                ),
            )
            for p, r in good
            for j in range(k)
        ]
        solved = generator(reqs, sp)
        texts = [solved[q].text for q, _ in reqs]
    for n, (_, r) in enumerate(good):
        task.set_target(r, texts[n * k : (n + 1) * k])

    # --- step 3: each new input's log-probability under every label's header (generate.label_check)
    if s.label_check and checker is not None and good:
        ids = {
            (r["id"], lb): rid(mode=p["mode"], seed=seed, i=p["index"], step=f"check/{lb}")
            for p, r in good
            for lb in task.labels
        }
        scores = checker.score(
            [(ids[r["id"], lb], task.label_check_prompt(lb), task.label_check_text(r["input"]))
             for _, r in good for lb in task.labels]
        )  # fmt: skip
        for _, r in good:
            r["label_scores"] = {lb: round(scores[ids[r["id"], lb]], 4) for lb in task.labels}

    # --- stats
    shown, warning = principles_shown(principles, records)
    stats = {
        "mode": mode,
        "planned": len(plans),
        "parsed": len(good),
        "parse_errors": dict(Counter(r["parse_error"] for r in records if r["parse_error"])),
        "by_category": dict(Counter(str(p["category"]) for p in plans)),
        "no_answer": sum(r["answer"] is None for _, r in good),
        "samples_per_instance": k,
        "label_checked": sum("label_scores" in r for _, r in good),
        "new_calls": generator.new_calls - calls_before,
    }
    if structured:
        stats.update(structured)
    if principles:
        stats["principles_shown"] = shown
    if warning:
        stats["warning"] = warning
    return records, stats


def principles_shown(principles: list[dict], records: list[dict]) -> tuple[dict[str, int], str | None]:
    """({level: instances whose prompts showed one of its principles}, a warning naming written levels
    that no prompt showed: their teacher tokens bought nothing). `records`: candidates (or plans)
    with their `principle_ids`."""
    level = {p["id"]: p["level"] for p in principles}
    shown = Counter(
        lv for r in records for lv in {level[i] for i in r.get("principle_ids") or [] if i in level}
    )
    written = list(dict.fromkeys(p["level"] for p in principles))
    unused = [lv for lv in written if not shown[lv]]
    warning = None
    if unused and records:
        warning = (
            f"principles at level(s) {unused} were written but no generation prompt shows one "
            "(principles_per_instance and prefer_category pick the category's own first); "
            "set generate.principle_mix=task_header or levels, raise generate.principles_per_instance, "
            "or leave those levels out of principles.levels"
        )
    return {lv: shown[lv] for lv in written}, warning
