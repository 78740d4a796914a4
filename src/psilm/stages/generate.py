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

import random
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from psilm.arms import Mode
from psilm.errors import ConfigError
from psilm.llm.base import Messages, Prompt, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.llm.registry import chat_capable
from psilm.settings import Settings
from psilm.stages import filter as filter_stage
from psilm.tasks import Example, Task
from psilm.tasks.kinds import majority, with_final_answer  # noqa: F401  (re-exported)

GOLDEN = 0.6180339887498949  # low-discrepancy step: weighted categories stay on their shares
PromptStyle = Literal["list", "chat"]
Structured = Literal["auto", "json", "off"]


class GenerateSettings(Settings):
    # --- how many and how
    n: int = Field(200, gt=0, description="Instances to write per arm (before filtering).")
    prompt_style: PromptStyle = Field(
        "list",
        description="list: plain text to continue (header with task, category and principles, numbered "
        "demos, the next number; no chat template), what a small or base model gets right; chat: a "
        "system and a user message asking for one new input (instruct models only). Why list: "
        "docs/defaults.md#generate.",
    )
    structured: Structured = Field(
        "auto",
        description="json: ask for one JSON object per instance, keys from the data's own fields "
        "(input fields; choices and answer for multiple choice; the answer for free text), held to "
        "its schema by backends that can (llamacpp, vllm; openai with chat prompts), parsed or dropped "
        "elsewhere; off: the 'Name: value' / 'Answer:' lines; auto: json for instances with several "
        "parts (several input fields, or an answer written with the input) where the backend can "
        "constrain, else off (docs/structured.md).",
    )
    # --- what each prompt holds: short prompts keep a 135M generator on track
    label_descriptions: bool = Field(
        True,
        description="classification: put the task's label descriptions in generation prompts; "
        "false = label names only (the paper's demos-only baseline; a description is a principle).",
    )
    demos_per_instance: int = Field(
        2, ge=0, description="Seed demos per prompt (classification: of the same label only)."
    )
    principles_per_instance: int | None = Field(
        2,
        ge=1,
        description="Principles sampled per instance; None = all (long prompts hurt small models; "
        "docs/defaults.md#generate).",
    )
    prefer_category: bool = Field(
        True,
        description="Sample the category's own principles before task/error ones.",
    )
    principle_mix: Literal["own_first", "levels", "task_header"] = Field(
        "task_header",
        description="task_header: every task-level principle in every prompt (rules for every "
        "instance), then principles_per_instance of the others, the category's own first, so every "
        "level written reaches prompts; own_first: the category's own fill the prompt first, "
        "task-level ones reach a prompt only when too few are left; levels: one of the category's "
        "own, then one from the other levels, alternating (docs/defaults.md#generate).",
    )
    category_weights: dict[str, float] | Literal["train"] | None = Field(
        None,
        description="Draw categories by these weights instead of evenly; unnamed ones get 0. "
        "'train' = each label's share of data.train (classification; rows also in the test split "
        "are not counted).",
    )
    # --- sampling the new input
    temperature: float = Field(0.9, ge=0, description="High enough for diverse inputs.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling, for inputs and answers.")
    max_tokens: int = Field(96, gt=0, description="For the new input; solutions get solve_max_tokens.")
    pair_max_tokens: int = Field(
        192, gt=0, description="multiple_choice / free_text: question, choices and answer in one."
    )
    # --- targets: k answers per instance; the majority becomes the answer, ties give none
    solve_samples: int = Field(3, ge=1, description="numeric: solutions sampled per instance.")
    verify_samples: int = Field(
        0,
        ge=0,
        description="classification: times the generator re-labels each input (votes "
        "for the filter); 0 = off, since a 135M labeller is less reliable than the asked label.",
    )
    label_check: bool = Field(
        False,
        description="classification: score each new input's log-probability under every label's list "
        "header with models.checker (default: the generator), for the filter to drop inputs whose own "
        "label is far less likely than another (filter.label_margin). Needs a checker on llamacpp or "
        "transformers (Gemma 3 270M base, models.checker.model=gemma3-270m, reads labels best). Off: "
        "cleaner rows but fewer, and weaker students (docs/defaults.md#generate).",
    )
    solve_temperature: float = Field(
        0.7, ge=0, description="Answers differ between samples, so a majority means something."
    )
    solve_max_tokens: int = Field(256, gt=0, description="Per solution or re-label.")
    solve_demos: int = Field(1, ge=0, description="numeric: worked seed solutions in the prompt.")


