"""benchmarks/evidence.py: what it runs, and the statistics it reports (no models run here)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from psilm.config import load_config
from psilm.run import bench

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ev():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("evidence", BENCH / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args(**kw):
    base = dict(quick=False, profile="full", tasks=["trec", "sst2"], seeds=[0, 1, 2], ablation_tasks=["trec"],
                teacher_url=None, teacher_model=None, teacher_key_env=None)  # fmt: skip
    return argparse.Namespace(**(base | kw))


def run(accs: list[float], n: int = 10) -> dict[int, dict]:
    """seed -> a read_run entry with `accuracy` and per-row correctness matching it."""
    out = {}
    for seed, acc in enumerate(accs):
        k = round(acc * n)
        out[seed] = {
            "accuracy": k / n, "n": n, "correct": [True] * k + [False] * (n - k), "n_train": 40,
            "co2_kg": 0.001, "energy_kwh": 0.002, "duration_s": 60.0,
            "tokens": {"generator": {"prompt": 100, "completion": 50}},
        }  # fmt: skip
    return out


def test_every_variant_config_is_valid_and_changes_what_it_names(ev):
    for task in ev.TASKS:
        for variant in filter(lambda v: ev.applies(task, v), ev.VARIANTS):
            for profile in ("full", "quick"):
                cfg = load_config(data=ev.run_config(task, profile, variant, 1, args(profile=profile)))
                assert cfg.seed == 1 and cfg.data.test.exists() and cfg.data.train.exists()
                assert cfg.models.generator.backend == "llamacpp"
    trec = lambda v: load_config(data=ev.run_config("trec", "full", v, 0, args()))  # noqa: E731
    assert trec("base").principles.file.name == "trec.yaml" and trec("base").arms[-1] == "human"
    assert trec("teacher").principles.file is None and "error" in trec("teacher").principles.levels
    # the teacher is psilm's default (the embedded 1.5B where installed) unless --teacher-url names one
    assert (
        trec("teacher").models.teacher
        == load_config(
            data={"task": "trec", "data": {"seeds": str(ev.DATA / "trec/train.jsonl")}}
        ).models.teacher
    )
    assert trec("teacher_all").arms == ["teacher"] and trec("teacher_all").principles.file is None
    assert trec("error_off").principles.levels == ["task", "category"]
    assert trec("levels_category").principles.levels == ["category"]
    assert trec("per_instance_all").generate.principles_per_instance is None
    assert trec("per_instance_1").generate.principles_per_instance == 1
    assert trec("base").generate.principles_per_instance == 2  # psi_person: the default
    assert trec("verifier_on").generate.verify_samples == 3
    assert (
        trec("label_check").generate.label_check and trec("label_check").models.checker.model == "gemma3-270m"
    )
    assert not ev.applies("gsm8k", "label_check") and ev.applies("sst2", "label_check")
    assert trec("direct_bare").generate.label_descriptions is False and trec("direct_bare").arms == ["direct"]
    assert trec("psi_bare").generate.label_descriptions is False and trec("base").generate.label_descriptions
    assert trec("prior_weights").generate.category_weights == "train"  # the form a user writes
    assert trec("evolve").arms == ["direct", "psi", "direct_round2", "psi_round2"]
    assert trec("evolve").evolve.rounds == 2 and trec("evolve").principles.file.name == "trec.yaml"
    assert trec("evolve_relabel").evolve.check == "relabel" and trec("evolve_relabel").arms == [
        "psi",
        "psi_round2",
    ]
    assert trec("evolve_mix_off").evolve.error_mix is False
    assert trec("evolve_principles_off").evolve.error_principles == "off"
    assert trec("teacher_header").generate.principle_mix == "task_header"
    assert (
        trec("teacher_mix").generate.principle_mix == "levels" and trec("teacher_mix").principles.file is None
    )
    rounds = trec("teacher_rounds")
    assert rounds.arms == ["psi", "psi_round2", "psi_round3"] and rounds.principles.file is None
    assert (
        rounds.evolve.judge == "seeds_cv" and rounds.evolve.mix_hold_right and rounds.evolve.mix_blend == 0.5
    )
    # every reported ablation name has the arm it is compared with; the round pairs are reported
    assert all(n in ev.ABLATION_BASE for v in ev.ABLATIONS for n in ev.VARIANTS[v][2].values())
    assert ("psi_round2", "psi_round1") in ev.PAIRS and ("psi_round2", "direct_round2") in ev.PAIRS
    assert (
        load_config(data=ev.run_config("trec", "quick", "base", 0, args(profile="quick"))).arms
        == ev.QUICK_ARMS
    )


def test_plan_runs_main_arms_for_every_seed_before_ablations(ev):
    jobs = ev.plan(args())
    trec = [v for t, _, v in jobs if t == "trec"]
    assert trec[:9] == ["base", "teacher", "teacher_all"] * 3
    assert set(trec[9:]) == set(ev.ABLATIONS)
    assert {v for t, _, v in jobs if t == "sst2"} == set(ev.MAIN)  # ablations on trec only
    assert ev.plan(args(quick=True, seeds=[0])) == [("trec", 0, "base"), ("sst2", 0, "base")]


def test_t_interval(ev):
    assert bench.t_interval([0.5]) is None
    assert bench.t_interval([0.6, 0.6, 0.6]) == [0.6, 0.6]
    lo, hi = bench.t_interval([0.5, 0.6, 0.7])  # mean 0.6, sd 0.1, t(2) = 4.303
    assert (lo, hi) == pytest.approx((0.6 - 4.303 * 0.1 / 3**0.5, 0.6 + 4.303 * 0.1 / 3**0.5), abs=1e-4)
    assert bench.t_interval([0.1, 0.9]) == [0.0, 1.0]  # accuracies stay in [0, 1]
    assert bench.paired(run([0.9, 0.1]), run([0.1, 0.9]))["ci95"] == [-1.0, 1.0]


def test_summary_of_one_seed_falls_back_to_wilson(ev):
    one = bench.summarize_arm(run([0.5]))
    assert one["ci95"] == pytest.approx([0.2366, 0.7634], abs=1e-4)
    three = bench.summarize_arm(run([0.5, 0.6, 0.7]))
    assert three["mean"] == 0.6 and three["seeds"] == {"0": 0.5, "1": 0.6, "2": 0.7}
    assert three["tokens"] == {"generator": {"prompt": 100, "completion": 50}} and three["n_train"] == 40


def test_paired_differences(ev):
    same = bench.paired(run([0.5, 0.6]), run([0.5, 0.6]))
    assert same["mean"] == 0 and same["ci95"] == [0.0, 0.0] and same["ci95_rows"] == [0.0, 0.0]
    better = bench.paired(run([0.9, 0.8, 0.9], n=50), run([0.5, 0.5, 0.4], n=50))
    assert better["mean"] == pytest.approx(0.4, abs=1e-9)
    assert 0 < better["ci95"][0] < 0.4 < better["ci95"][1]
    assert 0 < better["ci95_rows"][0] < 0.4 < better["ci95_rows"][1]
    assert bench.paired(run([0.5]), {}) is None  # no seed in common


def test_markdown_tables_come_from_the_json(ev):
    direct, psi = run([0.5, 0.6, 0.5], n=50), run([0.7, 0.8, 0.7], n=50)
    ablation = bench.summarize_arm(direct) | {"vs_psi_person": bench.paired(direct, psi)}
    result = {
        "profile": "full", "date": "2026-11-25", "complete": False, "missing": ["trec/seed2/error_off"],
        "machine": {"cores": 2, "cpu": "AMD EPYC"},
        "tasks": {"trec": {
            "arms": {"direct": bench.summarize_arm(direct), "psi_person": bench.summarize_arm(psi)},
            "paired": {"psi_person - direct": bench.paired(psi, direct)},
            "ablations": {"levels_task": ablation},
        }},
    }  # fmt: skip
    md = ev.markdown(result)
    assert "partial: 1 runs not done yet" in md
    assert "| direct | 53.3 |" in md and "| psi_person | 73.3 |" in md
    assert md.index("| direct |") < md.index("| psi_person |")  # arms in a fixed order
    assert "| psi_person - direct | 20.0 |" in md and "| levels_task | 53.3 |" in md
    assert "-20.0 vs psi_person" in md


def test_rounds_show_each_class_that_falls_even_without_main_arms(ev):
    """A rounds-only result (no main arms) still prints its paired differences, and per class the
    change from one round to the next, mean over seeds, with the largest fall."""
    r1, r2 = run([0.5, 0.5], n=20), run([0.6, 0.7], n=20)
    for seed, (num, loc) in enumerate([(0.8, 0.4), (0.6, 0.6)]):
        r1[seed]["per_class"] = {"numeric": 0.9, "location": 0.5, "human": 0.5}
        r2[seed]["per_class"] = {"numeric": num - 0.2, "location": loc + 0.2}  # no human in round 2
    diff = bench.paired(r2, r1)
    assert diff["per_class"] == {"location": pytest.approx(0.2), "numeric": pytest.approx(-0.4)}
    assert diff["largest_class_fall"] == pytest.approx(-0.4)
    assert bench.summarize_arm(r2)["per_class"] == {"location": 0.7, "numeric": 0.5}
    assert "per_class" not in bench.paired(run([0.5]), run([0.6]))  # entries without classes
    result = {
        "profile": "full", "date": "2026-12-04", "complete": True, "missing": [],
        "machine": {"cores": 2, "cpu": "AMD EPYC"},
        "tasks": {"trec": {"arms": {}, "paired": {"psi_teacher_r2 - psi_teacher_r1": diff},
                           "ablations": {"psi_teacher_r2": bench.summarize_arm(r2)}}},
    }  # fmt: skip
    md = ev.markdown(result)
    assert "| psi_teacher_r2 - psi_teacher_r1 | 15.0 |" in md
    assert "| paired difference, per class (points) | location | numeric | largest fall |" in md
    assert "| psi_teacher_r2 - psi_teacher_r1 | 20.0 | -40.0 | -40.0 |" in md
    assert "| psi_teacher_r2 | 65.0 |" in md


def test_trec_label_rule_and_score():
    spec = importlib.util.spec_from_file_location("trec_labels", BENCH / "trec_labels.py")
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    cases = {
        "What does NASA stand for ?": "abbreviation",
        "How many people live in Peru ?": "numeric",
        "Who wrote Hamlet ?": "human",
        "What U.S. state has the most airports ?": "location",
        "Why is the sky blue ?": "description",
        "What kind of tree is a maple ?": "entity",
        "I love this film.": None,
    }
    assert {q: tl.rule_label(q) for q in cases} == cases
    r = tl.score([("Who wrote Hamlet ?", "human"), ("Sure! Here is one: Who is he? Ok?", "human")])
    assert (
        r["agree"] == 0.5 and r["one_question"] == 0.5 and r["per_label"] == {"human": 0.5}
    )  # chatter: no credit


def test_trec_check_policies_score_what_each_policy_keeps(tmp_path):
    """A round arm's check report -> per policy, the rows it keeps and the rule's agreement."""
    import json

    from psilm.run.folder import Layout

    spec = importlib.util.spec_from_file_location("trec_labels", BENCH / "trec_labels.py")
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    layout = Layout(tmp_path)
    assert tl.check_policies(tmp_path, "psi_round2") is None  # not a round arm (or not run yet)
    layout.arm("psi_round2").mkdir(parents=True)
    rows = [  # (id, question, asked label, student's label, p(asked), p(student))
        ("a", "Who wrote Hamlet ?", "human", "human", 0.8, 0.8),
        ("b", "How many legs does a spider have ?", "human", "numeric", 0.05, 0.95),
        ("c", "Where is Peru ?", "numeric", "human", 0.4, 0.5),
        ("d", "What is a dog ?", "entity", "entity", 0.6, 0.6),
    ]
    layout.new_rows("psi_round2").write_text(
        "".join(json.dumps({"id": i, "input": q, "answer": lb}) + "\n" for i, q, lb, *_ in rows)
    )
    report = {"rows": [
        {"id": i, "answer": lb, "student": st, "agree": lb == st, "p_label": pl, "p_student": ps}
        for i, _, lb, st, pl, ps in rows
    ]}  # fmt: skip
    layout.check_report("psi_round2").write_text(json.dumps(report))
    c = tl.check_policies(tmp_path, "psi_round2")
    assert c["n_new"] == 4
    assert c["none"] == {"rows": 4.0, "agree": 0.25}  # only "Who wrote Hamlet" asks for its label
    assert c["agree"] == {"rows": 2.0, "agree": 0.5}  # a and d; "What is a dog" is description
    assert c["relabel"] == {"rows": 4.0, "agree": 0.5}  # b becomes numeric (0.95 sure); c stays
    assert c["weight"]["rows"] == 1.9 and c["weight"]["agree"] == round(0.8 / 1.85, 4)
    assert c["student"] == {"rows": 4.0, "agree": 0.5} and c["disagreed"] == {"rows": 2.0, "agree": 0.0}


def test_evidence_script_runs_its_main(tmp_path):
    """The script itself, not only its functions: --aggregate-only on a folder with no runs yet
    writes a partial result (its imports inside main() once named a function psilm no longer had)."""
    import json
    import subprocess

    result = tmp_path / "r.json"
    cmd = [sys.executable, str(BENCH / "evidence.py"), "--aggregate-only", "--tasks", "trec", "--seeds", "0",
           "--variants", "base", "--out", str(tmp_path / "runs"), "--result", str(result)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(result.read_text())
    assert out["complete"] is False and "trec/seed0/base" in out["missing"]
    assert "partial" in result.with_suffix(".md").read_text()  # no png: nothing to plot yet


def test_round_policy_ablations_compare_with_the_default_in_the_same_kind_of_folder(ev):
    """The equal count depends on which arms a folder runs: a psi-only ablation is compared with
    the default policy in a psi-only folder (evolve_agree), never with `evolve`'s psi_round2."""
    policies = [v for v in ev.VARIANTS if v.startswith("evolve_") and v != "evolve_agree"]
    assert policies and all(ev.VARIANTS[v][0] == ev.VARIANTS["evolve_agree"][0] == ["psi"] for v in policies)
    for v in policies:
        (name,) = ev.VARIANTS[v][2].values()
        assert ev.ABLATION_BASE[name] == "psi_round2_agree"


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_check_keeps_rows_within_the_margin_and_scores_them_by_the_rule():
    import numpy as np

    lc = _bench_module("label_check")
    labels = ["human", "numeric"]
    rows = [("Who wrote Hamlet ?", "human"), ("Who is he ?", "numeric"), ("How many legs ?", "numeric")]
    scores = np.array([[-5.0, -9.0], [-4.0, -5.5], [-8.0, -3.0]])  # row 2: numeric 1.5 nats behind
    assert lc.passes(scores, [0, 1, 1], 0.0) == [True, False, True]
    assert lc.passes(scores, [0, 1, 1], 2.0) == [True, True, True]
    r = lc.check(rows, scores, labels)
    assert r["n"] == 3 and r["agree"] == round(2 / 3, 4)
    at0 = r["margins"]["0.0"]
    assert at0["kept"] == 2 and at0["agree_kept"] == 1.0 and at0["agree_dropped"] == 0.0
    assert at0["kept_per_label"] == {"human": 1, "numeric": 1}
    assert r["margins"]["4.0"]["kept"] == 3 and r["margins"]["4.0"]["agree_dropped"] is None


