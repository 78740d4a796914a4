"""Damaged state: every file psilm reads back, damaged four ways, under every command that reads it.

A finished tiny run (trained_run.py: arms zero_shot and psi) is copied per case; one of its files
is cut to half its length, replaced by valid JSON (or YAML) of another shape, replaced by random
bytes of its own length, or removed; then one command runs in process through psilm.shell.cli.main.
Each (file, damage, command) is one case, and expects one of:

  E  an error: exit 2, one stderr line "psilm: error: " naming the file and a `psilm ...` command
     that writes it again, no traceback, and every file of the folder byte for byte as before
     (psilm.log aside: it records the attempt)
  K  kept: the command does not need the file (the step that reads it is done, or a half-finished
     run's report leaves it out): exit 0, and the folder as before, damage included
  M  made again: the command writes the file again (a run writes config.yaml and metrics.json, a
     stage resumes and writes a removed output): exit 0, and every file of the pristine run back
     as it was, but for what differs from run to run (the manifest, a step's timings, the folder's
     own path, the trainer's pickled arguments); old files may sit in .superseded/

Files no command reads back are left out: report.html, report.md and psilm.log (only written),
the LoRA adapter under model/adapter/ (only the merged model is loaded). psilm's cache is
tested the same way at the end, with the commands that read it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import zipfile
from pathlib import Path

import pytest
from trained_run import trained_run

from psilm import durable
from psilm.errors import BackendError
from psilm.run.folder import RunDir
from psilm.shell.cli import main

pytestmark = pytest.mark.slow

DAMAGES = ("truncate", "shape", "random", "remove")
OTHER_SHAPE = {  # valid, but not what psilm wrote there: a list where a mapping was
    ".jsonl": b'["not", "a", "record"]\n',
    ".yaml": b"- not\n- a mapping\n",
}
STAGES = ("principles", "generate", "filter", "train", "evaluate")
READ_ONLY = ("report", "predict", "export", "export-hf")

# --- which command reads which file, and what each damage (in DAMAGES' order) leads to ----------
MODEL = "arms/psi/model/merged/"
READERS: dict[str, dict[str, str]] = {
    "config.yaml": {"run": "MMMM", **dict.fromkeys(STAGES + READ_ONLY, "EEEE"), "plan": "KKKE"},
    # a run folder without its manifest is refused, except by `psilm run`, which runs every step again
    "manifest.json": {"run": "EEEM", **dict.fromkeys(STAGES + READ_ONLY, "EEEE"), "plan": "EEEK"},
    # a copy of the config's seeds, written again by every command that opens the run
    "seeds.jsonl": {**dict.fromkeys(("run", *STAGES), "MMMM"), "plan": "KKKK"},
    # the raw log is read only while its generate step runs, and that one is done
    "raw/generate-psi-generator.jsonl": {"run": "KKKK", "generate": "KKKK"},
    "principles.json": {
        **dict.fromkeys(("run", "principles", "generate"), "EEEM"),
        **dict.fromkeys(("plan", "report", "export", "export-hf"), "EEEK"),
    },
    "arms/psi/candidates.jsonl": {
        "run": "EEEM",
        "generate": "KKKM",  # done: its output is not read; removed, it is written again
        "filter": "EEEE",
        **dict.fromkeys(("plan", "report"), "EEEK"),
    },
    "arms/psi/train.jsonl": {
        "run": "EEEM",
        "filter": "KKKM",
        **dict.fromkeys(("train", "export"), "EEEE"),
        **dict.fromkeys(("plan", "report"), "EEEK"),
    },
    "arms/psi/filter_report.json": {
        "run": "EEEM",
        "filter": "KKKM",
        **dict.fromkeys(("report", "export", "export-hf"), "EEEK"),
    },
    "arms/psi/metrics.json": {
        **dict.fromkeys(("run", "evaluate"), "EEEM"),
        **dict.fromkeys(("report", "export", "export-hf"), "EEEK"),
    },
    "arms/zero_shot/metrics.json": {
        **dict.fromkeys(("run", "evaluate-zero_shot"), "EEEM"),
        **dict.fromkeys(("report", "export", "export-hf"), "EEEK"),
    },
    "metrics.json": {"run": "MMMM", **dict.fromkeys(("report", "export", "export-hf"), "EEEK")},
    # the merged model: train's output (config.json marks it done); predict and export load or copy it
    MODEL + "config.json": {
        **dict.fromkeys(("predict", "export-hf"), "EEEE"),
        **dict.fromkeys(("run", "train"), "KKKM"),
    },
    **{
        MODEL + name: dict.fromkeys(("predict", "export-hf"), "EEEE")
        for name in (
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "chat_template.jinja",
        )
    },
}
CASES = [
    pytest.param(rel, damage, command, outcomes[i], id=f"{rel}-{damage}-{command}")
    for rel, commands in READERS.items()
    for command, outcomes in commands.items()
    for i, damage in enumerate(DAMAGES)
]


def argv(command: str, run: Path, cfg: Path, tmp: Path) -> list[str]:
    if command == "run":
        return ["run", str(cfg), "--out", str(run), "-q"]
    if command == "plan":
        return ["plan", str(cfg), "--out", str(run)]
    if command == "evaluate-zero_shot":
        return ["evaluate", "--run", str(run), "--arm", "zero_shot", "-q"]
    if command in STAGES:
        return [command, "--run", str(run), "-q"]
    if command == "report":
        return ["report", "--run", str(run)]
    if command == "predict":
        rows = cfg.parent / "test.jsonl"
        return ["predict", str(rows), "--run", str(run), "--out", str(tmp / "p.jsonl"), "-q"]
    to = "hf" if command == "export-hf" else "dataset"
    return ["export", "--run", str(run), "--to", to, "--out", str(tmp / "export")]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "shape":
        path.write_bytes(OTHER_SHAPE.get(path.suffix, b'["not", "what", "psilm", "wrote"]\n'))
    elif how == "random":
        path.write_bytes(random.Random(path.name).randbytes(len(data) or 64))
    else:
        path.unlink()


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


TIMINGS = {"duration_s", "load_s", "started", "finished"}
# written anew by every run: the manifest, the log, the reports, the trainer's pickled arguments
# (its own paths; nothing reads it back)
RUN_TO_RUN = {"manifest.json", "psilm.log", "report.html", "report.md"}
RUN_TO_RUN.add("arms/psi/model/adapter/training_args.bin")


def contents(folder: Path, source: Path) -> dict[str, str]:
    """Each file's hash, less what differs from run to run: JSON timings and the folder's own path
    (or its source's, in a file copied from there), and the files in RUN_TO_RUN."""

    def steady(x):
        if isinstance(x, dict):
            return {k: steady(v) for k, v in x.items() if k not in TIMINGS}
        return [steady(v) for v in x] if isinstance(x, list) else x

    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_file() and rel not in RUN_TO_RUN and not rel.startswith(".superseded/"):
            data = p.read_bytes().replace(str(folder).encode(), b"RUN").replace(str(source).encode(), b"RUN")
            if p.name == "metrics.json":  # the only JSON besides the manifest with timings in it
                data = json.dumps(steady(json.loads(data)), sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("psilm: error: "), err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    run = trained_run(tmp_path_factory)
    return run, contents(run, run)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """psilm's cache in a temporary folder: the real ~/.cache/psilm is never touched."""
    monkeypatch.setenv("PSILM_CACHE", str(tmp_path / "cache"))
    durable._noted.clear()


def test_every_file_psilm_reads_back_is_in_the_table():
    assert len(CASES) >= 200 and all(len(o) == len(DAMAGES) for c in READERS.values() for o in c.values())


@pytest.mark.parametrize("rel, how, command, expect", CASES)
def test_damaged_file(pristine, tmp_path, capsys, rel, how, command, expect):
    source, clean = pristine
    run = tmp_path / "run"
    shutil.copytree(source, run)
    damage(run / rel, how)
    before = snapshot(run)
    rc = main(argv(command, run, source.parent / "cfg" / "config.yaml", tmp_path))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    after = snapshot(run)
    written = {"psilm.log"} | ({"report.html", "report.md"} if command in ("run", "report") else set())
    if expect == "E":
        line = one_error_line(err)
        assert rc == 2, (rc, err)
        assert Path(rel).name in line and "`psilm " in line, line
        assert {k: v for k, v in after.items() if k not in written} == {
            k: v for k, v in before.items() if k not in written
        }
        return
    assert rc == 0, err[-3000:]
    if expect == "K":  # the damage stays; nothing else changed
        assert {k: v for k, v in after.items() if k not in written} == {
            k: v for k, v in before.items() if k not in written
        }
        return
    assert contents(run, source) == clean  # M: every file back as the pristine run had it
    assert RunDir(run, read_only=True).manifest["stages"]["evaluate/psi"]["status"] == "done"


# --- around the table -------------------------------------------------------------------------------
def test_a_folder_named_by_a_file_is_refused(pristine, tmp_path, capsys):
    source, _ = pristine
    cfg = source.parent / "cfg" / "config.yaml"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    for command in (["plan", str(cfg), "--out", str(blocker)], ["run", str(cfg), "--out", str(blocker)]):
        assert main(command) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "is a file, not a run folder" in line and "free disk space" not in line
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("rel", ["seeds.jsonl", "principles.json", "arms/psi/metrics.json"])
def test_a_folder_in_a_files_place_is_one_line(pristine, tmp_path, capsys, rel):
    """Not a disk or permission problem: the line says what stands in the way, not 'free disk space'."""
    source, _ = pristine
    run = tmp_path / "run"
    shutil.copytree(source, run)
    (run / rel).unlink()
    (run / rel).mkdir()
    before = snapshot(run)
    assert main(["run", str(source.parent / "cfg" / "config.yaml"), "--out", str(run), "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert Path(rel).name in line and "folder" in line and "free disk space" not in line, line
    assert {k: v for k, v in snapshot(run).items() if k != "psilm.log"} == {
        k: v for k, v in before.items() if k != "psilm.log"
    }


def test_a_damaged_raw_log_stops_the_generation_that_reads_it(pristine, tmp_path, capsys):
    """Once its step must run again (its candidates removed), the raw log is read: one line."""
    source, _ = pristine
    run = tmp_path / "run"
    shutil.copytree(source, run)
    (run / "arms/psi/candidates.jsonl").unlink()
    (run / "raw/generate-psi-generator.jsonl").write_text('["not", "a", "record"]\n')
    assert main(["generate", "--run", str(run), "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "generate-psi-generator.jsonl:1: corrupt record" in line


def test_weights_cut_short_without_a_size_record_are_one_line(pristine, tmp_path):
    """A run from before train recorded its files' sizes: the load itself fails in one line."""
    from psilm.llm import hf

    source, _ = pristine
    model = tmp_path / "merged"
    shutil.copytree(source / MODEL, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BackendError, match=r"merged could not be loaded"):
        hf.load(str(model), "cpu", "float32")


# --- psilm's cache -----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_llamacpp_check_record_is_checked_again(pristine, tmp_path, capsys, how):
    """doctor reads the check record every llamacpp load reads: damaged, it costs a check and a
    note, and is written anew (M); then it holds what a first check wrote."""
    pytest.importorskip("llama_cpp")
    record = tmp_path / "cache" / "llamacpp-checks.json"
    assert main(["doctor"]) == 0
    first = record.read_bytes()
    capsys.readouterr()
    damage(record, how)
    durable._noted.clear()
    assert main(["doctor"]) == 0
    out, err = capsys.readouterr()
    assert "check: decodes smollm2-135m" in out and "Traceback" not in err
    if how != "remove":
        assert err.count("psilm: note: ") == 1 and str(record) in err
    assert record.read_bytes() == first


def test_a_cache_that_cannot_be_written_is_a_note(tmp_path, capsys, monkeypatch):
    """A file where the cache folder should be: doctor prints its report, with one note."""
    pytest.importorskip("llama_cpp")
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    monkeypatch.setenv("PSILM_CACHE", str(blocker))
    assert main(["doctor"]) == 0
    out, err = capsys.readouterr()
    assert "check: decodes smollm2-135m" in out
    notes = [x for x in err.splitlines() if x.strip()]
    assert len(notes) == 1 and notes[0].startswith("psilm: note: ") and "free disk space" not in notes[0]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_requantized_gguf_is_made_again(tmp_path, capsys, how):
    pytest.importorskip("llama_cpp")
    from psilm.llm.llamacpp_backend import requantized
    from psilm.llm.registry import resolve_model
    from psilm.modelfiles import gguf_problem

    source = resolve_model("smollm2-135m").file
    made = requantized(source, "q8_0", 1)
    whole = made.read_bytes()
    damage(made, how)
    assert requantized(source, "q8_0", 1) == made and gguf_problem(made) is None
    assert made.read_bytes() == whole
    err = capsys.readouterr().err
    assert "Traceback" not in err and (how in ("remove", "shape") or f"{made}: cut short" in err)


@pytest.fixture
def chunked(tmp_path, monkeypatch):
    """A model file shipped in two chunk packages (as the embedded teacher's 22), and its spec."""
    from psilm.llm.chunks import ChunkedFile

    parts = [b"GGUF" + bytes(range(200)) * 3, random.Random(1).randbytes(5000)]
    for n, data in enumerate(parts, start=1):
        pkg = tmp_path / "site" / f"fake_part{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(parts)
    spec = ChunkedFile("fake.gguf", "fake_part{n}", "data/part{n:02d}.bin", 2, len(whole),
                       hashlib.sha256(whole).hexdigest(), "pip install fake")  # fmt: skip
    return spec, whole


@pytest.mark.parametrize("which", ["model", "marker"])
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_assembled_model_or_marker_is_verified_again(tmp_path, capsys, chunked, which, how):
    from psilm.llm.chunks import assemble

    spec, whole = chunked
    folder = tmp_path / "cache" / "models"
    target = assemble(spec, folder)
    marker = target.with_name(target.name + ".sha256")
    damage(target if which == "model" else marker, how)
    assert assemble(spec, folder) == target
    assert target.read_bytes() == whole
    assert marker.read_text().split()[0] == spec.sha256
    assert "Traceback" not in capsys.readouterr().err


def test_a_folder_in_the_assembled_models_place_is_one_line(tmp_path, chunked):
    from psilm.llm.chunks import assemble

    spec, _ = chunked
    folder = tmp_path / "cache" / "models"
    (folder / spec.name).mkdir(parents=True)
    with pytest.raises(BackendError, match=r"fake.gguf: not a file .*delete it"):
        assemble(spec, folder)
    (folder / spec.name).rmdir()
    (folder / (spec.name + ".sha256")).mkdir()  # the marker cannot be written: a note, the model is used
    assert assemble(spec, folder).is_file()


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_cached_wheel_is_built_again(tmp_path, monkeypatch, how):
    """llamacpp_build reuses its cached wheel only when it reads back whole."""
    from psilm.llm import llamacpp_build as B

    monkeypatch.setenv("PSILM_CACHE", str(tmp_path / "cache"))
    folder = B.wheel_dir()
    folder.mkdir(parents=True)
    wheel = folder / f"llama_cpp_python-{B.VERSION}-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("llama_cpp/__init__.py", "# a stand-in\n" * 200)
    assert B.build("python-not-needed") == wheel  # whole: reused, nothing built
    damage(wheel, how)
    pip = tmp_path / "fake-python"  # stands in for `python -m pip wheel ... -w FOLDER`: writes a wheel
    pip.write_text(f'#!/bin/sh\nfor a; do out=$a; done\ncp "{tmp_path}/good.whl" "$out/{wheel.name}"\n')
    pip.chmod(0o755)
    with zipfile.ZipFile(tmp_path / "good.whl", "w") as z:
        z.writestr("llama_cpp/__init__.py", "")
    assert B.build(str(pip)) == wheel and B.whole_wheel(wheel)
