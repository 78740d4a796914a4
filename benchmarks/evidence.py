"""Evidence: when do principles pay off? Arms and ablations over seeds, with intervals and costs.

    python benchmarks/evidence.py --quick     # smoke check: TREC + SST-2, one seed, small (~15 min, 2 cores)
    python benchmarks/evidence.py             # full profile: hours on a CPU; resumable
    python benchmarks/evidence.py --teacher-url http://HOST:8000/v1 --teacher-model NAME

Every (task, seed, variant) is one psilm run folder under --out: finished stages are skipped, so a
killed benchmark resumes where it stopped. After every finished run the results are aggregated
again into --result and a plot beside it, so a partial benchmark still shows what it has, marked
`"complete": false`. The default --result is benchmarks/results/evidence/<tasks>[-<variants>][-quick].json:
`--tasks trec --variants base` writes evidence/trec.json, the current defaults' answer (the index of
every result: benchmarks/results/README.md); other variants get a file of their own.

Arms per task (SmolLM2-135M generates and is the student; the test split is never seen before
evaluation):
  zero_shot, seed_only, direct      the baselines
  psi_person                        psi with the person-written principles file for the task
  psi_teacher                       psi with the teacher's principles (psilm's default teacher: the
                                    embedded qwen2.5-coder-1.5b, or --teacher-url), levels task +
                                    category + error
  teacher                           the teacher writes every row (variant teacher_all)
  human                             real training rows, as many as the generated arms kept
Ablations on psi (tasks in --ablation-tasks):
  levels_task, levels_category      one level of the person's file alone (psi_person has both)
  per_instance_1, per_instance_3, per_instance_all  principles sampled per instance (psi_person: 2)
  chat, gemma                       the other prompt style; Gemma 3 270M base as generator (both arms)
  q8_0                              direct and psi with the generator's weights re-encoded as Q8_0
  gemma_2                           psi alone with Gemma writing, two principles per prompt (vs psi_gemma)
  verifier_on                       the generator re-labels each input 3 times; the filter keeps agreement
  error_off                         psi_teacher without the error level (no student mistakes)
  teacher_rounds                    psi_teacher rounds 1-3 (psi_teacher_r1..r3): judge seeds_cv, teacher round
                                    principles, mix_blend 0.5 with mix_hold_right, soup 0
  teacher_rounds_soup               teacher_rounds with evolve.soup 0.5 (psi_teacher_soup_r1..r3)
  soup_blend_0, _blend_1, _judge_dev
                                    its round 2 with mix_blend 0 or 1, or judge dev (one seed each)
  teacher_n144                      psi_teacher with generate.n 144: as many rows as round 2 trains on,
                                    without a round (psi_teacher_r2 - psi_teacher_n144: what a round adds)
  teacher_mix, teacher_header       psi_teacher with every level in the prompts: principle_mix levels
                                    (one own + one task-level) or task_header (the task's rules head each)
  person_header                     psi_person with principle_mix task_header
  teacher_lead                      teacher_header with principles.lead_forms (forms begin "Ask ...")
  teacher_refill                    teacher_header with principles.refill (a short category asked again)
  teacher_rules                     psi_teacher without task rules that name some labels (check_task_rules)
Self-evolution (evolve.rounds 2, docs/evolve.md), in --ablation-tasks or with --variants evolve:
  evolve                            direct and psi again as round 1 (psi_round1, direct_round1), and
                                    round 2 of each (psi_round2, direct_round2)
  evolve_agree                      psi alone, rounds 2, default policies: the ablations' baseline (alone,
                                    round 1 trains on all of psi's kept rows, not cut to direct's count)
  evolve_check_none, _relabel, _weight, _mix_off, _principles_off
                                    psi_round2 with one round-2 policy changed (vs evolve_agree)

Intervals: `ci95` is a t interval over seeds (each seed redraws the seeds, the sampled data and
the training order); with one seed it is the Wilson interval of that run. Paired differences
(psi - direct, psi - human, ...) are per seed on the same test rows, with a t interval over seeds
and a bootstrap over test rows (`ci95_rows`, which ignores seed-to-seed variance).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from psilm.run import bench
from psilm.run.bench import interval, paired, pct, summarize_arm
from psilm.run.folder import Layout

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
PRINCIPLES = ROOT / "configs" / "principles"

# --- what is run --------------------------------------------------------------------------------
# task -> settings per profile. Sizes keep one (task, seed) of the main arms near 20 min on 2 cores.
TASKS: dict[str, dict[str, dict]] = {
    "trec": {
        "full": {
            "data": {"train": "trec/train.jsonl", "n_seeds": 12, "test": "trec/test.jsonl", "n_test": 500},
            "generate": {"n": 96},
            "train": {"epochs": 2, "max_length": 128},
        },
        "quick": {
            "data": {"train": "trec/train.jsonl", "n_seeds": 12, "test": "trec/test.jsonl", "n_test": 100},
            "generate": {"n": 24},
            "train": {"epochs": 1, "max_length": 128},
        },
    },
    "sst2": {
        "full": {
            "data": {"train": "sst2/train.jsonl", "n_seeds": 16, "test": "sst2/test.jsonl", "n_test": 1000},
            "generate": {"n": 96, "max_tokens": 48},
            "train": {"epochs": 2, "max_length": 128},
        },
        "quick": {
            "data": {"train": "sst2/train.jsonl", "n_seeds": 16, "test": "sst2/test.jsonl", "n_test": 100},
            "generate": {"n": 24, "max_tokens": 48},
            "train": {"epochs": 1, "max_length": 128},
        },
    },
    "gsm8k": {
        "full": {
            "data": {"train": "gsm8k/train.jsonl", "n_seeds": 8, "test": "gsm8k/test.jsonl", "n_test": 100},
            "generate": {"n": 32, "solve_samples": 2, "solve_max_tokens": 192},
            "train": {"epochs": 2, "max_length": 384},
            "evaluate": {"max_tokens": 192},
        },
        "quick": {
            "data": {"train": "gsm8k/train.jsonl", "n_seeds": 8, "test": "gsm8k/test.jsonl", "n_test": 20},
            "generate": {"n": 8, "solve_samples": 2, "solve_max_tokens": 160},
            "train": {"epochs": 1, "max_length": 384},
            "evaluate": {"max_tokens": 160},
        },
    },
}

# the round policy measured first (2026-11-30, benchmarks/results/evolve/trec.json), the defaults
# until 2026-12-04: a judge of 200 labelled dev rows, the error shares alone as the mix, no soup
FIRST_ROUNDS = {"judge": "dev", "mix_blend": 1.0, "mix_hold_right": False, "soup": 0.0}

# variant -> (arms run in its folder, settings over the task's, {arm in folder: reported name})
VARIANTS: dict[str, tuple[list[str], dict, dict[str, str]]] = {
    "base": (
        ["zero_shot", "seed_only", "direct", "psi", "human"],
        {},
        {
            "zero_shot": "zero_shot",
            "seed_only": "seed_only",
            "direct": "direct",
            "psi": "psi_person",
            "human": "human",
        },
    ),
    "teacher": (["psi"], {"principles": {"file": None}}, {"psi": "psi_teacher"}),
    # the teacher writes every row (same n, seeds and filters): what psi's principles are priced against
    "teacher_all": (["teacher"], {"principles": {"file": None}}, {"teacher": "teacher"}),
    # --- ablations
    "levels_category": (["psi"], {"principles": {"levels": ["category"]}}, {"psi": "levels_category"}),
    "levels_task": (["psi"], {"principles": {"levels": ["task"]}}, {"psi": "levels_task"}),
    "per_instance_all": (
        ["psi"],
        {"generate": {"principles_per_instance": None}},
        {"psi": "per_instance_all"},
    ),
    # the task file's label descriptions are person-written category principles in all but name:
    # without them, direct is the paper's demos-only baseline
    "direct_bare": (["direct"], {"generate": {"label_descriptions": False}}, {"direct": "direct_bare"}),
    "psi_bare": (["psi"], {"generate": {"label_descriptions": False}}, {"psi": "psi_bare"}),
    # categories drawn by the class shares of the task's training split instead of evenly (TREC's
    # test split has 2% abbreviation rows; even drawing makes a sixth of the data abbreviation)
    "prior_weights": (
        ["direct", "psi"],
        {"generate": {"category_weights": "train"}},
        {"direct": "direct_prior", "psi": "psi_prior"},
    ),
    "verifier_on": (["psi"], {"generate": {"verify_samples": 3}}, {"psi": "verifier_on"}),
    # issue 16: the other prompt style, and the second embedded generator (a base model: list only)
    "chat": (
        ["direct", "psi"],
        {"generate": {"prompt_style": "chat"}},
        {"direct": "direct_chat", "psi": "psi_chat"},
    ),
    "gemma": (
        ["direct", "psi"],
        {"models": {"generator": {"backend": "llamacpp", "model": "gemma3-270m"}}},
        {"direct": "direct_gemma", "psi": "psi_gemma"},
    ),
    # the generator's weights re-encoded from the shipped Q4_1 into Q8_0 (models.*.requantize): llama.cpp
    # reads prompts about twice as fast a thread; does the data (and so the student) stay as good?
    "q8_0": (
        ["direct", "psi"],
        {"models": {"generator": {"requantize": "q8_0"}}},
        {"direct": "direct_q8", "psi": "psi_q8"},
    ),
    # psi alone with Gemma writing at two principles per prompt (the default since 2026-11-30; the
    # `gemma` variant's psi_gemma was measured with 1), compared with psi_gemma
    "gemma_2": (
        ["psi"],
        {
            "models": {"generator": {"backend": "llamacpp", "model": "gemma3-270m"}},
            "generate": {"principles_per_instance": 2},
        },
        {"psi": "psi_gemma_2"},
    ),
    # generate.label_check: Gemma 3 270M base scores every new input under each label's header; the
    # filter drops inputs whose own label is more than filter.label_margin nats behind the best
    "label_check": (
        ["direct", "psi"],
        {
            "generate": {"label_check": True},
            "models": {"checker": {"backend": "llamacpp", "model": "gemma3-270m"}},
        },
        {"direct": "direct_check", "psi": "psi_check"},
    ),
    # the default was 1 until 2026-11-30 (per_instance_2 against it: TREC +4.3, SST-2 +2.0, 3 seeds)
    "per_instance_1": (["psi"], {"generate": {"principles_per_instance": 1}}, {"psi": "per_instance_1"}),
    "per_instance_3": (["psi"], {"generate": {"principles_per_instance": 3}}, {"psi": "per_instance_3"}),
    # the teacher's principles, every level reaching the prompts: one of the category's own and one
    # task-level principle per prompt (principle_mix: levels), or the task's rules heading every
    # prompt beside two of the others (principle_mix: task_header)
    "teacher_mix": (
        ["psi"],
        {"principles": {"file": None}, "generate": {"principle_mix": "levels"}},
        {"psi": "teacher_mix"},
    ),
    "teacher_header": (
        ["psi"],
        {"principles": {"file": None}, "generate": {"principle_mix": "task_header"}},
        {"psi": "teacher_header"},
    ),
    "person_header": (["psi"], {"generate": {"principle_mix": "task_header"}}, {"psi": "person_header"}),
    # task rules that name some labels but not all dropped (principles.check_task_rules; vs teacher)
    "teacher_rules": (["psi"], {"principles": {"file": None}}, {"psi": "teacher_rules"}),
    # the teacher's forms begin with "Ask" / "Write a <noun>" (principles.lead_forms), held to it by
    # the schema: a form that leads the principle instead of a bare example (vs teacher_header)
    "teacher_lead": (
        ["psi"],
        {"principles": {"file": None, "lead_forms": True}, "generate": {"principle_mix": "task_header"}},
        {"psi": "teacher_lead"},
    ),
    # a category the label check left short asked once more, shown its off-label examples
    # (principles.refill; vs teacher_header, today's defaults otherwise)
    "teacher_refill": (
        ["psi"],
        {"principles": {"file": None, "refill": True}, "generate": {"principle_mix": "task_header"}},
        {"psi": "teacher_refill"},
    ),
    "error_off": (
        ["psi"],
        {"principles": {"file": None, "levels": ["task", "category"]}},
        {"psi": "error_off"},
    ),
    # --- self-evolution (evolve.rounds: 2): round 1 is the base variant's direct and psi_person
    # again (same settings and seed), round 2 builds on their students; paired within the folder
    "evolve": (
        ["direct", "psi"],
        {"evolve": {"rounds": 2, **FIRST_ROUNDS}},
        {
            "direct": "direct_round1",
            "psi": "psi_round1",
            "direct_round2": "direct_round2",
            "psi_round2": "psi_round2",
        },
    ),  # fmt: skip
    # rounds on the teacher's principles, with a judge that reads no labelled rows beyond the seeds
    # (seeds_cv), the teacher writing round 2's principles from the student's mistakes, and a mix
    # blended half-way that leaves the classes the student already gets right their share; each
    # round's student as trained (no soup: the default until 2026-12-05)
    "teacher_rounds": (
        ["psi"],
        {
            "principles": {"file": None},
            "evolve": {"rounds": 3, "judge": "seeds_cv", "mix_blend": 0.5, "mix_hold_right": True, "soup": 0},
        },
        {"psi": "psi_teacher_r1", "psi_round2": "psi_teacher_r2", "psi_round3": "psi_teacher_r3"},
    ),
    # teacher_rounds with each round's student blended half-way with the round before's (evolve.soup
    # 0.5), on today's prompt mix (task_header; teacher_rounds' seeds 1 and 2 ran on it too, its seed
    # 0 on own_first, the default until 2026-12-04)
    "teacher_rounds_soup": (
        ["psi"],
        {
            "principles": {"file": None},
            "evolve": {
                **{"rounds": 3, "judge": "seeds_cv", "mix_blend": 0.5, "mix_hold_right": True},
                "soup": 0.5,
            },
        },
        {"psi": "psi_teacher_soup_r1", **{f"psi_round{r}": f"psi_teacher_soup_r{r}" for r in (2, 3)}},
    ),
    # round 2 of teacher_rounds_soup with one round policy changed (one seed: ablations of the blend
    # and the judge; vs psi_teacher_soup_r2)
    **{
        f"soup_{name}": (
            ["psi"],
            {"principles": {"file": None}, "evolve": {"rounds": 2, **over}},
            {"psi_round2": f"psi_teacher_soup_r2_{name}"},
        )
        for name, over in {
            "blend_0": {"mix_blend": 0.0},  # the new rows drawn as round 1's were
            "blend_1": {"mix_blend": 1.0},  # the error shares alone (the hold still on)
            "judge_dev": {"judge": "dev"},  # 200 labelled rows beyond the seeds judge the student
        }.items()
    },
    # round 1 with as many generated rows as round 2 trains on (96 + the ~48 a round adds): whether a
    # round beats generating more rows from the same principles
    "teacher_n144": (
        ["psi"],
        {"principles": {"file": None}, "generate": {"n": 144}},
        {"psi": "psi_teacher_n144"},
    ),
    # each of round 2's policies changed alone (default: check agree, error mix on, teacher principles)
    **{
        f"evolve_{name}": (
            ["psi"],
            {"evolve": {"rounds": 2, **FIRST_ROUNDS, **over}},
            {"psi_round2": f"psi_round2_{name}"},
        )
        for name, over in {
            "agree": {"check": "agree"},  # the default, in a psi-only folder like the others
            "check_none": {"check": "none"},
            "relabel": {"check": "relabel"},
            "weight": {"check": "weight"},
            "mix_off": {"error_mix": False},
            "principles_off": {"error_principles": "off"},
        }.items()
    },
}
MAIN = ["base", "teacher", "teacher_all"]
ABLATIONS = [v for v in VARIANTS if v not in MAIN]
QUICK_ARMS = ["zero_shot", "direct", "psi"]
# paired differences reported per task: (a, b) means a - b
PAIRS = [
    ("psi_person", "direct"),
    ("psi_person", "direct_bare"),  # principles against plain small-model data (the paper's baseline)
    ("psi_teacher", "direct"),
    ("psi_person", "human"),
    ("psi_person", "psi_teacher"),
    ("person_header", "teacher_header"),  # the two writers under today's prompts (task_header)
    ("teacher_header", "direct"),
    ("person_header", "direct"),
    ("psi_teacher", "teacher"),  # the method's second claim: most of the teacher's data, for less
    ("teacher", "direct"),
    ("direct", "seed_only"),
    ("psi_round2", "psi_round1"),  # what a second round adds (issue: psi_round2 - psi)
    ("psi_teacher_r2", "psi_teacher_r1"),  # the same on the teacher's principles, judge seeds_cv
    ("psi_teacher_r3", "psi_teacher_r2"),
    ("psi_teacher_r2", "psi_teacher_n144"),  # a round against as many rows without one
    ("psi_teacher_soup_r2", "psi_teacher_soup_r1"),  # rounds whose students are blended (evolve.soup)
    ("psi_teacher_soup_r3", "psi_teacher_soup_r2"),
    ("psi_teacher_soup_r2", "psi_teacher_r2"),  # the same round's rows, blended or not
    ("psi_teacher_soup_r3", "psi_teacher_r3"),
    ("psi_round2", "direct_round2"),  # principles after a round each
]
ABLATION_BASE = {  # an ablation is compared with the arm it changes one thing of
    "levels_task": "psi_person",
    "levels_category": "psi_person",
    "per_instance_1": "psi_person",
    "per_instance_3": "psi_person",
    "per_instance_all": "psi_person",
    "verifier_on": "psi_person",
    "error_off": "teacher_header",  # the same prompts (task_header, the default since 2026-12-04)
    "teacher_mix": "psi_teacher",
    "teacher_header": "psi_teacher",
    "person_header": "psi_person",
    "teacher_lead": "teacher_header",
    "teacher_refill": "teacher_header",
    "teacher_rules": "psi_teacher",
    "psi_teacher_r1": "psi_teacher",
    "psi_teacher_r2": "psi_teacher_r1",
    "psi_teacher_r3": "psi_teacher_r2",
    "psi_teacher_n144": "psi_teacher_r1",
    "psi_teacher_soup_r1": "psi_teacher_r1",
    **{f"psi_teacher_soup_r2_{n}": "psi_teacher_soup_r2" for n in ("blend_0", "blend_1", "judge_dev")},
    "psi_teacher_soup_r2": "psi_teacher_r2",
    "psi_teacher_soup_r3": "psi_teacher_r3",
    "direct_bare": "direct",
    "psi_bare": "direct_bare",
    "direct_prior": "direct",
    "psi_prior": "direct_prior",
    "direct_chat": "direct",
    "psi_chat": "direct_chat",
    "direct_gemma": "direct",
    "psi_gemma": "direct_gemma",
    "psi_gemma_2": "psi_gemma",
    "direct_q8": "direct",
    "psi_q8": "direct_q8",
    "direct_check": "direct",  # what the label check does to each arm's rows
    "psi_check": "psi_person",
    # evolve: round 1 again (a rerun of psi_person / direct: ~0 when runs are deterministic), round 2
    "psi_round1": "psi_person",
    "direct_round1": "direct",
    "psi_round2": "psi_round1",
    "direct_round2": "direct_round1",
    # a psi-only folder trains round 1 on all of psi's kept rows (not cut to direct's count), so its
    # round 1 differs from `evolve`'s: each policy is compared with the default in the same kind of folder
    "psi_round2_agree": "psi_round2",
    **{
        f"psi_round2_{n}": "psi_round2_agree"
        for n in ("check_none", "relabel", "weight", "mix_off", "principles_off")
    },
}


def merge(base: dict, over: dict) -> dict:
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) and v else v
    return out


def run_config(task: str, profile: str, variant: str, seed: int, args) -> dict:
    arms, over, _ = VARIANTS[variant]
    spec = json.loads(json.dumps(TASKS[task][profile]))
    for key in ("train", "test"):
        spec["data"][key] = str(DATA / spec["data"][key])
    cfg = {
        "name": f"evidence-{task}-{variant}-s{seed}",
        "seed": seed,
        "task": task,
        **spec,
        "arms": QUICK_ARMS if profile == "quick" and variant == "base" else arms,
        # the teacher: psilm's default (the embedded qwen2.5-coder-1.5b where psilm[teacher] is
        # installed), or --teacher-url
        "models": {"generator": {"backend": "llamacpp", "model": "smollm2-135m"}},
        "principles": {"file": str(PRINCIPLES / f"{task}.yaml")},
    }
    if args.teacher_url:
        cfg["models"]["teacher"] = {
            "backend": "openai",
            "base_url": args.teacher_url,
            "model": args.teacher_model,
        }
        if args.teacher_key_env:
            cfg["models"]["teacher"]["api_key_env"] = args.teacher_key_env
    return merge(cfg, over)


CLASSIFICATION_ONLY = {"label_check"}  # variants whose settings only a classification task takes


def applies(task: str, variant: str) -> bool:
    from psilm.tasks import builtin_tasks

    return variant not in CLASSIFICATION_ONLY or builtin_tasks()[task]["kind"] == "classification"


def plan(args) -> list[tuple[str, int, str]]:
    """(task, seed, variant) in the order that answers the main question first."""
    jobs = []
    for task in args.tasks:
        variants = ["base"] if args.quick else MAIN + (ABLATIONS if task in args.ablation_tasks else [])
        if getattr(args, "variants", None):
            variants = [v for v in variants if v in args.variants]
        variants = [v for v in variants if applies(task, v)]
        main = [v for v in variants if v in MAIN]
        rest = [v for v in variants if v not in MAIN]
        jobs += [(task, seed, v) for seed in args.seeds for v in main]
        jobs += [(task, seed, v) for v in rest for seed in args.seeds]  # each ablation whole, in turn
    return jobs


def run_one(task: str, seed: int, variant: str, args) -> Path:
    from psilm.config import load_config
    from psilm.run import prepare, run_all

    folder = args.out / task / f"seed{seed}" / variant
    cfg = load_config(data=run_config(task, args.profile, variant, seed, args))
    log_path = folder.parent / f"{variant}.log"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        ctx = prepare(cfg, folder, lambda m: (log.write(m + "\n"), log.flush()))
        run_all(ctx)
    return folder


# --- reading finished runs and statistics: shared with `psilm bench` -----------------------------
def read_run(folder: Path, variant: str) -> dict[str, dict]:
    """Reported arm -> accuracy, per-row correctness, n_train and the ledger's cost of the arm."""
    return bench.read_run(folder, VARIANTS[variant][2])


