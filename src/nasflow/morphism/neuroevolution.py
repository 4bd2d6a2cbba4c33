"""Neuroevolution with weight inheritance: aging evolution whose children start from their parents' weights.

The loop is regularized (aging) evolution (Real et al., 2019, "Regularized evolution for image
classifier architecture search"): pick a random sample of the population, take its most accurate
member as the parent, add the child, and remove the oldest member. Unlike the ask/tell
``evolution`` strategy, a child is not trained from scratch: it is the parent changed by
function-preserving morphisms (as in LEMONADE, Elsken et al., 2019), or, with probability
``p_mutation``, by an ordinary mutation of the space with every weight whose shape still fits copied
from the parent (Real et al., 2017, "Large-scale evolution of image classifiers"); then it is trained
for a few epochs. Ordinary mutations can also shrink networks, which morphisms never do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from nasflow.errors import ConfigError
from nasflow.morphism.base import Individual, MorphismResult, MorphismSearch, check_int
from nasflow.morphism.ops import MORPHISMS, inherit_weights
from nasflow.space.macro import MacroSpace
from nasflow.tasks import Task


class Neuroevolution(MorphismSearch):
    """Aging evolution in which children inherit weights by morphism or shape-matched copying.

    Args:
        population_size: networks alive at a time; the initial ones are random architectures of the
            space trained from scratch for ``initial_epochs``.
        sample_size: tournament size (members sampled to choose a parent).
        n_children: children made after the initial population (one per cycle).
        morphs_per_child: morphisms applied in a row to make a child.
        epochs_per_child: SGDR epochs of each child.
        initial_epochs: training epochs of each initial network.
        p_mutation: probability that a child comes from ``space.mutate`` with shape-matched weight
            copying instead of morphisms.
        other arguments: see :class:`~nasflow.morphism.base.MorphismSearch`.

    Every trained network is a trial of the study passed to :meth:`fit`; :meth:`derive` returns the
    best one seen.
    """

    name = "neuroevolution"

    def __init__(
        self,
        space: MacroSpace | None = None,
        population_size: int = 8,
        sample_size: int = 3,
        n_children: int = 16,
        morphs_per_child: int = 1,
        epochs_per_child: int = 2,
        initial_epochs: int = 4,
        p_mutation: float = 0.25,
        morphisms: Sequence[str] = MORPHISMS,
        widen_noise: float = 0.1,
        data_fraction: float = 1.0,
        split_seed: int = 0,
        lr: float = 0.05,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(
            space,
            morphs_per_child=morphs_per_child,
            epochs_per_child=epochs_per_child,
            morphisms=morphisms,
            widen_noise=widen_noise,
            data_fraction=data_fraction,
            split_seed=split_seed,
            lr=lr,
            lr_min=lr_min,
            momentum=momentum,
            weight_decay=weight_decay,
            batch_size=batch_size,
            seed=seed,
        )
        self.population_size = check_int("population_size", population_size, 1)
        self.sample_size = check_int("sample_size", sample_size, 1)
        if self.sample_size > self.population_size:
            raise ConfigError(
                f"sample_size ({sample_size}) must not exceed population_size ({population_size})"
            )
        self.n_children = check_int("n_children", n_children, 0)
        self.initial_epochs = check_int("initial_epochs", initial_epochs, 1)
        if (
            isinstance(p_mutation, bool)
            or not isinstance(p_mutation, (int, float))
            or not 0 <= p_mutation <= 1
        ):
            raise ConfigError(f"p_mutation must be a probability in [0, 1], got {p_mutation!r}")
        self.p_mutation = float(p_mutation)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "population_size": self.population_size,
            "sample_size": self.sample_size,
            "n_children": self.n_children,
            "initial_epochs": self.initial_epochs,
            "p_mutation": self.p_mutation,
        }

    def fit(self, task: str | Task = "digits", study: Any = None) -> MorphismResult:
        """Evolve on ``task``; every trained network becomes a trial of ``study``."""
        self._start(task, study)
        population: deque[Individual] = deque()
        for _ in range(self.population_size):
            rng = self._rng(len(self._history))
            arch = self.space.sample(rng)
            member = self._train_and_record(arch, self._fresh(arch), self.initial_epochs, None, [], step=0)
            if member is not None:
                population.append(member)
        for step in range(1, self.n_children + 1):
            if not population:
                break
            rng = self._rng(len(self._history))
            size = min(self.sample_size, len(population))
            picks = rng.choice(len(population), size=size, replace=False)
            parent = max((population[int(i)] for i in picks), key=lambda m: (m.accuracy, -m.index))
            if rng.random() < self.p_mutation:
                arch = self.space.mutate(parent.arch, rng)
                network = self._fresh(arch)
                copied = inherit_weights(parent.network, network)
                done = [f"mutate to {self.space.format(arch)} ({copied} tensors inherited)"]
            else:
                arch, network, done = self._morph(parent, rng)
            child = self._train_and_record(arch, network, self.epochs_per_child, parent, done, step)
            if child is not None:
                population.append(child)
                if len(population) > self.population_size:
                    population.popleft()  # aging: the oldest member dies, however good
        return self._finish()
