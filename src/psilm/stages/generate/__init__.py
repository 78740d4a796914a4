"""Stage 2, generate: settings.py, draw.py (what each instance is drawn from), prompts.py,
write.py (the generator writes the instances), stage.py (the stage object)."""

from psilm.stages.generate.draw import draw_instances
from psilm.stages.generate.prompts import input_prompt, structured_mode
from psilm.stages.generate.settings import GenerateSettings, default_n
from psilm.stages.generate.write import generate_instances, principles_shown

__all__ = ["GenerateSettings", "default_n", "draw_instances", "generate_instances", "input_prompt",
           "principles_shown", "structured_mode"]  # fmt: skip