def aggregate(args, jobs: list[tuple[str, int, str]], done: set[tuple[str, int, str]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for task in args.tasks:
        per_arm: dict[str, dict[int, dict]] = {}
        for t, seed, variant in sorted(done):
            if t != task:
                continue
            for name, entry in read_run(args.out / task / f"seed{seed}" / variant, variant).items():
                per_arm.setdefault(name, {})[seed] = entry
        main_names = [n for v in MAIN for n in VARIANTS[v][2].values()]
        arms = {n: summarize_arm(per_arm[n]) for n in main_names if n in per_arm}
        ablations = {}
        for v in ABLATIONS:
            for name in VARIANTS[v][2].values():
                if name in per_arm:
                    ablations[name] = summarize_arm(per_arm[name])
                    base = ABLATION_BASE[name]
                    if base in per_arm:
                        ablations[name]["vs_" + base] = paired(per_arm[name], per_arm[base])
        diffs = {
            f"{x} - {y}": d
            for x, y in PAIRS
            if x in per_arm and y in per_arm and (d := paired(per_arm[x], per_arm[y]))
        }
        results[task] = {"arms": arms, "paired": diffs, "ablations": ablations}
    missing = [f"{t}/seed{s}/{v}" for t, s, v in jobs if (t, s, v) not in done]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "profile": args.profile,
        "complete": not missing,
        "missing": missing,
        "machine": machine(),
        "setup": {
            "generator": "smollm2-135m (embedded GGUF) via llama.cpp",
            "student": "smollm2-135m, LoRA (r 16), CPU fp32",
            "teacher": args.teacher_model or _default_teacher(),
            "person_principles": {t: f"configs/principles/{t}.yaml" for t in args.tasks},
            "seeds": args.seeds,
            "variants": sorted({v for _, _, v in jobs}),
            "base_arms": VARIANTS["base"][0],
            "tasks": {t: TASKS[t][args.profile] for t in args.tasks},
        },
        "tasks": results,
    }


def _default_teacher() -> str:
    from psilm.llm.settings import default_teacher

    t = default_teacher()
    return f"{t.model} ({t.backend}, psilm's default teacher)"


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generation import cpu_name

    from psilm.llm.llamacpp_check import verdict
    from psilm.llm.registry import resolve_model

    info = verdict(resolve_model("smollm2-135m").file, 1)["system_info"]  # cached once per machine
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "llama_cpp_system_info": info,
    }


