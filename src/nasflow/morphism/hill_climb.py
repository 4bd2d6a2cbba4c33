"""NASH: hill climbing with network morphisms (Elsken, Metzen & Hutter, 2017).

"Simple and efficient architecture search for convolutional neural networks": start from a small
trained network; at every step make several children of the current network by a few random
function-preserving morphisms each, train every child briefly with SGDR starting from the inherited
weights, and continue from the child with the best validation accuracy. Because a child starts as
good as its parent, brief training suffices and the search climbs steadily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nasflow.errors import ConfigError
from nasflow.morphism.base import MorphismResult, MorphismSearch, check_int
from nasflow.morphism.ops import MORPHISMS
from nasflow.space.architecture import Architecture
from nasflow.space.macro import MacroSpace, op_key, skip_key, width_key
from nasflow.tasks import Task


def default_initial(space: MacroSpace) -> Architecture:
    """One ``conv3x3`` layer at the start of every stage, as wide as the stem (or the narrowest width)."""
    width = space.stem_channels if space.stem_channels in space.widths else space.widths[0]
    op = "conv3x3" if "conv3x3" in space.ops else next(o for o in space.ops if o != "none")
    values: dict[str, Any] = {}
    seen_stages = set()
    for slot in range(space.max_layers):
        stage = space.stage(slot)
        first = stage not in seen_stages
        seen_stages.add(stage)
        if first or "none" not in space.ops:
            values[op_key(slot)], values[width_key(slot)] = op, width
        else:
            values[op_key(slot)], values[width_key(slot)] = "none", space.widths[0]
        values[skip_key(slot)] = False
    return space.validate(values)


class HillClimb(MorphismSearch):
    """NASH hill climbing: children by morphisms, brief SGDR training, keep the best child.

    Args:
        n_steps: hill-climbing steps.
        n_children: children made and trained per step.
        morphs_per_child: morphisms applied in a row to make one child.
        epochs_per_child: SGDR epochs of each child.
        initial_epochs: training epochs of the initial network.
        initial_arch: the starting network (architecture or its string); default
            :func:`default_initial` (one narrow conv per stage).
        other arguments: see :class:`~nasflow.morphism.base.MorphismSearch`.

    Every trained network (the initial one and each child) is a trial of the study passed to
    :meth:`fit`. The next step continues from the best child even if it is worse than its parent, as
    in NASH; :meth:`derive` returns the best network seen over the whole search.

    Example::

        search = HillClimb(n_steps=5, n_children=4, morphs_per_child=2, epochs_per_child=2, seed=0)
        result = search.fit("digits")
        print(search.space.format(search.derive()), result.best_accuracy)
    """

    name = "hill-climb"

    def __init__(
        self,
        space: MacroSpace | None = None,
        n_steps: int = 5,
        n_children: int = 4,
        morphs_per_child: int = 2,
        epochs_per_child: int = 2,
        initial_epochs: int = 10,
        initial_arch: Architecture | str | None = None,
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
        self.n_steps = check_int("n_steps", n_steps, 0)
        self.n_children = check_int("n_children", n_children, 1)
        self.initial_epochs = check_int("initial_epochs", initial_epochs, 1)
        if initial_arch is None:
            self.initial_arch = default_initial(self.space)
        elif isinstance(initial_arch, str):
            self.initial_arch = self.space.parse(initial_arch)
        elif isinstance(initial_arch, Architecture):
            self.initial_arch = self.space.validate(initial_arch)
        else:
            raise ConfigError(f"initial_arch must be an Architecture or its string, got {initial_arch!r}")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_steps": self.n_steps,
            "n_children": self.n_children,
            "initial_epochs": self.initial_epochs,
            "initial_arch": self.space.format(self.initial_arch),
        }

    def fit(self, task: str | Task = "digits", study: Any = None) -> MorphismResult:
        """Climb from the initial network; every trained network becomes a trial of ``study``."""
        self._start(task, study)
        current = self._train_and_record(
            self.initial_arch, self._fresh(self.initial_arch), self.initial_epochs, None, [], step=0
        )
        if current is None:
            return self._finish()
        for step in range(1, self.n_steps + 1):
            children = []
            for _ in range(self.n_children):
                rng = self._rng(len(self._history))
                arch, network, done = self._morph(current, rng)
                child = self._train_and_record(arch, network, self.epochs_per_child, current, done, step)
                if child is not None:
                    children.append(child)
            if children:
                # ties go to the earlier child, so the choice is reproducible
                current = max(children, key=lambda c: (c.accuracy, -c.index))
        return self._finish()
