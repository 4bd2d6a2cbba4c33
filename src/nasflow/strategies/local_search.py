"""Local search with restarts (White, Nolen & Savani 2020, "Local Search is State of the Art ...")."""

from __future__ import annotations

import json
from typing import Any, Literal

from nasflow.errors import ConfigError, SearchExhausted
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.strategies.common import random_weights, scalar_fitness
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

Improvement = Literal["first", "best"]
_IMPROVEMENTS = ("first", "best")
#: random draws tried before falling back to enumerating the space to find an unseen architecture
_RANDOM_TRIES = 200
#: spaces up to this many combinations are enumerated when random draws keep hitting seen networks
_ENUMERATE_LIMIT = 200_000
# tags of pending proposals that are not neighbours of a climb (climbs are tagged 1, 2, ...)
_ROUND = -1
_FILLER = -2


class LocalSearch(Strategy):
    """Hill climbing over single-decision neighbours, restarted from random points at local optima.

    A round starts with ``initial_samples`` random architectures (``restart_samples`` after a local
    optimum); the best of them becomes the *centre*. The centre's neighbours (``space.neighbors``) are
    proposed in random order. With ``improvement="first"`` the centre moves to the first neighbour
    that beats it; with ``"best"`` every neighbour is evaluated first and the centre moves to the best
    one if it beats the centre. When no neighbour is better the centre is a local optimum and a new
    round starts from random architectures nobody has proposed yet.

    No architecture whose canonical key was already proposed is proposed again; neighbours that were
    already evaluated elsewhere count with their known result without spending a query. With several
    objectives or constraints, architectures are compared by ``scalar_fitness`` with weights drawn
    anew for every round, so successive climbs head for different parts of the front.

    Batched asks return distinct neighbours of the current centre; when none are left but some are
    still being evaluated, the remaining slots get random unseen architectures. Proposals still being
    evaluated when the state is saved are not waited for after ``load_state_dict``.

    Args:
        initial_samples: random architectures evaluated before the first climb (its start is the best).
        improvement: ``"first"`` (move as soon as a neighbour is better) or ``"best"`` (evaluate the
            whole neighbourhood, then move to the best neighbour).
        restart_samples: random architectures evaluated after each local optimum; the next climb
            starts from the best of them.
    """

    name = "local"

    def __init__(
        self, initial_samples: int = 20, improvement: Improvement = "first", restart_samples: int = 10
    ) -> None:
        for label, value in (("initial_samples", initial_samples), ("restart_samples", restart_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
        if improvement not in _IMPROVEMENTS:
            raise ConfigError(f"improvement must be one of {list(_IMPROVEMENTS)}, got {improvement!r}")
        self.initial_samples = initial_samples
        self.improvement = improvement
        self.restart_samples = restart_samples
        self._reset()

    def _reset(self) -> None:
        self._seen: set[str] = set()
        self._known: dict[str, Scored] = {}
        # keys of proposals not told yet, with the climb ("epoch") or round they belong to
        self._pending: dict[str, int] = {}
        self._epoch = 0
        self._round_left = self.initial_samples
        self._round: list[str] = []  # keys of the current round's random samples
        self._center: str | None = None
        self._queue: list[Architecture] = []  # neighbours of the centre not proposed yet
        self._best_neighbor: str | None = None
        self._weights: list[float] | None = None
        self._keys: dict[Architecture, str] = {}
        self._codes: dict[Architecture, list[int]] = {}  # choice indices, memoised for state_dict

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._reset()
        self._index = {k: {json.dumps(c): i for i, c in enumerate(v)} for k, v in space.decisions().items()}
        self._new_weights()

    # -- asking ----------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        if self._center is None and self._round_left == 0 and not self._round_pending():
            self._start_climb()
        if self._center is None:
            # once the round's quota is out, slots that wait for its results get more samples of it
            self._round_left = max(0, self._round_left - 1)
            arch = self._random_unseen()
            self._round.append(self._key(arch))
            return self._mark(arch, _ROUND)
        while True:
            while self._queue:
                arch = self._queue.pop()
                if self._key(arch) not in self._seen:
                    return self._mark(arch, self._epoch)
            if self._epoch in self._pending.values():
                return self._mark(self._random_unseen(), _FILLER)
            if not self._finish_neighbourhood():
                return self._propose()

    def _mark(self, arch: Architecture, tag: int) -> Architecture:
        key = self._key(arch)
        self._seen.add(key)
        self._pending[key] = tag
        return arch

    def _round_pending(self) -> bool:
        return _ROUND in self._pending.values()

    def _start_climb(self) -> None:
        """Make the best told sample of the round the centre, or start another round if none has values."""
        scored = [k for k in self._round if k in self._known]
        self._round = []
        if not scored:
            self._round_left = self.restart_samples
            return
        self._set_center(max(scored, key=self._fitness))

    def _finish_neighbourhood(self) -> bool:
        """Called when every neighbour of the centre is told; returns True when the climb goes on."""
        if self.improvement == "best" and self._best_neighbor is not None:
            if self._fitness(self._best_neighbor) > self._fitness(self._center):  # type: ignore[arg-type]
                self._set_center(self._best_neighbor)
                return True
        # local optimum: restart from fresh random samples
        self._center = None
        self._queue = []
        self._best_neighbor = None
        self._round_left = self.restart_samples
        self._new_weights()
        return False

    def _set_center(self, key: str) -> None:
        """Climb to ``key``; neighbours already evaluated are used without spending queries."""
        while True:
            self._epoch += 1
            self._center = key
            self._best_neighbor = None
            center = self._known[key].arch
            neighbours = self.space.neighbors(center)
            order = self.rng.permutation(len(neighbours))
            queue = []
            for i in order:
                arch = neighbours[int(i)]
                other = self._key(arch)
                if other == key:
                    continue
                if other in self._known:
                    self._consider(other)
                elif other not in self._seen:
                    queue.append(arch)
            # popped from the end, so reverse to keep the drawn order
            self._queue = queue[::-1]
            if self.improvement == "first" and self._best_neighbor is not None:
                if self._fitness(self._best_neighbor) > self._fitness(key):
                    key = self._best_neighbor
                    continue
            return

    def _consider(self, key: str) -> None:
        if self._best_neighbor is None or self._fitness(key) > self._fitness(self._best_neighbor):
            self._best_neighbor = key

    def _random_unseen(self) -> Architecture:
        for _ in range(_RANDOM_TRIES):
            arch = self.space.sample(self.rng)
            if self._key(arch) not in self._seen:
                return arch
        if self.space.size() <= _ENUMERATE_LIMIT:
            unseen: dict[str, Architecture] = {}
            for arch in self.space.enumerate():
                unseen.setdefault(self._key(arch), arch)
            options = [a for k, a in unseen.items() if k not in self._seen]
            if options:
                return options[int(self.rng.integers(len(options)))]
            raise SearchExhausted(
                f"local search has proposed all {len(self._seen)} distinct architectures of the space"
            )
        raise SearchExhausted(
            f"local search found no unseen architecture in {_RANDOM_TRIES} random draws after "
            f"{len(self._seen)} distinct ones; the space is (nearly) exhausted"
        )

    # -- telling ---------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        key = self._key(trial.arch)
        tag = self._pending.pop(key, None)
        self._seen.add(key)
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None:
            return
        if key in self._known and self._fitness_of(self._known[key]) >= self._fitness_of(scored):
            return  # a repeat (e.g. a trial we did not ask for): keep the better record
        self._known[key] = scored
        if self._center is None:
            return
        if self.improvement == "first":
            # any result better than the centre moves the climb (late neighbours, fillers, foreign trials)
            if self._fitness(key) > self._fitness(self._center):
                self._set_center(key)
        elif tag == self._epoch:
            self._consider(key)

    # -- fitness ---------------------------------------------------------------------------
    def _new_weights(self) -> None:
        if len(self.objectives) > 1:
            self._weights = [float(w) for w in random_weights(len(self.objectives), self.rng)]

    def _fitness_of(self, scored: Scored) -> float:
        return scalar_fitness(scored, self._weights)

    def _fitness(self, key: str) -> float:
        return self._fitness_of(self._known[key])

    def _key(self, arch: Architecture) -> str:
        # canonical keys are pure functions of the architecture and cost ~0.1 ms each on nb201, while
        # a climb asks for the same neighbours' keys several times: memoise (derived, so not in state)
        key = self._keys.get(arch)
        if key is None:
            key = self._keys[arch] = self.space.canonical(arch)
        return key

    # -- state -----------------------------------------------------------------------------
    # The study saves this after every trial, so it is kept compact: architectures as choice
    # indices, and canonical keys only where they cannot be recomputed from a stored architecture.
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "known": [[self._encode(s.arch), list(s.values), s.violation] for s in self._known.values()],
            "seen_unscored": sorted(self._seen.difference(self._known)),
            "epoch": self._epoch,
            "round_left": self._round_left,
            "round": self._round,
            "center": self._center,
            "queue": [self._encode(a) for a in self._queue],
            "best_neighbor": self._best_neighbor,
            "weights": self._weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._known = {}
        for choices, values, violation in state["known"]:
            scored = Scored(self._decode(choices), tuple(float(v) for v in values), float(violation))
            self._known[self._key(scored.arch)] = scored
        self._seen = set(self._known).union(state["seen_unscored"])
        # Proposals still out when the state was saved are not waited for: a study that resumes marks
        # them interrupted and never reports them, and waiting would stall the climb for good. Should
        # their results arrive anyway, they are used like any other result.
        self._pending = {}
        self._epoch = int(state["epoch"])
        self._round_left = int(state["round_left"])
        self._round = list(state["round"])
        self._center = state["center"]
        self._queue = [self._decode(a) for a in state["queue"]]
        self._best_neighbor = state["best_neighbor"]
        self._weights = None if state["weights"] is None else [float(w) for w in state["weights"]]

    def _encode(self, arch: Architecture) -> list[int]:
        code = self._codes.get(arch)
        if code is None:
            code = self._codes[arch] = [self._index[k][json.dumps(arch[k])] for k in self._index]
        return code

    def _decode(self, choices: list[int]) -> Architecture:
        decisions = self.space.decisions()
        return Architecture({k: decisions[k][int(i)] for k, i in zip(self._index, choices)})
