"""psilm: train a small language model for one task from a handful of examples, with task
principles instead of a large model's data (PSI, arXiv 2507.05991)."""

__version__ = "0.1.0"

from psilm.config import RunConfig, load_config  # noqa: E402
from psilm.errors import BackendError, ConfigError, DataError, PsilmError  # noqa: E402
from psilm.llm import ModelConfig, SamplingParams, load_backend  # noqa: E402
from psilm.tasks import Example, Task, load_task  # noqa: E402

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "Example",
    "ModelConfig",
    "PsilmError",
    "RunConfig",
    "SamplingParams",
    "Task",
    "__version__",
    "load_backend",
    "load_config",
    "load_task",
]
