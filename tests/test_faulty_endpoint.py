"""The openai backend against a faulty endpoint: a fault proxy in front of a real llama.cpp server.

Timeouts, 429 (Retry-After), 5xx, dropped connections and truncated bodies are retried with
backoff; concurrency stays bounded; past max_retries the error is one clear line and the run
folder is left resumable: a rerun once the endpoint is healthy finishes without asking again
for what was answered and without writing any record twice.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, fault_proxy
from servers import llama_server

from psilm.errors import BackendError
from psilm.llm import ModelConfig, SamplingParams, load_backend
from psilm.llm import openai_backend as ob
from psilm.shell.cli import main

pytestmark = pytest.mark.slow

PARAMS = SamplingParams(temperature=0.0, max_tokens=8, seed=0)
PROMPT = [{"role": "user", "content": "Name one colour."}]


@pytest.fixture(scope="module")
def upstream():
    with llama_server() as (base_url, model):
        yield base_url, model


@pytest.fixture
def proxy(upstream):
    with fault_proxy(upstream[0]) as p:
        yield p


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "BACKOFF_BASE_S", 0.02)


def backend_for(proxy: FaultProxy, **kw):
    kw = {"timeout_s": 30.0, "max_retries": 3, **kw}
    return load_backend(ModelConfig(backend="openai", base_url=proxy.base_url, model="smollm2-135m", **kw))


def model_requests(proxy: FaultProxy) -> list[str]:
    """Faults per model request: chat (/chat/completions) and raw completion (/completions)."""
    return [fault for path, fault in proxy.log if path.endswith("/completions")]


# --- each fault alone: retried, then answered ---------------------------------------------------
@pytest.mark.parametrize(
    "faults, timeout_s",
    [(["500", "500"], 30), (["503", "502"], 30), (["429:0", "429:0"], 30), (["drop", "drop"], 30),
     (["truncate", "truncate"], 30), (["delay:3"], 2.5)],
    ids=["500", "502-503", "429", "dropped-connection", "truncated-body", "timeout"],
)  # fmt: skip
def test_each_fault_is_retried_then_answered(proxy, fast_backoff, faults, timeout_s):
    proxy.inject(*faults)  # failed attempts, then the real server answers
    backend = backend_for(proxy, timeout_s=timeout_s)
    try:
        (out,) = backend.generate([PROMPT], PARAMS)
    finally:
        backend.close()
    assert model_requests(proxy) == [*faults, "pass"]
    assert out.text and out.prompt_tokens > 0 and out.completion_tokens > 0


def test_429_waits_for_retry_after_not_for_backoff(proxy, monkeypatch):
    monkeypatch.setattr(ob, "BACKOFF_BASE_S", 30.0)  # honoured Retry-After means this is never slept
    proxy.inject("429:0.4", "429:0.4")
    backend = backend_for(proxy)
    start = time.monotonic()
    try:
        backend.generate([PROMPT], PARAMS)
    finally:
        backend.close()
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed < 10, elapsed
    assert model_requests(proxy) == ["429:0.4", "429:0.4", "pass"]


def test_backoff_is_exponential_with_jitter_and_capped():
    random.seed(0)
    for attempt in range(1, 12):
        full = min(ob.BACKOFF_CAP_S, ob.BACKOFF_BASE_S * 2 ** (attempt - 1))
        waits = [ob.backoff(attempt) for _ in range(50)]
        assert all(0.5 * full <= w <= full for w in waits)
        assert len(set(waits)) > 1  # jitter: workers do not retry in lockstep
    assert ob.backoff(3, retry_after=7.0) == 7.0
    assert ob.parse_retry_after({"retry-after": "3600"}) == ob.RETRY_AFTER_CAP_S


# --- many requests at once, faults mixed in --------------------------------------------------------
def test_mixed_faults_under_bounded_concurrency(proxy, fast_backoff):
    prompts = [[{"role": "user", "content": f"Write the number {i} in words."}] for i in range(8)]
    proxy.inject("500", "drop", "429:0", "truncate", "503", "drop")
    backend = backend_for(proxy, max_concurrency=3, max_retries=4)
    try:
        outs = backend.generate(prompts, PARAMS)
    finally:
        backend.close()
    assert len(outs) == 8 and all(o.text and o.completion_tokens > 0 for o in outs)
    assert Counter(model_requests(proxy))["pass"] == 8 and len(model_requests(proxy)) == 14
    assert 1 <= proxy.max_in_flight <= 3  # never more requests in flight than max_concurrency


def test_past_max_retries_a_clear_error(proxy, fast_backoff):
    proxy.reset(standing="500")
    backend = backend_for(proxy, max_retries=3)
    try:
        with pytest.raises(BackendError) as info:
            backend.generate([PROMPT], PARAMS)
    finally:
        backend.close()
    assert model_requests(proxy) == ["500"] * 4  # max_retries=3: four attempts, no more
    msg = str(info.value)
    assert proxy.base_url in msg and "HTTP 500" in msg and "4 attempt(s)" in msg
    assert "max_retries" in msg and "\n" not in msg


# --- a run folder survives a dead endpoint and resumes ---------------------------------------------
def _run_config(tmp_path: Path, sst2_rows: list[dict], base_url: str) -> Path:
    import yaml

    pos = [r for r in sst2_rows if r["label"] == "positive"]
    neg = [r for r in sst2_rows if r["label"] == "negative"]
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pos[:2] + neg[:2]))
    from importlib import resources

    cfg = {
        "task": "sst2",
        "data": {"seeds": "seeds.jsonl"},
        "models": {
            "generator": {
                "backend": "openai",
                "base_url": base_url,
                "model": "smollm2-135m",
                "batch_size": 2,  # requests per block in the raw log
                "max_concurrency": 2,
                "max_retries": 2,
                "timeout_s": 30,
            }
        },
        "principles": {"file": str(resources.files("psilm").joinpath("demo", "sst2_principles.yaml"))},
        "generate": {"n": 4, "max_tokens": 12, "temperature": 0.0},
        "arms": ["psi"],
        "emissions": {"enabled": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _raw(run: Path) -> list[dict]:
    path = run / "raw" / "generate-psi-generator.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("standing", ["500", "drop"])
def test_run_fails_cleanly_then_resumes_without_duplicates(
    proxy, fast_backoff, tmp_path, sst2_rows, capsys, standing
):
    from psilm.config import load_config
    from psilm.run import prepare

    run = tmp_path / "run"
    prepare(load_config(_run_config(tmp_path, sst2_rows, proxy.base_url)), run, log=lambda m: None)

    # the first block of 2 is answered, then the endpoint fails for good
    proxy.inject("pass", "pass", then=standing)
    assert main(["generate", "--run", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("psilm: error: "), err
    assert proxy.base_url in lines[0] and "3 attempt(s)" in lines[0] and "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["generate/psi"]["status"] == "failed"
    assert not (run / "arms/psi/candidates.jsonl").exists()  # nothing half-written
    before = (run / "raw" / "generate-psi-generator.jsonl").read_bytes()
    assert len(_raw(run)) == 2  # the finished block is kept

    # healthy again: the rerun asks only for the missing block
    proxy.reset("pass")
    assert main(["generate", "--run", str(run), "-q"]) == 0
    assert len(model_requests(proxy)) == 2
    raw = _raw(run)
    keys = [r["key"] for r in raw]
    assert len(raw) == 4 and len(set(keys)) == 4  # every request answered once, none twice
    assert (run / "raw" / "generate-psi-generator.jsonl").read_bytes().startswith(before)
    cands = [json.loads(x) for x in (run / "arms/psi/candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 4 and len({c["id"] for c in cands}) == 4
    by_id = {r["id"]: r["text"] for r in raw}
    assert [c["raw_input"] for c in cands] == [by_id[f"generate/psi/0/{i}/input"] for i in range(4)]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["generate/psi"]["status"] == "done"
    assert manifest["stages"]["generate/psi"]["model_calls"] == 2