# --- plot -------------------------------------------------------------------------------------------
ORDER = ["zero_shot", "seed_only", "direct", "psi_teacher", "psi_person", "teacher", "human"]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, r in result["tasks"].items() if r["arms"]]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 1, 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        r = result["tasks"][task]
        rows = [(n, r["arms"][n]) for n in ORDER if n in r["arms"]]
        rows += [(n, a) for n, a in r["ablations"].items()]
        names = [n for n, _ in rows]
        means = [a["mean"] * 100 for _, a in rows]
        err = [
            [(a["mean"] - a["ci95"][0]) * 100 for _, a in rows],
            [(a["ci95"][1] - a["mean"]) * 100 for _, a in rows],
        ]
        colours = ["#4c78a8" if n in ORDER else "#9ecae9" for n in names]
        colours = ["#e45756" if n == "psi_person" else c for n, c in zip(names, colours, strict=True)]
        ax.barh(range(len(rows)), means, xerr=err, color=colours, capsize=3)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        seeds = max(len(a["seeds"]) for _, a in rows)
        ax.set_title(
            f"{task} ({seeds} seed{'s' * (seeds > 1)}, {rows[0][1]['n_test']} test rows)", fontsize=9
        )
        ax.set_xlabel("accuracy % (95% CI)", fontsize=8)
        ax.set_xlim(0, 100)
    fig.suptitle(
        f"psilm evidence ({result['profile']}), {result['date']}, SmolLM2-135M on {result['machine']['cpu']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- markdown ---------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    """The tables docs/evidence.md shows, made from the JSON so the two cannot disagree."""
    status = "complete" if result["complete"] else f"partial: {len(result['missing'])} runs not done yet"
    out = [f"Profile `{result['profile']}`, {result['date']}, {result['machine']['cores']}-core "
           f"{result['machine']['cpu']} ({status}).", ""]  # fmt: skip
    for task, r in result["tasks"].items():
        if not (r["arms"] or r["ablations"]):
            continue
        rows = [(name, r["arms"][name]) for name in ORDER if name in r["arms"]]
        out += [f"**{task}**", ""]
        out += [*(bench.arm_table(rows) if rows else []), *bench.paired_table(r["paired"])]
        out += class_table(r["paired"])
        if r["ablations"]:
            out += [
                "",
                "| ablation | mean accuracy % | 95% CI | vs its base (points) | 95% CI over seeds |",
            ]
            out.append("| --- | --- | --- | --- | --- |")
            for name, a in r["ablations"].items():
                base = ABLATION_BASE[name]
                d = a.get("vs_" + base)
                diff = f"{pct(d['mean'])} vs {base}" if d else "-"
                ci = interval(d and d["ci95"])
                out.append(f"| {name} | {pct(a['mean'])} | {interval(a['ci95'])} | {diff} | {ci} |")
        out.append("")
    return "\n".join(out)


def class_table(diffs: dict[str, dict]) -> list[str]:
    """Per class, each paired difference that has one (mean over seeds, points): a class that a
    round (or any change) makes fall shows, beside the overall difference."""
    diffs = {k: d for k, d in diffs.items() if d.get("per_class")}
    if not diffs:
        return []
    classes = sorted({c for d in diffs.values() for c in d["per_class"]})
    out = ["", "| paired difference, per class (points) | " + " | ".join(classes) + " | largest fall |"]
    out.append("| --- " * (len(classes) + 2) + "|")
    for name, d in diffs.items():
        cells = [pct(d["per_class"][c]) if c in d["per_class"] else "-" for c in classes]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {pct(d['largest_class_fall'])} |")
    return out


# --- main -------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Smoke profile: one seed, small runs.")
    ap.add_argument(
        "--tasks", default=None, help="Comma-separated (default trec,sst2,gsm8k; quick: trec,sst2)."
    )
    ap.add_argument("--seeds", default=None, help="Comma-separated seeds (default 0,1,2; quick: 0).")
    ap.add_argument("--ablation-tasks", default="trec", help="Tasks that get the ablations (full profile).")
    ap.add_argument("--out", type=Path, default=None, help="Run folders (default runs/evidence[-quick]).")
    ap.add_argument("--result", type=Path, default=None)
    ap.add_argument(
        "--teacher-url", default=None, help="OpenAI-compatible teacher for psi_teacher / error_off."
    )
    ap.add_argument("--teacher-model", default=None)
    ap.add_argument("--teacher-key-env", default=None)
    ap.add_argument("--variants", default=None, help=f"Comma-separated subset of {list(VARIANTS)}.")
    ap.add_argument("--base-arms", default=None, help="Arms of the base variant (default all five).")
    ap.add_argument("--aggregate-only", action="store_true", help="Only re-read finished runs.")
    args = ap.parse_args()

    args.profile = "quick" if args.quick else "full"
    args.tasks = (args.tasks or ("trec,sst2" if args.quick else "trec,sst2,gsm8k")).split(",")
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    args.ablation_tasks = args.ablation_tasks.split(",")
    suffix = "-quick" if args.quick else ""
    args.out = args.out or ROOT / "runs" / f"evidence{suffix}"
    if args.teacher_url and not args.teacher_model:
        sys.exit("--teacher-url needs --teacher-model")
    args.variants = args.variants.split(",") if args.variants else None
    others = [] if args.quick else [v for v in args.variants or ["all"] if v != "base"]
    name = "-".join(args.tasks + others) + suffix
    args.result = args.result or ROOT / "benchmarks" / "results" / "evidence" / f"{name}.json"
    if args.base_arms:
        arms = args.base_arms.split(",")
        VARIANTS["base"] = (arms, VARIANTS["base"][1], {a: VARIANTS["base"][2][a] for a in arms})
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        sys.exit(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")

    from psilm.shell import console

    console.configure(verbose=False)  # library output and warnings off the console, as the CLI does
    jobs = plan(args)

    def finished(t: str, s: int, v: str) -> bool:
        run = Layout(args.out / t / f"seed{s}" / v)
        return run.metrics.exists() and all(
            st.get("status") == "done" for st in json.loads(run.manifest_path.read_text())["stages"].values()
        )

    def write(done: set) -> None:
        result = aggregate(args, jobs, done)
        result["wall_s"] = round(time.time() - started, 1)
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=2) + "\n")
        args.result.with_suffix(".md").write_text(markdown(result))
        plot(result, args.result.with_suffix(".png"))

    started = time.time()
    done = {j for j in jobs if finished(*j)}
    if args.aggregate_only:
        write(done)
        return
    for i, (task, seed, variant) in enumerate(jobs, start=1):
        if (task, seed, variant) in done:
            continue
        t0 = time.time()
        print(f"[{i}/{len(jobs)}] {task} seed {seed} {variant} ...", flush=True)
        run_one(task, seed, variant, args)
        done.add((task, seed, variant))
        print(f"[{i}/{len(jobs)}] {task} seed {seed} {variant}: {time.time() - t0:.0f} s", flush=True)
        write(done)
    write(done)
    print(f"wrote {args.result} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
