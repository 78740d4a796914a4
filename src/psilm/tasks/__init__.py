"""Tasks: how to read a row, how to prompt, how to extract an answer, how to score it.

A task is data (a YAML block), not code: four kinds cover the common shapes.

- ``classification``: a fixed label set; the answer is one label.
- ``numeric``: a worked solution ending in a number (GSM8K's ``#### N`` is accepted and written).
- ``multiple_choice``: a question with lettered choices; the answer is a letter.
- ``free_text``: a short answer, scored by exact match and token F1.
"""

from psilm.tasks.base import Example, Task, TaskConfig, builtin_tasks
from psilm.tasks.kinds import load_task

__all__ = ["Example", "Task", "TaskConfig", "builtin_tasks", "load_task"]
