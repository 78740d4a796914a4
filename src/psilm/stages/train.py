"""Stage 4: fine-tune the student on the filtered instances (TRL SFT, LoRA by default).

Each example becomes a conversational prompt-completion pair: the prompt is exactly the chat the
student reads at evaluation time (`task.prompt`), the completion is the assistant's answer, and
the loss is on the completion only. Works unchanged under `accelerate launch` (data parallel).

Writes into the folder it is given:
  adapter/  LoRA adapter + tokenizer (method "lora")
  merged/   a plain Hugging Face model folder + tokenizer (always: evaluation loads it),
            loadable by AutoModelForCausalLM.from_pretrained and psilm's transformers backend
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from psilm import arms
from psilm.data import load_examples
from psilm.durable import fingerprint, is_main_process
from psilm.errors import DataError
from psilm.llm import hf
from psilm.llm.settings import TransformersModel
from psilm.settings import Settings
from psilm.stages.base import Input, Stage, StepIO, model_label
from psilm.tasks.base import Example, Task

_LOG = logging.getLogger(__name__)
# progress(total_steps) returns advance(n, note=...): how a caller shows the steps and the loss
Progress = Callable[[int], Callable[..., None]]


class TrainSettings(Settings):
    method: Literal["lora", "full"] = Field(
        "lora",
        description="lora: a low-rank adapter, merged into a copy of the model after; full: every weight.",
    )
    epochs: float = Field(3, gt=0, description="Passes over the training rows.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (smoke runs); overrides epochs."
    )
    learning_rate: float = Field(2e-4, gt=0, description="LoRA; use ~2e-5 for full fine-tuning.")
    batch_size: int = Field(8, ge=1, description="Rows per optimizer step on one device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches summed into one optimizer step.")
    max_length: int | None = Field(
        None,
        ge=16,
        description="Tokens per example, prompt plus target; a longer row is cut, one whose prompt alone "
        "is longer is left out. None: the longest training row's, so none is (a task's rows set it).",
    )
    include_seeds: bool = Field(True, description="Train on the seeds as well as the generated data.")
    gradient_checkpointing: bool = Field(
        False, description="Saves memory for more time; small students don't need it."
    )
    # --- LoRA
    lora_r: int = Field(16, ge=1, description="The adapter's rank.")
    lora_alpha: int = Field(32, ge=1, description="The adapter's scale (alpha / r multiplies its update).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="The layers that get an adapter (PEFT's names; all-linear: every linear one).",
    )


def to_dataset_rows(task: Task, examples: list[Example]) -> list[dict]:
    """TRL's conversational prompt-completion format: the chat template is applied by TRL."""
    return [
        {
            "prompt": task.prompt(ex.input),
            "completion": [{"role": "assistant", "content": ex.output}],
        }
        for ex in examples
    ]


def soup_models(trained: Path, previous: Path, weight: float) -> int:
    """trained/ (a merged model folder) in place: every floating tensor becomes (1 - weight) * its own
    + weight * previous/'s. Both must be the same model fine-tuned (the same safetensors files and
    tensor names and shapes); returns the number of tensors blended."""
    from safetensors.torch import load_file, save_file

    files = sorted(p.name for p in trained.glob("*.safetensors"))
    theirs = sorted(p.name for p in previous.glob("*.safetensors"))
    if not files or files != theirs:
        raise DataError(
            f"{previous}: cannot blend it into {trained}: their weight files differ ({theirs} vs {files}); "
            "both must be the same student fine-tuned (set evolve.soup: 0)"
        )
    n = 0
    for name in files:
        own, other = load_file(trained / name), load_file(previous / name)
        for k, v in own.items():
            if k not in other or other[k].shape != v.shape:
                raise DataError(
                    f"{previous / name}: no tensor {k} of shape {tuple(v.shape)}; it is not the same student "
                    "fine-tuned (set evolve.soup: 0)"
                )
            if v.is_floating_point():
                own[k] = ((1 - weight) * v.float() + weight * other[k].float()).to(v.dtype)
                n += 1
        save_file(own, trained / name, metadata={"format": "pt"})
    return n


