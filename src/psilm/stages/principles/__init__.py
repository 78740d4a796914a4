"""Stage 1, principles: settings.py, write.py (the teacher's principles), mistakes.py (the error
level), checks.py, prompts.py and reading.py (what is asked and read), file.py (a person's file),
stage.py (the stage objects)."""

from psilm.stages.principles.settings import LEVELS, USES, PrinciplesSettings

__all__ = ["LEVELS", "USES", "PrinciplesSettings"]
