"""Weight inheritance by network morphisms, and the searches built on it (NASH, neuroevolution).

Morphisms (:mod:`nasflow.morphism.ops`) change a :class:`~nasflow.space.macro.MacroSpace` network
while keeping the function it computes, so a child starts from its parent's trained weights.
:class:`HillClimb` (NASH) and :class:`Neuroevolution` own their training loop, like one-shot searches:
``fit(task, study=None)`` then ``derive()``.
"""

from nasflow.morphism.base import MorphismResult, MorphismSearch, TrainSettings
from nasflow.morphism.hill_climb import HillClimb
from nasflow.morphism.neuroevolution import Neuroevolution
from nasflow.morphism.ops import (
    MORPHISMS,
    Morphed,
    add_skip,
    applicable,
    apply_morphism,
    deepen,
    inherit_weights,
    random_morphism,
    widen,
    widen_kernel,
)

__all__ = [
    "MORPHISMS",
    "HillClimb",
    "Morphed",
    "MorphismResult",
    "MorphismSearch",
    "Neuroevolution",
    "TrainSettings",
    "add_skip",
    "applicable",
    "apply_morphism",
    "deepen",
    "inherit_weights",
    "random_morphism",
    "widen",
    "widen_kernel",
]