# ---------------------------------------------------------------------------------------------
# Planning: category, demos and principles per instance
# ---------------------------------------------------------------------------------------------
def plan_instances(
    task: Task,
    seeds: list[Example],
    principles: list[dict],
    settings: GenerateSettings,
    seed: int,
    mode: Mode = "psi",
) -> list[dict]:
    """One plan per instance; plan i depends only on (seed, i) and the inputs, not on n.

    mode (the arm's, see arms.py): psi draws principles; direct, seed demos only (the paper's baseline).
    """
    s = settings
    direct = mode == "direct"
    cats = _categories(task, [] if direct else principles)
    weights = _weights(cats, s.category_weights)
    offset = random.Random(f"{seed}:weights").random()
    plans = []
    for i in range(s.n):
        rng = random.Random(f"{seed}:{i}")
        if weights is None:  # even: each block of len(cats) holds every category once
            block = random.Random(f"{seed}:block:{i // len(cats)}").sample(cats, len(cats))
            cat = block[i % len(cats)]
        else:
            cat = _weighted(cats, weights, (offset + (i + 1) * GOLDEN) % 1.0)
        plan = {
            "index": i,
            "id": f"{mode}-{seed}-{i:05d}",
            "mode": mode,
            "category": cat,
            "demo_ids": _demos(task, seeds, cat, s.demos_per_instance, rng),
            "principle_ids": [],
            "solve_principle_ids": [],
        }
        if not direct:
            k = s.principles_per_instance
            pool = _pool(principles, cat, "create")
            if s.principle_mix == "task_header":  # the task's rules head every prompt, outside the k
                rules = [p["id"] for p in pool if p["level"] == "task"]
                plan["principle_ids"] = rules + _sample([p for p in pool if p["level"] != "task"], k, s, rng)
            else:
                plan["principle_ids"] = _sample(pool, k, s, rng)
            if task.solves_inputs:
                plan["solve_principle_ids"] = _sample(_pool(principles, cat, "solve"), k, s, rng)
        plans.append(plan)
    return plans


def _categories(task: Task, principles: list[dict]) -> list[str | None]:
    return task.generation_categories(principles)


def _weights(cats: list, given: dict[str, float] | str | None) -> list[float] | None:
    if given is None:
        return None
    if given == "train":
        raise ConfigError(
            "generate.category_weights: 'train' is resolved from data.train by the pipeline "
            "(psilm run / prepare); here give the weights per category"
        )
    unknown = sorted(set(given) - {c for c in cats if c})
    if unknown:
        raise ConfigError(
            f"generate.category_weights: unknown categories {unknown}; "
            f"the categories are {[c for c in cats if c]}"
        )
    weights = [float(given.get(c, 0.0)) if c else 0.0 for c in cats]
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError("generate.category_weights: weights must be >= 0 with a positive sum")
    return weights


def _weighted(cats: list, weights: list[float], u: float) -> Any:
    total, acc = sum(weights), 0.0
    for cat, w in zip(cats, weights, strict=True):
        acc += w / total
        if u < acc and w > 0:
            return cat
    return next(c for c, w in zip(reversed(cats), reversed(weights), strict=True) if w > 0)


def _demos(task: Task, seeds: list[Example], cat: str | None, k: int, rng: random.Random) -> list[int]:
    same = [i for i, x in enumerate(seeds) if cat is not None and x.category == cat]
    if task.same_category_demos:  # classification: a demo of another label invites copying that label
        return sorted(rng.sample(same, min(k, len(same))))
    picked = rng.sample(same, min(k, len(same)))
    others = [i for i in range(len(seeds)) if i not in picked]
    return picked + rng.sample(others, min(k - len(picked), len(others)))


