"""`psilm export --to lm-eval`: the run's test split as a task for lm-evaluation-harness.

The folder holds the test rows the run scored (test.jsonl, in psilm's own terms: the input the
model reads, the answer and, where there are any, the answer options), a task YAML that reads
them from that local file (no hub), and a README with the command. With `--apply_chat_template`
lm-eval asks any chat model what psilm's student reads: the task's instruction as the system
message, `<Input name>: <input>` as the user message. Classification and multiple choice are
scored by the likelihood of each option as the assistant's reply (`acc`), the rest by the greedy
reply (`exact_match`, numeric answers read after '####').
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from psilm import data as data_mod
from psilm.durable import atomic_write_text, write_jsonl
from psilm.run.finished import FinishedRun

ROWS = "test.jsonl"


def task_name(fin: FinishedRun) -> str:
    """lm-eval task names are identifiers: psilm_<run>_<task>."""
    return re.sub(r"[^a-z0-9_]+", "_", f"psilm_{fin.cfg.name}_{fin.task.name}".lower()).strip("_")


def task_config(fin: FinishedRun, rows_path: Path) -> dict:
    task, name = fin.task, task_name(fin)
    cfg = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(rows_path.resolve())}},
        "test_split": "test",
        "description": task.instruction(),  # lm-eval's system message under --apply_chat_template
        "doc_to_text": f"{task.config.input_name.capitalize()}: {{{{input}}}}",
        "doc_to_target": "answer",
    }
    if task.kind in ("classification", "multiple_choice"):
        cfg |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "options",
            "target_delimiter": "",  # the option is the whole reply, right after the assistant's turn
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        cfg |= {
            "output_type": "generate_until",
            "generation_kwargs": {
                "until": [],  # the model's own end of turn
                "do_sample": False,
                "max_gen_toks": fin.cfg.evaluate.max_tokens,
            },
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "ignore_punctuation": task.kind == "free_text",
                }
            ],
        }
        if task.kind == "numeric":
            cfg["filter_list"] = [
                {
                    "name": "psilm-answer",
                    "filter": [
                        {"function": "regex", "regex_pattern": r"#### (\-?[0-9\.\,]+)"},
                        {"function": "take_first"},
                    ],
                }
            ]
    cfg["metadata"] = {"version": 1, "source": f"psilm run {fin.cfg.name}"}
    return cfg


def write_task(fin: FinishedRun, test_path: Path, dest: Path, final: Path) -> None:
    """test.jsonl (the rows the run scored), <task>.yaml and README.md into `dest`, a folder
    that will be renamed to `final` (which the YAML names)."""
    task = fin.task
    examples = data_mod.test_slice(data_mod.load_examples(task, test_path), fin.cfg.data.n_test)
    rows = [
        {"input": ex.input, "answer": ex.answer}
        | ({"options": task.answer_options(ex)} if task.answer_options(ex) else {})
        for ex in examples
    ]
    write_jsonl(dest / ROWS, rows)
    name = task_name(fin)
    config = task_config(fin, final / ROWS)
    atomic_write_text(dest / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    atomic_write_text(dest / "README.md", _readme(fin, name, final, len(rows)))


def _readme(fin: FinishedRun, name: str, folder: Path, n: int) -> str:
    how = (
        "the likelihood of each option as the assistant's whole reply (`acc`). psilm also scores the "
        "end-of-turn token after the option and lm-eval does not, so the two can differ on near ties"
        if fin.task.kind in ("classification", "multiple_choice")
        else "the greedy reply (`exact_match`)"
    )
    return (
        f"# lm-eval task `{name}`\n\n"
        f"The {n} test rows run `{fin.cfg.name}` scored ({fin.task.name}, {fin.task.kind}), as a task for "
        "lm-evaluation-harness that reads the local file test.jsonl.\n\n"
        "```sh\n"
        f"lm_eval --model hf --model_args pretrained=MODEL_DIR --tasks {name} \\\n"
        f"  --include_path {folder} --apply_chat_template\n"
        "```\n\n"
        "MODEL_DIR: a folder from `psilm export --to hf`, or any Hugging Face chat model, scored the same "
        "way. `--apply_chat_template` gives the model the chat psilm's student reads (the task's "
        f"instruction as the system message); each row is scored by {how}.\n\n"
        f"The YAML names test.jsonl by its absolute path ({folder / ROWS}): moving this folder means "
        "editing `dataset_kwargs.data_files` there.\n"
    )
