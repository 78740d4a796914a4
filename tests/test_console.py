"""What a person sees during a run: a bar per stage and model call, one summary line per stage,
the results table. Library output (GGUF conversion bars, the trainer's loss dicts, warnings) goes
only to the run folder's psilm.log, unless --verbose."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from tiny import tiny_model, write_tiny_run_config

from psilm.run.runner import stage_summary
from psilm.shell import console as console_mod
from psilm.shell.cli import main

LIBRARY_NOISE = ["Converting and de-quantizing", "'loss':", "grad_norm", "Traceback", "Warning"]


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    """psilm's console as a 200-column terminal whose every frame is kept (capfd is no terminal)."""
    screen = io.StringIO()
    term = Console(file=screen, force_terminal=True, width=200, color_system=None, highlight=False)
    monkeypatch.setattr(console_mod, "_CONSOLE", term)
    return screen


def lines_of(screen: io.StringIO) -> list[str]:
    """The lines printed above the bars (the live region's frames are cursor-moved over)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", screen.getvalue())
    return [x.strip() for x in text.replace("\r", "\n").splitlines() if x.strip()]


# --- a whole run on the tiny model ------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_shows_bars_and_one_line_per_stage_and_logs_the_rest(tmp_path_factory, capfd, terminal):
    base = tmp_path_factory.mktemp("console")
    cfg = write_tiny_run_config(base / "cfg", tiny_model(tmp_path_factory), generate={"n": 8})
    capfd.readouterr()  # building the tiny model draws transformers' own bar: not psilm's run
    run = base / "run"
    assert main(["run", str(cfg), "--out", str(run)]) == 0
    cap = capfd.readouterr()
    shown = lines_of(terminal)

    # nothing reaches the real stdout / stderr but the results (and psilm's word on a student that
    # answers one label, as the tiny random model does); no library output anywhere
    assert all(x.startswith("WARNING (evaluate): ") for x in cap.err.strip().splitlines()), cap.err
    assert "psi" in cap.out and f"run folder: {run}" in cap.out
    for noise in LIBRARY_NOISE:
        assert noise not in cap.out and noise not in terminal.getvalue(), noise

    # one summary line per stage
    for pattern in [
        r"principles: \d+ principles \(.*\) from file, \d",
        r"generate/psi: 8 instances, [\d.]+ (s|min)",
        r"filter/psi: kept \d+ of 8, ",
        r"train/psi: 1 epoch \(\d+ steps, \d+ rows\), loss \d+\.\d+, ",
        r"evaluate/psi: \d+\.\d% \(n=8\), ",
    ]:
        hits = [x for x in shown if re.fullmatch(pattern + ".*", x)]
        assert len(hits) == 1, (pattern, shown)
    assert not [x for x in shown if x.startswith("[run]")]

    # bars: one per stage and per model call; training shows its loss
    screen = terminal.getvalue()
    for bar in ["generate/psi (generator)", "train/psi", "evaluate/psi"]:
        assert re.search(re.escape(bar) + r" +\S*━", screen), bar
    assert re.search(r"train/psi .*━.* \d+/\d+ .*loss \d+\.\d{3}", screen)

    # the run log holds what the console left out: the trainer's records, the summaries
    log = (run / "psilm.log").read_text()
    assert log.startswith("=== ") and f"psilm run {cfg}" in log.splitlines()[0]
    records = [x for x in log.splitlines() if "psilm.stages.train: step " in x]
    assert records and all("'loss':" in x and "'grad_norm':" in x for x in records[:-1])
    assert "train/psi: 1 epoch" in log and "evaluate/psi: " in log

    # --verbose: the trainer's records on the console too (a changed setting trains again)
    assert main(["train", "--run", str(run), "-v", "--set", "train.max_steps=2"]) == 0
    capfd.readouterr()  # verbose lets the libraries' own bars through too
    verbose = terminal.getvalue()[len(screen) :]
    assert re.search(r"INFO psilm\.stages\.train: step 1/2: \{'loss': ", verbose), verbose[-3000:]
    assert re.search(r"train/psi: .*\(2 steps", verbose)


@pytest.mark.slow
def test_loading_the_embedded_gguf_model_draws_no_conversion_bars(tmp_path_factory, capfd, terminal):
    """transformers unpacks GGUF weights under a plain tqdm bar; psilm's console hides it."""
    from psilm.llm.hf import _cached

    base = tmp_path_factory.mktemp("gguf")
    cfg = write_tiny_run_config(base / "cfg", tiny_model(tmp_path_factory))
    assert main(["run", str(cfg), "--out", str(base / "run"), "--set", "arms=[zero_shot]", "-q"]) == 0
    capfd.readouterr()
    _cached.cache_clear()  # an earlier test may have unpacked it already: unpack it here
    argv = ["evaluate", "--run", str(base / "run"), "--arm", "zero_shot"]
    assert main([*argv, "--set", "models.student.model=smollm2-135m"]) == 0
    cap = capfd.readouterr()
    assert not cap.err.strip(), cap.err
    assert "Converting and de-quantizing" not in cap.out + terminal.getvalue()
    assert cap.out.startswith("zero_shot: accuracy ")
    assert [x for x in lines_of(terminal) if x.startswith("evaluate/zero_shot: ")]


