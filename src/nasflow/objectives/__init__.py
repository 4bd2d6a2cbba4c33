"""Objectives, constraints and Pareto utilities."""

from nasflow.objectives.pareto import dominates, nondominated_sort, pareto_ranks
from nasflow.objectives.spec import Constraint, Objective, parse_constraints, parse_objectives

__all__ = [
    "Constraint",
    "Objective",
    "dominates",
    "nondominated_sort",
    "parse_constraints",
    "parse_objectives",
    "pareto_ranks",
]