def test_label_check_scores_with_the_embedded_model():
    """psilm's own llama.cpp scorer through the benchmark: finite log-probabilities, one per label,
    and each label's list header changes them."""
    import numpy as np

    from psilm.llm import load_backend
    from psilm.llm.settings import ModelConfig
    from psilm.tasks import load_task

    lc = _bench_module("label_check")
    task = load_task("trec")
    assert len({task.label_check_prompt(lb) for lb in task.labels}) == len(task.labels)
    assert task.label_check_prompt("human").endswith('Questions labelled "human":\n1.')
    backend = load_backend(ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=256, n_threads=1))
    try:
        s = lc.score(backend, task, ["Who wrote Hamlet ?", "How many legs does a spider have ?"])
        assert s.shape == (2, len(task.labels)) and np.isfinite(s).all() and (s < 0).all()
        assert len(set(np.round(s[0], 4))) > 1  # the header changes the text's likelihood
        longer = lc.score(backend, task, ["Who wrote Hamlet ? Who wrote Hamlet ? Who wrote Hamlet ?"])
        assert (longer[0] < s[0]).all()  # more tokens, less probable
        # the same numbers as scoring each (header, question) pair on its own
        header, item = task.label_check_prompt(task.labels[1]), task.label_check_text("Who wrote Hamlet ?")
        one = backend.score([header], [item])
        assert abs(one[0].logprob - s[0, 1]) < 1e-3
    finally:
        backend.close()


