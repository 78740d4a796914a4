"""Stage 5, evaluate: evaluate.py (settings, predictions, scores), likelihood.py (answer options
scored), teacher.py (the teacher answering, the reference arm), stage.py (the stage object)."""

from psilm.stages.evaluate.evaluate import (
    EvaluateSettings,
    Predictions,
    evaluate_model,
    predict_examples,
    score,
    skew_note,
    wilson_interval,
)
from psilm.stages.evaluate.likelihood import option_logprobs, probabilities

__all__ = ["EvaluateSettings", "Predictions", "evaluate_model", "option_logprobs", "predict_examples",
           "probabilities", "score", "skew_note", "wilson_interval"]  # fmt: skip
