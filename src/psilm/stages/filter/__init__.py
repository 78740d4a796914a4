"""Stage 3, filter: filter.py (the settings and the checks), clean.py (one input cleaned or
refused), near.py (copies among texts), stage.py (the stage object)."""

from psilm.stages.filter.clean import clean_input, first_question, is_one_question
from psilm.stages.filter.filter import FilterSettings, filter_instances

__all__ = ["FilterSettings", "clean_input", "filter_instances", "first_question", "is_one_question"]