def _pool(principles: list[dict], cat: str | None, use: str) -> list[dict]:
    """Principles meant for `use` (or both) that name no category (task level, error level) or this
    one (category level; error level from a self-evolution round's mistakes in this category)."""
    return [p for p in principles if p["use"] in (use, "both") and p.get("category") in (None, cat)]


def _sample(pool: list[dict], k: int | None, s: GenerateSettings, rng: random.Random) -> list[str]:
    if k is None or k >= len(pool):
        return [p["id"] for p in pool]
    own = [p for p in pool if p.get("category") is not None] if s.prefer_category else []
    if s.principle_mix == "levels" and own and len(own) < len(pool):
        other = [p for p in pool if p.get("category") is None]
        n_other = min(k // 2, len(other))  # one of each in two slots; the rest to the category's own
        picked = rng.sample(own, min(k - n_other, len(own)))
        picked += rng.sample(other, k - len(picked))
    else:
        picked = rng.sample(own, min(k, len(own)))
        rest = [p for p in pool if p not in picked]
        picked += rng.sample(rest, k - len(picked))
    order = {p["id"]: j for j, p in enumerate(pool)}
    return sorted((p["id"] for p in picked), key=order.__getitem__)


# ---------------------------------------------------------------------------------------------
# Prompts: the task's kind writes them (psilm.tasks.kinds); here the plan picks what they show
# ---------------------------------------------------------------------------------------------
def input_prompt(
    task: Task,
    seeds: list[Example],
    plan: dict,
    by_id: dict[str, dict],
    describe: bool = True,
    style: PromptStyle = "chat",
    structured: bool = False,
    primed: bool = False,
) -> Prompt:
    """Chat messages (style chat) or a plain text to continue (style list) for a new input;
    structured: the demos as JSON objects, one new object asked for."""
    demos = [seeds[i] for i in plan["demo_ids"]]
    tips = [by_id[pid]["text"] for pid in plan["principle_ids"]]
    if structured:
        return task.json_input_prompt(demos, plan["category"], tips, describe, style, primed)
    if style == "list":
        return task.list_input_prompt(demos, plan["category"], tips, describe)
    return task.chat_input_prompt(demos, plan["category"], tips, describe)


def target_prompt(
    task: Task,
    seeds: list[Example],
    plan: dict,
    by_id: dict[str, dict],
    text: str,
    n_demos: int,
    style: PromptStyle,
) -> Prompt:
    """The prompt for one sampled answer (a re-label, a solution) to a new input."""
    demos = [seeds[i] for i in plan["demo_ids"][:n_demos]]
    tips = [by_id[p]["text"] for p in plan["solve_principle_ids"]]
    return task.target_prompt(text, demos, tips, style)


def solve_prompt(
    task: Task, seeds: list[Example], plan: dict, by_id: dict[str, dict], text: str, n_demos: int
) -> Messages:
    """numeric: the chat prompt for one worked solution."""
    return target_prompt(task, seeds, plan, by_id, text, n_demos, "chat")  # type: ignore[return-value]


def structured_mode(task: Task, settings: GenerateSettings, json_constrained: tuple[str, ...]) -> dict | None:
    """{"structured": "json", "constrained": bool} when instances are asked for as JSON, else None."""
    constrained = settings.prompt_style in json_constrained
    on = settings.structured == "json" or (settings.structured == "auto" and task.multi_part and constrained)
    return {"structured": "json", "constrained": constrained} if on else None


def parse_pair(raw: str, task: Task) -> tuple[str | None, str | None, str | None]:
    """(question, answer, None) or (None, None, reason) from 'Question: ... Answer: ...'."""
    return task.parse_pair(raw)


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
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
    plans = plan_instances(task, seeds, principles, s, seed, mode)
    calls_before = generator.new_calls
    rid = "generate/{mode}/{seed}/{i}/{step}".format
    gen = {
        "model": generator.model_id,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.pair_max_tokens if task.writes_answer else s.max_tokens,
    }
    if style == "list":  # chat records stay as they were
        gen["prompt_style"] = style
    structured = structured_mode(task, s, generator.json_constrained)
    if structured:  # records without it stay as they were
        gen.update(structured)

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
            text, reason = filter_stage.clean_input(question, task)
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