def test_generation_benchmark_counts_what_llama_cpp_evaluated(tmp_path, monkeypatch):
    """benchmarks/generation.py's decode counts: psilm reads each shared prompt prefix once (the
    prefix tree's nodes), the plain loop re-reads all but the previous prompt's prefix."""
    from llama_cpp import Llama

    from psilm.llm.base import common_prefix_len
    from psilm.llm.llamacpp_check import ensure_works
    from psilm.llm.llamacpp_decode import prefix_tree

    monkeypatch.setenv("PSILM_CACHE", str(tmp_path))  # where the _q8 paths' file is made
    gen = _bench_module("generation")
    gen.STYLE = "list"
    requests = gen.build_requests(4)
    ensure_works(Path(gen.model_file()), 1)  # in a child first: a crash must not end pytest
    vocab = Llama(model_path=gen.model_file(), vocab_only=True, verbose=False)
    tokens = [vocab.tokenize(p.encode(), add_bos=True) for _, p in requests]
    psilm_run = gen.run_psilm_llamacpp(requests, 4, batch=4)
    loop = gen.run_llamacpp_sequential(requests, 4)
    d = psilm_run["decode"]
    assert d["prompt_tokens"] == len(prefix_tree(sorted(tokens))) < psilm_run["prompt_tokens"]
    assert 0 < d["answer_tokens"] <= psilm_run["completion_tokens"] and d["prompt_s"] > 0
    reread = sum(len(t) - common_prefix_len(a, t) for a, t in zip([[], *tokens[:-1]], tokens, strict=True))
    assert loop["decode"]["prompt_tokens"] == reread > d["prompt_tokens"]
    assert loop["decode"]["answer_tokens"] <= loop["completion_tokens"]
    # the _q8 paths load the same re-encoded file, made before either clock starts
    assert gen.model_file("q8_0") == gen.model_file("q8_0") != gen.model_file()
    q8 = gen.run_psilm_llamacpp_q8(requests, 4)
    assert q8["decode"]["prompt_tokens"] == d["prompt_tokens"] and q8["instances"] == 4


def test_generation_quality_pools_seeds_by_rows_and_reads_files_from_before_seeds():
    gq = _bench_module("generation_quality")

    def arm(seed, n, agree, one=1.0):
        s = {"n": n, "label_agreement": agree, "one_question": one}
        row = {"arm": "smollm2 list", "mode": "psi", "before_filters": s, "after_filters": s}
        return row if seed is None else {**row, "seed": seed}

    pooled = gq.pooled([arm(None, 100, 0.7), arm(1, 50, 0.4, 0.5), arm(2, 0, None, None)])
    assert len(pooled) == 1 and pooled[0]["seeds"] == [0, 1, 2]  # no "seed": written before --seeds
    b = pooled[0]["before_filters"]
    assert b["n"] == 150 and b["label_agreement"] == 0.6 and b["one_question"] == round(125 / 150, 4)
    assert b["per_seed_label_agreement"] == {"0": 0.7, "1": 0.4, "2": None}
    assert b["label_agreement_95"][0] < 0.6 < b["label_agreement_95"][1]
