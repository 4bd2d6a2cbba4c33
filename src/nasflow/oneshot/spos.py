"""Single-path searches: SPOS and random search with weight sharing (RSWS).

Both train the supernet one uniformly sampled architecture per batch, so that every path learns to
work on its own, and only then search, scoring candidates with the inherited weights after
recalibrating batch norm for each of them:

* SPOS (Guo et al., ECCV 2020): evolutionary search over the trained supernet; here nasflow's
  regularized evolution (Real et al. 2019) through its ask/tell interface.
* RSWS (Li & Talwalkar, UAI 2019): score ``candidates`` random architectures, keep the best.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasflow.oneshot.base import EpochLog, OneShotSearch, as_lists, check_int
from nasflow.oneshot.supernet import Supernet
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

#: uniform draws tried per wanted distinct candidate before settling for fewer
_DRAWS_PER_CANDIDATE = 20


def uniform_path(supernet: Supernet, rng: np.random.Generator) -> list[int | None]:
    """The path of a uniformly random architecture of the supernet's space."""
    return supernet.path_of(supernet.space.sample(rng))


class _UniformPathSearch(OneShotSearch):
    """Supernet training with one uniformly sampled path per batch; subclasses choose the search."""

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        counts = np.zeros((self.supernet.num_edges, self.supernet.num_ops))
        loss_sum = 0.0
        correct = seen = 0
        for index in self._weight_batches():
            path = uniform_path(self.supernet, self.rng)
            loss, right = self._weight_step(index, path=path)
            for edge, op in enumerate(path):
                if op is not None:
                    counts[edge, op] += 1
            loss_sum += loss * len(index)
            correct += right
            seen += len(index)
        self._counts = counts
        return {"train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}

    def _weights_log(self) -> dict[str, list[float]]:
        """How often each operation of each edge was trained this epoch (shares of the batches)."""
        totals = self._counts.sum(axis=1, keepdims=True)
        return as_lists(self._counts / np.maximum(totals, 1), self.supernet.edge_names)

    def _candidate(self, arch: Architecture, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The scored record of ``arch``, scoring it only the first time its network is seen."""
        key = self.space_.canonical(arch)
        if key not in cache:
            cache[key] = {
                "arch": arch.to_dict(),
                "arch_str": self.space_.format(arch),
                "score": self.score(arch),
            }
        return cache[key]


class SPOS(_UniformPathSearch):
    """Single Path One-Shot (Guo et al. 2020): uniform single-path training, then evolution.

    Args:
        candidates: architectures the evolution proposes (repeats are scored once).
        population_size: members of the aging population.
        sample_size: tournament size.

    The remaining arguments are described in :class:`~nasflow.oneshot.base.OneShotSearch`.
    """

    name = "spos"

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        candidates: int = 100,
        population_size: int = 20,
        sample_size: int = 5,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_split,
            bn_examples, device, seed,
        )  # fmt: skip
        self.candidates = check_int("candidates", candidates, 1)
        self.population_size = check_int("population_size", population_size, 2)
        self.sample_size = check_int("sample_size", sample_size, 1)
        # the strategy checks the pair now, so a bad setting fails before the supernet trains
        self._make_strategy()

    def _make_strategy(self) -> Any:
        from nasflow.strategies.evolution import RegularizedEvolution

        return RegularizedEvolution(population_size=self.population_size, sample_size=self.sample_size)

    def _select(self, logs: list[EpochLog]) -> tuple[Architecture, list[dict[str, Any]]]:
        from nasflow.objectives.spec import Objective
        from nasflow.trial import FrozenTrial, TrialState

        strategy = self._make_strategy()
        strategy.setup(self.space_, [Objective.parse("accuracy:max")], int(self.rng.integers(2**31)))
        cache: dict[str, dict[str, Any]] = {}
        for number in range(self.candidates):
            arch = strategy.ask(1)[0]
            record = self._candidate(arch, cache)
            strategy.tell(
                FrozenTrial(
                    number=number,
                    arch=arch,
                    arch_str=record["arch_str"],
                    canonical=self.space_.canonical(arch),
                    state=TrialState.COMPLETE,
                    metrics={"accuracy": record["score"]},
                    values=(record["score"],),
                )
            )
        scored = list(cache.values())
        best = max(scored, key=lambda c: c["score"])
        return Architecture(best["arch"]), scored


class RSWS(_UniformPathSearch):
    """Random search with weight sharing (Li & Talwalkar 2019): uniform paths, then random candidates.

    Args:
        candidates: distinct random architectures scored with the shared weights; the best is chosen.

    The remaining arguments are described in :class:`~nasflow.oneshot.base.OneShotSearch`.
    """

    name = "rsws"

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        candidates: int = 100,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_split,
            bn_examples, device, seed,
        )  # fmt: skip
        self.candidates = check_int("candidates", candidates, 1)

    def _select(self, logs: list[EpochLog]) -> tuple[Architecture, list[dict[str, Any]]]:
        cache: dict[str, dict[str, Any]] = {}
        for _ in range(self.candidates * _DRAWS_PER_CANDIDATE):
            if len(cache) >= self.candidates:
                break
            self._candidate(self.space_.sample(self.rng), cache)
        scored = list(cache.values())
        best = max(scored, key=lambda c: c["score"])
        return Architecture(best["arch"]), scored
