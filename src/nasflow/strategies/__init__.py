"""Ask/tell search strategies."""

from nasflow.strategies.base import Strategy
from nasflow.strategies.evolution import RegularizedEvolution
from nasflow.strategies.random_search import RandomSearch

__all__ = ["RandomSearch", "RegularizedEvolution", "Strategy"]
