"""Model settings, one class per backend: each takes only what its backend reads.

(A setting of another backend through the command line, exit 2 and one line: test_bad_inputs.py.)
"""

from __future__ import annotations

import pytest
import yaml

import psilm
from psilm.config import load_config
from psilm.context import model_key as _model_key
from psilm.distributed import worker_resources
from psilm.durable import fingerprint
from psilm.errors import ConfigError
from psilm.llm import LlamaCppModel, ModelConfig, OpenAIModel, TransformersModel, VllmModel
from psilm.llm.settings import default_teacher

URL = "http://127.0.0.1:8000/v1"

# one valid section per backend, as a user writes it, and the class it becomes
VALID = [
    ({"backend": "transformers", "model": "smollm2-135m", "device": "cpu", "dtype": "bfloat16"},
     TransformersModel),
    ({"backend": "openai", "base_url": URL, "model": "Qwen", "api_key_env": "KEY", "max_concurrency": 4},
     OpenAIModel),
    ({"backend": "llamacpp", "model": "smollm2-135m", "n_ctx": 1024, "n_threads": 1,
      "options": {"n_gpu_layers": 0}}, LlamaCppModel),
    ({"backend": "vllm", "model": "/models/qwen", "n_ctx": 4096, "dtype": "float16",
      "options": {"tensor_parallel_size": 2}}, VllmModel),
]  # fmt: skip


@pytest.mark.parametrize("section, cls", VALID, ids=[s["backend"] for s, _ in VALID])
def test_a_valid_section_of_each_backend_loads(tiny_config, tmp_path, section, cls):
    tiny_config["models"] = {"generator": section}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    cfg = load_config(path)
    generator = cfg.models.generator
    assert type(generator) is cls
    assert generator.model_dump(include=set(section)) == section
    # the resolved config (config.yaml of a run folder) reads back as the same settings
    path.write_text(cfg.to_yaml())
    assert load_config(path).models.generator == generator


def test_no_backend_means_transformers_on_the_embedded_model(tiny_config):
    cfg = load_config(data=tiny_config)
    for role in (cfg.models.generator, cfg.models.student):
        assert type(role) is TransformersModel and role.model == "smollm2-135m"
    # the teacher: the embedded 1.5B on llamacpp where psilm[teacher] is installed
    assert cfg.models.teacher == default_teacher()
    built = psilm.ModelConfig(model="smollm2-135m")  # the README's line
    assert type(built) is TransformersModel and built == ModelConfig() == TransformersModel()


def test_set_switches_the_backend(tiny_config):
    cfg = load_config(
        data=tiny_config, overrides=["models.generator.backend=llamacpp", "models.generator.n_ctx=512"]
    )
    assert type(cfg.models.generator) is LlamaCppModel and cfg.models.generator.n_ctx == 512


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"n_ctx": 4096}, "n_ctx: not a setting of the transformers backend but of llamacpp and vllm"),
        ({"backend": "openai", "base_url": URL, "dtype": "bfloat16"},
         "dtype: not a setting of the openai backend but of transformers and vllm"),
        ({"backend": "llamacpp", "max_retries": 3},
         "max_retries: not a setting of the llamacpp backend but of openai"),
        ({"backend": "vllm", "device": "cuda:1"},
         "device: not a setting of the vllm backend but of transformers"),
    ],
    ids=["transformers", "openai", "llamacpp", "vllm"],
)  # fmt: skip
def test_a_setting_of_another_backend_is_named_in_python_too(settings, named):
    with pytest.raises(ConfigError, match="ModelConfig: " + named) as e:
        ModelConfig(**settings)
    assert "its settings: " in str(e.value) and "\n" not in str(e.value)


def test_the_student_must_be_transformers_whatever_else_it_holds(tiny_config):
    tiny_config["models"] = {"student": {"backend": "llamacpp", "n_ctx": 1024}}
    with pytest.raises(ConfigError, match=r"models\.student: the student is fine-tuned, .*transformers"):
        load_config(data=tiny_config)


def test_cache_keys_are_those_of_the_flat_settings():
    """fingerprint(_model_key(...)) of the same models under the one flat class psilm had before:
    run folders made then keep their stage keys, and no stage is redone."""
    before = {
        "f09b01ca128a3a5d": ModelConfig(),
        "6b2a61f1206eec80": ModelConfig(
            backend="openai", base_url=URL, model="Qwen/Qwen2.5-7B-Instruct", api_key_env="OPENAI_API_KEY"
        ),
        "c6d956504588a135": ModelConfig(backend="llamacpp", n_ctx=1024, n_threads=1, batch_size=4),
        "bae9ed1eefdfb058": ModelConfig(
            backend="vllm", model="/models/qwen", dtype="float16", options={"tensor_parallel_size": 2}
        ),
        "9e6f988e9c2f4ab0": ModelConfig(model="/models/tiny", device="cpu", dtype="bfloat16"),
    }
    assert {fingerprint(_model_key(m)): m for m in before.values()} == before


FLAT_DEFAULTS = {
    "api_key_env": None, "timeout_s": 120.0, "max_retries": 5, "max_concurrency": 8, "batch_size": 16,
    "device": "auto", "dtype": "auto", "n_ctx": 2048, "n_threads": None, "executor": "local",
    "ray_address": None, "ray_workers": None, "price_per_million_tokens": None, "options": {},
}  # fmt: skip


def test_a_run_folder_written_by_the_flat_settings_still_opens(tiny_config):
    """Its config.yaml lists every flat setting for every role; those at their defaults are dropped."""
    tiny_config["models"] = {
        "teacher": {"backend": "openai", "model": "big", "base_url": URL, **FLAT_DEFAULTS},
        "generator": {"backend": "llamacpp", "model": "smollm2-135m", "base_url": None, **FLAT_DEFAULTS},
        "student": {"backend": "transformers", "model": "smollm2-135m", "base_url": None, **FLAT_DEFAULTS},
    }
    models = load_config(data=tiny_config).models
    assert models.teacher == OpenAIModel(model="big", base_url=URL)
    assert models.generator == LlamaCppModel()
    assert models.student == TransformersModel()
    # a setting the backend never read, but set to something else, is still named
    tiny_config["models"]["teacher"]["n_ctx"] = 4096
    with pytest.raises(ConfigError, match=r"models\.teacher\.n_ctx: not a setting of the openai backend"):
        load_config(data=tiny_config)


def test_transformers_threads_only_with_ray():
    with pytest.raises(ConfigError, match="n_threads: .*only with executor: ray"):
        ModelConfig(n_threads=2)
    assert worker_resources(ModelConfig(n_threads=2, executor="ray")) == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert worker_resources(ModelConfig(backend="openai", base_url=URL, executor="ray"))["num_cpus"] == 1.0
    vllm = ModelConfig(backend="vllm", executor="ray", options={"tensor_parallel_size": 2})
    assert worker_resources(vllm) == {"num_cpus": 1, "num_gpus": 2.0}
