"""Model settings, one class per backend: each takes only what its backend reads.

(A setting of another backend through the command line, exit 2 and one line: test_bad_inputs.py.)
"""

from __future__ import annotations

import pytest
import yaml

import psilm
from psilm.config import load_config
from psilm.errors import ConfigError
from psilm.llm import LlamaCppModel, ModelConfig, OpenAIModel, TransformersModel, VllmModel
from psilm.llm.distributed import worker_resources
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


def test_no_backend_means_the_embedded_model_on_its_fastest_path(tiny_config):
    cfg = load_config(data=tiny_config)
    assert type(cfg.models.student) is TransformersModel and cfg.models.student.model == "smollm2-135m"
    # the generator: llama.cpp where llama-cpp-python is installed (as it is here), else transformers
    assert type(cfg.models.generator) is LlamaCppModel and cfg.models.generator.model == "smollm2-135m"
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


def test_a_model_key_holds_what_changes_its_output_only():
    """Batch size, retries and concurrency leave a model's cache key as it is; the model, its
    weights' type, its server and a re-encoding of its weights change it."""
    base = ModelConfig(backend="llamacpp", n_ctx=1024)
    same = [ModelConfig(backend="llamacpp", n_ctx=1024, batch_size=4, n_threads=1)]
    other = [
        ModelConfig(backend="llamacpp", model="gemma3-270m"),
        ModelConfig(backend="llamacpp", requantize="q8_0"),
    ]
    assert all(m.key() == base.key() for m in same)
    assert all(m.key() != base.key() for m in other)
    served = ModelConfig(backend="openai", base_url=URL, model="m", max_retries=1, max_concurrency=2)
    assert served.key() == {"backend": "openai", "model": "m", "base_url": URL}
    assert ModelConfig(dtype="bfloat16").key() != ModelConfig().key()


def test_transformers_threads_only_with_ray():
    with pytest.raises(ConfigError, match="n_threads: .*only with executor: ray"):
        ModelConfig(n_threads=2)
    assert worker_resources(ModelConfig(n_threads=2, executor="ray")) == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert worker_resources(ModelConfig(backend="openai", base_url=URL, executor="ray"))["num_cpus"] == 1.0
    vllm = ModelConfig(backend="vllm", executor="ray", options={"tensor_parallel_size": 2})
    assert worker_resources(vllm) == {"num_cpus": 1, "num_gpus": 2.0}
