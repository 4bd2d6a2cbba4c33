"""Pruners: stop unpromising trials early from their intermediate reports (learning curves)."""

from nasflow.pruners.base import Pruner, PruningHistory, PruningMonitor, TrialCurve
from nasflow.pruners.curve import CurvePruner, extrapolate
from nasflow.pruners.median import MedianPruner

__all__ = [
    "CurvePruner",
    "MedianPruner",
    "Pruner",
    "PruningHistory",
    "PruningMonitor",
    "TrialCurve",
    "extrapolate",
]
