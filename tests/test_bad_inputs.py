"""A corpus of malformed inputs: each ends in one clear line, exit code 2, and an intact run folder.

Every case runs the command line against a run folder that already holds a finished stage
(principles) and checks: exit code 2, exactly one line on stderr starting "psilm: error: ", no
traceback, the file:line or setting named in that line, and every file of the run folder
byte-identical afterwards. (test_cli.py holds the first few of these; this is the full table.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import pytest
import yaml
from servers import free_port

from psilm.shell.cli import main

PRINCIPLES = str(resources.files("psilm").joinpath("demo", "sst2_principles.yaml"))
POS = {"text": "a warm , funny and moving film", "label": "positive"}
NEG = {"text": "a dull , lifeless mess", "label": "negative"}


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Env:
    """What a case may use: a scratch folder, a valid config (as a dict) and the run folder."""

    tmp: Path
    cfg: dict
    run: Path

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def config(self, cfg: dict | None = None, text: str | bytes | None = None) -> str:
        return self.file("bad.yaml", text if text is not None else yaml.safe_dump(cfg))

    def run_cmd(self, cfg: dict | None = None, *extra: str) -> list[str]:
        return ["run", self.config(cfg if cfg is not None else self.cfg), "--out", str(self.run), *extra]


# --- case builders: each returns the argv of one command ----------------------------------------
def with_data(key: str, content: str | bytes, name: str = "in.jsonl") -> Callable[[Env], list[str]]:
    def build(e: Env) -> list[str]:
        e.cfg["data"][key] = e.file(name, content)
        return e.run_cmd()

    return build


def edit(fn: Callable[[dict, Env], None]) -> Callable[[Env], list[str]]:
    def build(e: Env) -> list[str]:
        fn(e.cfg, e)
        return e.run_cmd()

    return build


def setting(path: str, value) -> Callable[[Env], list[str]]:
    def fn(cfg: dict, e: Env) -> None:
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return edit(fn)


def yaml_text(text: str | bytes) -> Callable[[Env], list[str]]:
    return lambda e: ["run", e.config(text=text), "--out", str(e.run)]


def overrides(*items: str) -> Callable[[Env], list[str]]:
    def build(e: Env) -> list[str]:
        return e.run_cmd(None, *[x for item in items for x in ("--set", item)])

    return build


def stage(*argv: str) -> Callable[[Env], list[str]]:
    return lambda e: [argv[0], "--run", str(e.run), *argv[1:]]


def old_layout(command: str) -> Callable[[Env], list[str]]:
    """A run folder made before every arm had its folder: psi's files at the top."""

    def build(e: Env) -> list[str]:
        (e.run / "candidates.jsonl").write_text(jsonl(POS))
        return e.run_cmd() if command == "run" else [command, "--run", str(e.run)]

    return build


def pool_only(content: str, n_seeds: int = 4) -> Callable[[Env], list[str]]:
    def fn(cfg: dict, e: Env) -> None:
        del cfg["data"]["seeds"]
        cfg["data"]["train"] = e.file("pool_bad.jsonl", content)
        cfg["data"]["n_seeds"] = n_seeds

    return edit(fn)


def principles_file(content: str) -> Callable[[Env], list[str]]:
    return setting_from_env("principles.file", lambda e: e.file("principles_bad.yaml", content))


def setting_from_env(path: str, value: Callable[[Env], object]) -> Callable[[Env], list[str]]:
    def build(e: Env) -> list[str]:
        return setting(path, value(e))(e)

    return build


def overlapping_test(cfg: dict, e: Env) -> None:
    seed_text = json.loads(Path(cfg["data"]["seeds"]).read_text().splitlines()[1])["text"]
    shout = "  " + seed_text.upper().replace(" ", "   ") + " "  # same text, other case and spacing
    other = {"text": "nothing new here", "label": "negative"}
    cfg["data"]["test"] = e.file("test_bad.jsonl", jsonl(other, {"text": shout, "label": "negative"}))