def train_model(
    task: Task,
    examples: list[Example],
    student: TransformersModel,
    settings: TrainSettings,
    out_dir: Path,
    seed: int,
    progress: Progress | None = None,
) -> dict:
    """Fine-tune a fresh copy of the student; write adapter/ and/or merged/ under out_dir.

    The trainer's loss records go to this module's logger; `progress` is told each optimizer step.
    """
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    # --- validate
    if not examples:
        raise DataError(
            "train: no training examples (the filter kept nothing and no seeds were included); "
            "check the filter stage's counts, loosen `filter` settings, or set train.include_seeds=true"
        )
    out_dir = Path(out_dir)
    device = hf.pick_device(student.device)
    on_gpu = device.startswith("cuda")
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    lora = settings.method == "lora"

    # --- data
    dataset = Dataset.from_list(to_dataset_rows(task, examples))

    # --- model: a fresh copy, never the per-process inference copy itself
    model, tokenizer = _load_for_training(student, device, lora)
    set_seed(seed)  # after loading: the same adapter init and data order however the model came

    # --- trainer
    max_length = settings.max_length or longest_row(tokenizer, dataset)
    config = SFTConfig(
        output_dir=str(out_dir),
        seed=seed,
        data_seed=seed,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        **_checkpointing(SFTConfig, settings.gradient_checkpointing),
        max_length=max_length,
        completion_only_loss=True,  # loss on the answer, never on the prompt
        packing=False,  # packing would let examples attend to each other without flash attention
        bf16=bf16,  # mixed precision on GPUs; fp32 on CPU, where bf16 matmuls are slow
        use_cpu=device == "cpu",
        save_strategy="no",  # the final model is written below; no checkpoints in out_dir
        report_to="none",
        logging_strategy="steps",
        logging_steps=0.1,  # about ten loss points per run, whatever its length
        disable_tqdm=True,
    )
    peft_config = _lora_config(settings) if lora else None
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    # the trainer would print() its log dicts (or draw tqdm bars); they go to the logger instead
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_report_callback(progress))

    # TRL drops rows whose prompt alone fills max_length (no answer token left to learn from)
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise DataError(
            f"train: all {len(examples)} training examples are longer than train.max_length="
            f"{max_length} tokens before their answer, so none can be learned from; "
            "raise train.max_length, or leave it unset (the longest row's length)"
        )

    # --- train
    started = time.perf_counter()
    result = trainer.train()
    duration = time.perf_counter() - started

    # --- write (trainer.save_model writes model + tokenizer, on the main process only)
    saved = []
    if not lora:
        trainer.save_model(str(out_dir / "merged"))
        saved.append("merged")
    else:
        trainer.save_model(str(out_dir / "adapter"))
        saved.append("adapter")
        if trainer.is_world_process_zero():
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(out_dir / "merged")
            tokenizer.save_pretrained(out_dir / "merged")
        saved.append("merged")
    trainer.accelerator.wait_for_everyone()  # other ranks return once rank 0 has written it all

    lengths = [min(len(ids), max_length) for ids in trainer.train_dataset["input_ids"]]
    epochs_done = float(trainer.state.epoch or 0.0)
    history = [[h["step"], round(h["loss"], 4)] for h in trainer.state.log_history if "loss" in h]
    return {
        "n_train": kept,
        "n_too_long": len(examples) - kept,
        "max_length": max_length,
        "steps": result.global_step,
        "epochs": round(epochs_done, 3),
        "train_loss": round(float(result.training_loss), 4),
        "loss_curve": history,
        "duration_s": round(duration, 2),
        "train_tokens": int(sum(lengths) * epochs_done),
        "method": settings.method,
        "saved": saved,
    }


def longest_row(tokenizer, dataset) -> int:
    """The longest row of a prompt-completion dataset in the student's tokens, chat template included."""
    longest = 16
    for row in dataset:
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return longest


