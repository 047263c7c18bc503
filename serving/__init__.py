"""Serving: the one inference path of a trained student (raw text -> graph -> student)."""
from serving.predictor import Predictor

__all__ = ["Predictor"]