GOOD = jsonl(POS, NEG)
HUGE = json.dumps({"text": "x" * 1_200_000, "label": "positive"})
DEEP = "[" * 100_000 + "]" * 100_000  # today's RecursionError traceback, now one line
LATIN1 = '{"text": "café", "label": "positive"}\n'.encode("latin-1")
seeds = partial(with_data, "seeds")

# (id, command builder, what the one error line must name)
CASES: list[tuple[str, Callable[[Env], list[str]], tuple[str, ...]]] = [
    # --- broken or empty JSONL
    ("json-broken-line", seeds(GOOD + '{"text": "x", "label": \n'), ("in.jsonl:3", "invalid JSON")),
    ("json-torn-last-line", seeds(GOOD + '{"text": "cut off'), ("in.jsonl:3", "invalid JSON")),
    ("json-array-line", seeds(GOOD + "[1, 2]\n"), ("in.jsonl:3", "expected a JSON object, got list")),
    ("json-string-line", seeds('"just a sentence"\n'), ("in.jsonl:1", "got str")),
    ("json-csv-not-jsonl", seeds("text,label\nfine,positive\n"), ("in.jsonl:1", "invalid JSON")),
    ("json-nul-bytes", seeds(b"\x00\x00\x00\n"), ("in.jsonl:1", "invalid JSON")),
    ("json-blank-lines-only", seeds("\n  \n\t\n"), ("in.jsonl", "no rows")),
    ("json-pool-empty", pool_only(""), ("pool_bad.jsonl", "no rows")),
    ("json-seeds-missing", setting("data.seeds", "/nonexistent/s.jsonl"), ("s.jsonl", "file not found")),
    ("json-seeds-is-folder", setting_from_env("data.seeds", lambda e: str(e.tmp)), ("is a folder",)),
    # --- wrong field names, missing or unknown labels
    ("field-wrong-input-name", seeds(jsonl({"sentence": "ok", "label": "positive"})),
     ("in.jsonl:1", "missing field `text`", "task.input_field")),
    ("field-wrong-target-name", seeds(jsonl(POS, {"text": "ok", "sentiment": "negative"})),
     ("in.jsonl:2", "missing field `label`", "task.target_field")),
    ("label-null", seeds(jsonl(POS, {"text": "ok", "label": None})), ("in.jsonl:2", "empty")),
    ("label-outside-set", seeds(jsonl(POS, NEG, {"text": "ok", "label": "neutral"})),
     ("in.jsonl:3", "'neutral' is not in task.labels")),
    ("label-wrong-case", seeds(jsonl({"text": "ok", "label": "Positive"})), ("in.jsonl:1", "'Positive'")),
    ("label-a-number", seeds(jsonl({"text": "ok", "label": 1})), ("in.jsonl:1", "'1'")),
    ("label-missing-from-seeds", seeds(jsonl(NEG, NEG, NEG)), ("in.jsonl", "['positive']")),
    ("text-not-a-string", seeds(jsonl({"text": 42, "label": "positive"})),
     ("in.jsonl:1", "`text` is empty or not text")),
    ("text-blank", seeds(jsonl(POS, {"text": "  ", "label": "negative"})), ("in.jsonl:2", "`text` is empty")),
    ("test-label-outside-set", with_data("test", jsonl({"text": "ok", "label": "meh"}), "t.jsonl"),
     ("t.jsonl:1", "'meh'")),
    ("test-broken-line", with_data("test", jsonl(POS, NEG) + "{oops}\n", "t.jsonl"),
     ("t.jsonl:3", "invalid JSON")),
    ("pool-one-label-only", pool_only(jsonl(POS, POS, POS)), ("data.train", "['negative']")),
    ("pool-fewer-seeds-than-labels", pool_only(jsonl(POS, NEG, POS), n_seeds=1), ("data.n_seeds=1",)),
    # --- encodings and huge lines
    ("non-utf8-latin1", seeds(GOOD.encode() + LATIN1), ("in.jsonl:3", "not valid UTF-8")),
    ("non-utf8-utf16", seeds(GOOD.encode("utf-16")), ("in.jsonl:1", "not valid UTF-8")),
    ("huge-line", seeds(GOOD + HUGE + "\n"), ("in.jsonl:3", "over 1,000,000 bytes")),
    ("huge-line-no-newline", seeds(HUGE * 4), ("in.jsonl:1", "over 1,000,000 bytes")),
    ("json-nested-100000-deep", seeds(GOOD + DEEP + "\n"), ("in.jsonl:3", "nested too deeply")),
    # --- other formats: CSV, Parquet, a save_to_disk folder
    ("csv-not-csv", seeds(b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "in.csv"), ("in.csv", "not valid UTF-8")),
    ("csv-jsonl-inside", seeds(GOOD, "in.csv"), ("in.csv:1", "looks like JSON")),
    ("csv-ragged-row", seeds("text,label\nfine,positive\na, b,negative\n", "in.csv"),
     ("in.csv:3", "3 values but the header")),
    ("csv-missing-field", seeds("text,sentiment\nfine,positive\n", "in.csv"),
     ("in.csv:2", "missing field `label`")),
    ("csv-label-outside-set", seeds("text,label\nfine,positive\nmeh,neutral\n", "in.csv"),
     ("in.csv:3", "'neutral' is not in task.labels")),
    ("csv-empty", seeds(b"", "in.csv"), ("in.csv", "no rows")),
    ("parquet-not-parquet", seeds(GOOD, "in.parquet"), ("in.parquet", "not a Parquet file")),
    ("parquet-empty-file", seeds(b"", "in.parquet"), ("in.parquet", "not a Parquet file")),
    ("folder-not-a-dataset", setting_from_env("data.test", lambda e: str(e.tmp)),
     ("is a folder, but not a dataset saved with `save_to_disk`",)),
    ("hf-malformed", setting("data.test", "hf:only-a-name"), ("hf:only-a-name", "expected hf:NAME:SPLIT")),
    # --- empty seeds, a test split that overlaps the seeds
    ("seeds-empty-file", seeds(b""), ("in.jsonl", "no rows")),
    ("test-overlaps-seeds", edit(overlapping_test), ("test_bad.jsonl", "1 seed(s) also appear in the test")),
    # --- bad YAML
    ("yaml-bad-indent", yaml_text("task: sst2\ndata:\n  seeds: a.jsonl\n   test: b.jsonl\n"),
     ("bad.yaml:4", "invalid YAML")),
    ("yaml-tab", yaml_text("task: sst2\ndata:\n\tseeds: a.jsonl\n"), ("bad.yaml:3", "invalid YAML")),
    ("yaml-unclosed-list", yaml_text("task: sst2\narms: [psi, direct\n"), ("bad.yaml", "invalid YAML")),
    ("yaml-list-at-top", yaml_text("- task: sst2\n- data: {}\n"), ("bad.yaml", "mapping")),
    ("yaml-not-utf8", yaml_text(b"name: caf\xe9\ntask: sst2\n"), ("bad.yaml", "not valid UTF-8")),
    ("yaml-nested-deep", yaml_text("task: " + DEEP + "\n"), ("bad.yaml", "nested too deeply")),
    ("yaml-empty-file", yaml_text(""), ("bad.yaml", "task: required setting is missing", "data:")),
    ("yaml-missing-data", edit(lambda c, e: c.pop("data")), ("bad.yaml", "data: required setting")),
    # --- unknown keys
    ("unknown-top-key", setting("sede", 3), ("bad.yaml", "sede: unknown setting")),
    ("unknown-nested-key", setting("generate.temprature", 0.5), ("generate.temprature: unknown setting",)),
    ("unknown-model-key", setting("models.teacher.api_key", "sk-not-a-real-key"),
     ("models.teacher.api_key: unknown setting",)),
    ("unknown-task", setting("task", "sst3"), ("task: unknown task 'sst3'",)),
    ("unknown-arm", setting("arms", ["psi", "gpt"]), ("arms.1",)),
    ("unknown-backend", setting("models.generator.backend", "gpt"), ("models.generator.backend",)),
    ("unknown-key-by-override", overrides("generate.nn=3"), ("generate.nn: unknown setting",)),
    ("generate-mode-is-the-arms", setting("generate.mode", "direct"), ("generate.mode: unknown setting",)),
    ("train-merge-is-gone", overrides("train.merge=false"), ("train.merge: unknown setting",)),
    # --- negative or zero counts, wrong types
    ("negative-generate-n", setting("generate.n", -5), ("generate.n", "greater than 0")),
    ("negative-n-seeds-override", overrides("data.n_seeds=-1"), ("data.n_seeds", "greater than 0")),
    ("zero-batch-size", setting("train.batch_size", 0), ("train.batch_size",)),
    ("negative-max-retries", setting("models.teacher.max_retries", -1), ("models.teacher.max_retries",)),
    ("negative-epochs-on-stage", stage("train", "--set", "train.epochs=-1"), ("config.yaml", "train.epochs")),
    ("count-not-a-number", setting("generate.n", "many"), ("generate.n", "valid integer")),
    ("empty-arms", setting("arms", []), ("arms", "at least one arm")),
    ("override-without-equals", overrides("generate.n"), ("--set 'generate.n'", "KEY=VALUE")),
    # --- endpoints and principles files
    # --- a setting of another backend: each backend names it and lists its own
    ("transformers-takes-no-n-ctx", setting("models.teacher.n_ctx", 4096),
     ("models.teacher.n_ctx: not a setting of the transformers backend", "llamacpp and vllm", "device")),
    ("openai-takes-no-n-ctx",
     setting("models.teacher", {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "n_ctx": 4096}),
     ("models.teacher.n_ctx: not a setting of the openai backend", "base_url")),
    ("llamacpp-takes-no-device",
     overrides("models.generator.backend=llamacpp", "models.generator.device=cpu"),
     ("models.generator.device: not a setting of the llamacpp backend", "n_threads")),
    ("vllm-takes-no-max-concurrency",
     setting("models.generator", {"backend": "vllm", "model": "smollm2-135m", "max_concurrency": 4}),
     ("models.generator.max_concurrency: not a setting of the vllm backend", "but of openai")),
    ("structured-unknown", setting("generate.structured", "yes"),
     ("generate.structured", "auto", "json", "off")),
    ("json-format-unknown",
     setting("models.generator",
             {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "json_format": "gbnf"}),
     ("models.generator.json_format", "json_schema")),
    ("llamacpp-takes-no-json-format",
     overrides("models.generator.backend=llamacpp", "models.generator.json_format=json_object"),
     ("models.generator.json_format: not a setting of the llamacpp backend",)),
    ("requantize-unknown-type",
     overrides("models.generator.backend=llamacpp", "models.generator.requantize=q5_k"),
     ("models.generator.requantize", "q8_0")),
    ("transformers-takes-no-requantize", setting("models.student.requantize", "q8_0"),
     ("models.student.requantize: not a setting of the transformers backend", "llamacpp")),
    ("transformers-threads-without-ray", setting("models.generator.n_threads", 2),
     ("models.generator", "n_threads", "executor: ray")),
    ("base-url-without-scheme",
     setting("models.generator", {"backend": "openai", "base_url": "127.0.0.1:8000/v1"}),
     ("models.generator", "base_url")),
    ("principles-file-missing", setting("principles.file", "/nonexistent/p.yaml"), ("p.yaml", "not found")),
    ("principles-file-bad-yaml", principles_file("principles:\n  - level: task\n   text: x\n"),
     ("principles_bad.yaml", "invalid YAML")),
    ("principles-file-unknown-label",
     principles_file("- {level: category, category: neutral, text: be calm}\n"),
     ("principles_bad.yaml: principle #1", "'neutral'")),
    # --- stage commands in the wrong order or for the wrong arm
    ("filter-before-generate", stage("filter"), ("candidates.jsonl: missing", "psilm generate")),
    ("train-before-filter", stage("train"), ("train.jsonl: missing",)),
    ("evaluate-untrained", stage("evaluate"), ("model/merged: not trained yet", "psilm train")),
    ("evaluate-unknown-arm", stage("evaluate", "--arm", "bogus"), ("--arm bogus",)),
    ("generate-for-zero-shot", stage("generate", "--arm", "zero_shot"), ("--arm zero_shot",)),
    ("train-for-zero-shot", stage("train", "--arm", "zero_shot"), ("--arm zero_shot", "train runs for")),
    # --- a run folder made by an older psilm (psi's files at its top)
    ("run-into-old-run-folder", old_layout("run"), ("run: made by an older psilm", "new folder")),
    ("report-of-old-run-folder", old_layout("report"), ("run: made by an older psilm", "new folder")),
    ("stage-in-old-run-folder", old_layout("train"), ("run: made by an older psilm", "new folder")),
]  # fmt: skip