def _report_callback(progress: Progress | None):
    """A TrainerCallback: each log dict (loss, grad_norm, ...) to the logger, each step to `progress`."""
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        advance: Callable[..., None] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if progress is not None and state.is_local_process_zero:
                self.advance = progress(state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            if self.advance is not None:
                self.advance(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_local_process_zero or not logs:
                return
            shown = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}
            shown.pop("total_flos", None)
            _LOG.info("step %d/%d: %s", state.global_step, state.max_steps, shown)
            if self.advance is not None and "loss" in logs:
                self.advance(0, note=f"loss {logs['loss']:.3f}")

    return Report()


def _load_for_training(student: TransformersModel, device: str, lora: bool):
    """(model, tokenizer), a copy of one's own: the cached inference copy is never trained in place."""
    # LoRA trains fp32 adapters over a frozen base in the run's dtype (bf16 on GPU); full
    # fine-tuning keeps fp32 master weights, with bf16 autocast on GPUs
    dtype = student.dtype if lora else "float32"
    # the same weights as the inference copy (which evaluation reuses later): copied from the cache
    same = hf.dtype_name(dtype, device) == hf.dtype_name(student.dtype, device)
    return hf.load_trainable(student.model, device, dtype, from_cache=same)


def _lora_config(settings: TrainSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )


def _checkpointing(config_cls, enabled: bool) -> dict:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing; set either."""
    new = "activation_checkpointing"
    return {new if new in config_cls.__dataclass_fields__ else "gradient_checkpointing": enabled}


# --- the step -------------------------------------------------------------------------------------
def rows_of(io: StepIO, name: str) -> list[Example]:
    """What arm `name` trains on (arms.train_rows), from its rows in the run folder."""
    cfg, spec = io.cfg, arms.ARMS[name]
    kept = io.read("rows", name) if spec.generated else None
    pool = None
    if spec.data == "pool" and cfg.data.train is not None:
        pool = arms.human_pool(load_examples(io.task, cfg.data.train), io.seeds, io.test or [])
    n = io.train_count(spec.round) if spec.shares_count else 0
    return arms.train_rows(spec, n, io.seeds, cfg.train.include_seeds, cfg.seed, kept, pool)


class Train(Stage):
    """arms/<arm>/model/: the student fine-tuned on the arm's rows, cut to the round's common count.
    A round arm with evolve.soup: its merged model then blended with the previous round's student."""

    name = "train"

    def runs_for(self, arm) -> bool:
        return arm is not None and arm.trained

    def reads(self, cfg, arm) -> list[Input]:
        read = [Input("seeds", of_run=True)]
        if arm.shares_count:  # the round's common row count reads every data arm's rows
            read += [
                Input("rows", a)
                for a in cfg.arms
                if arms.ARMS[a].generated and arms.ARMS[a].round == arm.round
            ]
        if arm.round > 1 and cfg.evolve.soup:
            read.append(Input("model", arm.previous))
        return read

    def writes(self, cfg, arm) -> list[str]:
        return ["model"]

    def workload(self, cfg, arm):
        rows = cfg.data.n_seeds if arm.data == "seeds" else cfg.generate.n * arm.round
        if arm.data != "seeds" and cfg.train.include_seeds:
            rows += cfg.data.n_seeds
        return model_label(cfg.models.student), rows * cfg.train.epochs, "row-epochs"

    def key(self, io: StepIO) -> dict[str, Any]:
        cfg = io.cfg
        soup = cfg.evolve.soup if io.arm.round > 1 else 0.0
        return {"settings": cfg.train.model_dump(mode="json"), "student": cfg.models.student.key(),
                "data": fingerprint([e.to_dict() for e in rows_of(io, io.arm.name)]), "seed": cfg.seed,
                "soup": soup}  # fmt: skip

    def summary(self, st: dict[str, Any]) -> str:
        epochs = f"{st['epochs']:g} epoch{'' if st['epochs'] == 1 else 's'}"
        return f"{epochs} ({st['steps']} steps, {st['n_train']} rows), loss {st['train_loss']:.3f}"

    def check(self, io: StepIO) -> None:
        if io.arm.round > 1 and io.cfg.evolve.soup:
            io.read("model", io.arm.previous)  # the previous student, whose weights the soup blends in

    def run(self, io: StepIO) -> dict[str, Any]:
        cfg, arm = io.cfg, io.arm
        examples = rows_of(io, arm.name)
        soup = cfg.evolve.soup if arm.round > 1 else 0.0
        out = io.folder("model")  # renamed into place when whole: model/ is never half-written
        stats = train_model(io.task, examples, cfg.models.student, cfg.train, out, cfg.seed,
                            io.bar(f"train/{arm.name}"))  # fmt: skip
        if is_main_process():  # under torchrun every rank trains; only rank 0 touches the files
            if soup:  # the adapter describes the round's training alone, not the blend
                n = soup_models(out / "merged", Path(io.read("model", arm.previous)), soup)
                stats["soup"] = {"previous": arm.previous, "weight": soup, "tensors": n}
                stats["saved"] = [x for x in stats.get("saved", []) if x != "adapter"]
                shutil.rmtree(out / "adapter", ignore_errors=True)
            # what predict and evaluate check the folder against before they load it
            files = sorted(f for f in (out / "merged").iterdir() if f.is_file())
            stats["merged_files"] = {f.name: f.stat().st_size for f in files}
        if stats.get("n_too_long"):
            io.log(f"[train/{arm.name}] {stats['n_too_long']} of {len(examples)} rows are longer than train."
                   f"max_length={stats['max_length']} before their answer: not trained on")  # fmt: skip
        if soup:
            io.log(f"[train/{arm.name}] its weights blended with {arm.previous}'s: "
                   f"{1 - soup:g} of its own, {soup:g} of the previous round's (evolve.soup)")  # fmt: skip
        return stats  # n_train: the rows trained on, n_too_long: those max_length left out