# --- the pieces -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, entry, expected",
    [
        ("generate/psi", {"n_candidates": 96, "duration_s": 12.34}, "generate/psi: 96 instances, 12.3 s"),
        ("filter/psi", {"n_in": 96, "n_kept": 88, "duration_s": 0.2}, "filter/psi: kept 88 of 96, 0.2 s"),
        (
            "train/psi",
            {"epochs": 3.0, "steps": 36, "n_train": 96, "train_loss": 0.4123, "duration_s": 105},
            "train/psi: 3 epochs (36 steps, 96 rows), loss 0.412, 1 min 45 s",
        ),
        (
            "evaluate/psi",
            {"accuracy": 0.6923, "n": 500, "duration_s": 3.0},
            "evaluate/psi: 69.2% (n=500), 3.0 s",
        ),
        (
            "principles",
            {"n_principles": 5, "per_level": {"task": 2, "error": 3}, "source": "teacher", "duration_s": 4},
            "principles: 5 principles (task 2, error 3) from teacher, 4.0 s",
        ),
        ("rounds/2", {"duration_s": 7200}, "rounds/2: 2 h 0 min"),  # a stage it does not know
        ("train/psi", {"steps": 3}, "train/psi: done"),  # an entry missing fields never fails a run
    ],
)
def test_stage_summary(name, entry, expected):
    assert stage_summary(name, entry) == expected


def test_stage_summary_says_resumed():
    assert (
        stage_summary("generate/psi", {"n_candidates": 4}, resumed=True)
        == "generate/psi: 4 instances (resumed)"
    )


def test_a_full_bar_leaves_the_screen():
    from rich.progress import Progress

    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bars = console_mod.Bars(progress)
    advance = bars.start("train/psi", 3)
    advance(1, note="loss 1.000")
    assert [t.fields["note"] for t in progress.tasks] == ["loss 1.000"]
    advance(2)
    assert progress.tasks == []
    advance(1)  # late calls after the end are harmless
    with bars.stage("evaluate/psi"):
        assert [t.description for t in progress.tasks] == ["evaluate/psi"]
    assert progress.tasks == []


def test_the_run_log_keeps_early_lines_and_survives_a_failed_write(tmp_path):
    log = console_mod.RunLog()
    log.line("note: data.test is not set")  # before the run folder exists
    log.open(tmp_path / "psilm.log", "psilm run c.yaml")
    log.line("principles: 3 principles")
    log.close_file()
    log.open(tmp_path / "psilm.log", "psilm filter")  # a command that logs nothing: no trace
    log.close_file()
    log.open(tmp_path / "psilm.log", "psilm train")
    log.line("train/psi: 1 epoch")
    log._file.close()  # as a full disk would: the next write fails
    log.line("lost, and no error")
    log.close_file()
    lines = (tmp_path / "psilm.log").read_text().splitlines()
    assert lines[0].startswith("=== ") and lines[0].endswith("psilm run c.yaml")
    assert lines[1].endswith("psilm: note: data.test is not set")
    assert lines[2].endswith("psilm: principles: 3 principles")
    assert lines[3].endswith("psilm train") and lines[4].endswith("train/psi: 1 epoch") and len(lines) == 5