# --- the run folder every case runs against --------------------------------------------------------
def base_config(tmp: Path) -> dict:
    seeds = tmp / "seeds.jsonl"
    seeds.write_text(jsonl(POS, NEG, {"text": "one of the year 's best", "label": "positive"}))
    test = tmp / "test.jsonl"
    test.write_text(
        jsonl({"text": "boring and long", "label": "negative"}, {"text": "a joy", "label": "positive"})
    )
    return {
        "task": "sst2",
        "data": {"seeds": str(seeds), "test": str(test), "n_test": None},
        "principles": {"file": PRINCIPLES},
        "arms": ["psi"],
        "emissions": {"enabled": False},
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict]:
    """A run folder whose principles stage is done (from the person-written file: no model)."""
    from psilm.config import load_config
    from psilm.run import prepare, run_stage

    tmp = tmp_path_factory.mktemp("existing")
    cfg = base_config(tmp)
    run_stage(prepare(load_config(data=cfg), tmp / "run", log=lambda m: None), "principles")
    return tmp / "run", cfg


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def env(tmp_path, finished_run) -> Env:
    src, cfg = finished_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    return Env(tmp_path, json.loads(json.dumps(cfg)), run)


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("psilm: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("build, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(env, capsys, build, needles):
    argv = build(env)
    before = snapshot(env.run)
    rc = main(argv)
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert rc == 2, (rc, err)
    for needle in needles:
        assert needle in line, (needle, line)
    assert snapshot(env.run) == before  # the run folder is untouched, byte for byte


def test_utf8_bom_is_accepted(env, capsys):
    """Spreadsheet exports start with a byte order mark; that is valid UTF-8 JSONL, not an error."""
    env.cfg["data"]["seeds"] = env.file("bom.jsonl", b"\xef\xbb\xbf" + jsonl(POS, NEG).encode())
    from psilm.config import load_config
    from psilm.run import prepare

    ctx = prepare(load_config(data=env.cfg), env.tmp / "fresh", log=lambda m: None)
    assert [s.input for s in ctx.seeds] == [POS["text"], NEG["text"]]


def test_unreachable_endpoint_leaves_finished_stages_intact(env, capsys):
    """The endpoint is only found down when its stage runs: one line, the run left resumable.

    config.yaml records the new attempt and the manifest marks the failed stage; every file of
    the finished stages, and their manifest entries, stay as they were, and no raw log is begun.
    """
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env.cfg["models"] = {
        "generator": {"backend": "openai", "base_url": url, "model": "m", "max_retries": 1, "timeout_s": 2}
    }
    before = snapshot(env.run)
    manifest_before = json.loads(before["manifest.json"])
    rc = main(env.run_cmd(None, "-q"))
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and url in line and "connection refused" in line and "2 attempt(s)" in line
    after = snapshot(env.run)
    assert set(after) - {"psilm.log"} == set(before)  # the run log records the attempt
    for rel in before:
        if rel not in ("config.yaml", "manifest.json"):
            assert after[rel] == before[rel], rel
    stages = json.loads(after["manifest.json"])["stages"]
    assert stages["principles"] == manifest_before["stages"]["principles"]
    assert stages["generate/psi"]["status"] == "failed" and url in stages["generate/psi"]["error"]
