"""Generation on a local Ray cluster (started here): same records as in process, resume from shards.

Workers run the llamacpp backend on the embedded SmolLM2-135M, one thread each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from psilm.durable import JsonlLog
from psilm.errors import BackendError
from psilm.llm import ModelConfig, SamplingParams, load_backend
from psilm.llm.calls import ModelCaller
from psilm.llm.distributed import RayCaller, merge_shards

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

MODEL = ModelConfig(backend="llamacpp", model="smollm2-135m", n_threads=1, batch_size=2, n_ctx=512)
RAY_MODEL = MODEL.model_copy(update={"executor": "ray", "ray_workers": 2})
PARAMS = SamplingParams(temperature=0.9, max_tokens=10, seed=7)
REQUESTS = [(f"r{i}", [{"role": "user", "content": f"Name a fruit, then a colour ({i})."}]) for i in range(6)]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_records(tmp_path_factory) -> dict[str, dict]:
    """The in-process reference: ModelCaller over the same blocks and seeds."""
    backend = load_backend(MODEL)
    log = JsonlLog(tmp_path_factory.mktemp("local") / "gen.jsonl")
    caller = ModelCaller("generator", MODEL.model, lambda: backend, log, chunk=MODEL.batch_size)
    caller(REQUESTS, PARAMS)
    backend.close()
    return {r["id"]: r for r in log.records}


def test_same_records_as_in_process(tmp_path, local_records) -> None:
    log = JsonlLog(tmp_path / "raw" / "generate-psi-generator.jsonl")
    caller = RayCaller("generator", RAY_MODEL, log, chunk=RAY_MODEL.batch_size)
    out = caller(REQUESTS, PARAMS)
    assert caller.new_calls == len(REQUESTS)
    assert list(out) == [rid for rid, _ in REQUESTS]
    # the raw log holds the ModelCaller record format, one record per request
    records = {r["id"]: r for r in JsonlLog(log.path).records}
    assert records == local_records
    assert set(next(iter(records.values()))) == {
        "key", "id", "role", "model", "text", "prompt_tokens", "completion_tokens", "finish_reason",
    }  # fmt: skip
    assert all(out[rid].text == records[rid]["text"] for rid, _ in REQUESTS)
    # the shards were merged into the log and removed
    assert not caller.shard_dir.exists()
    # a second call asks nothing: every key is answered
    again = RayCaller("generator", RAY_MODEL, JsonlLog(log.path), chunk=RAY_MODEL.batch_size)
    again(REQUESTS, PARAMS)
    assert again.new_calls == 0


def test_resume_from_shards_of_a_killed_run(tmp_path, local_records) -> None:
    """Block 0 reached the raw log, block 1 only a worker's shard (its last line torn): only block 2
    is generated again, and the result equals an uninterrupted run."""
    ordered = [local_records[rid] for rid, _ in REQUESTS]
    log_path = tmp_path / "gen.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in ordered[:2]))
    shard_dir = tmp_path / "gen.shards"
    shard_dir.mkdir()
    torn = json.dumps(ordered[4])[:40]
    (shard_dir / "node-123.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered[2:4]) + torn)

    caller = RayCaller("generator", RAY_MODEL, JsonlLog(log_path), chunk=RAY_MODEL.batch_size)
    assert not shard_dir.exists()  # merged when the caller opened
    out = caller(REQUESTS, PARAMS)
    assert caller.new_calls == 2  # block 2 only
    assert {rid: c.text for rid, c in out.items()} == {rid: r["text"] for rid, r in local_records.items()}
    keys = [r["key"] for r in JsonlLog(log_path).records]
    assert len(keys) == len(set(keys)) == len(REQUESTS)


def test_merge_shards_keeps_the_log_first(tmp_path) -> None:
    log = JsonlLog(tmp_path / "a.jsonl")
    log.append({"key": "k1", "text": "from the log"})
    shards = tmp_path / "a.shards"
    shards.mkdir()
    (shards / "w1.jsonl").write_text(json.dumps({"key": "k1", "text": "dup"}) + "\n")
    (shards / "w2.jsonl").write_text(json.dumps({"key": "k2", "text": "new"}) + "\n")
    added = merge_shards(shards, log)
    assert [r["key"] for r in added] == ["k2"]
    assert [r["text"] for r in JsonlLog(log.path).records] == ["from the log", "new"]


def test_worker_error_is_one_clear_message(tmp_path) -> None:
    bad = RAY_MODEL.model_copy(update={"model": str(tmp_path / "missing.gguf"), "ray_workers": 1})
    caller = RayCaller("generator", bad, JsonlLog(tmp_path / "gen.jsonl"), chunk=2)
    with pytest.raises(BackendError, match="unknown model"):
        caller(REQUESTS[:2], PARAMS)


def test_pipeline_generate_on_ray(tmp_path, tiny_config) -> None:
    """`executor: ray` on the generator: the generate stage writes the same candidates."""
    from psilm.config import config_from_dict
    from psilm.run import prepare, run_stage

    def run(executor: str) -> list[dict]:
        generator = {**MODEL.model_dump(mode="json"), "executor": executor, "ray_workers": 2}
        data = {
            **tiny_config,
            "models": {"generator": generator},
            "principles": {"file": str(REPO / "configs" / "principles" / "sst2.yaml")},
            "generate": {"n": 4, "max_tokens": 16},
            "arms": ["psi"],
        }
        ctx = prepare(config_from_dict(data), tmp_path / executor, log=lambda m: None)
        run_stage(ctx, "generate", "psi")
        assert not list((tmp_path / executor / "raw").glob("*.shards"))
        return [json.loads(line) for line in (tmp_path / executor / "arms/psi/candidates.jsonl").open()]

    on_ray, local = run("ray"), run("local")
    assert len(on_ray) == 4
    assert [r["raw_input"] for r in on_ray] == [r["raw_input"] for r in local]
