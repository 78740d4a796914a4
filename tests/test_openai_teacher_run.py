"""principles -> generate -> filter with the openai backend as teacher and generator, through a
real llama.cpp server on 127.0.0.1 serving the embedded GGUF (no mock)."""

import json

import pytest
from servers import llama_server

from psilm.config import load_config
from psilm.run import prepare, run_stage

pytestmark = pytest.mark.slow


def test_openai_teacher_writes_principles_and_data(tmp_path, tiny_config):
    with llama_server() as (base_url, model):
        endpoint = {"backend": "openai", "base_url": base_url, "model": model, "max_retries": 2}
        tiny_config["models"] = {"teacher": endpoint, "generator": endpoint}
        tiny_config["principles"] = {"levels": ["task", "category"], "max_tokens": 96}
        tiny_config["generate"] = {"n": 4, "max_tokens": 32}
        tiny_config["arms"] = ["psi"]
        ctx = prepare(load_config(data=tiny_config), tmp_path / "run", log=lambda m: None)
        principles = run_stage(ctx, "principles") and ctx.folder.read(ctx.folder.principles)["principles"]
        run_stage(ctx, "generate", "psi")
        run_stage(ctx, "filter", "psi")

    doc = json.loads((tmp_path / "run" / "principles.json").read_text())
    assert doc["teacher"] == model
    assert all(p["source"] == f"teacher:{model}" for p in principles)
    assert {p["level"] for p in principles} <= {"task", "category"}
    cands = [json.loads(x) for x in (tmp_path / "run" / "arms/psi/candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 4 and all(c["generator"]["model"] == model for c in cands)
    stages = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert stages["principles"]["tokens"]["teacher"]["completion"] > 0
    assert stages["principles"]["remote_energy"][0]["estimated"] is True
    assert stages["filter/psi"]["n_in"] == 4
