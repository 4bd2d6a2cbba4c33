"""Search spaces: which networks are possible."""

from nasflow.space.architecture import Architecture, Choice
from nasflow.space.base import DecisionSpace, SearchSpace

__all__ = ["Architecture", "Choice", "DecisionSpace", "SearchSpace"]
