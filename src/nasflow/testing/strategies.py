"""Contract checks every ask/tell strategy must pass.

Strategies are driven here without a study: a deterministic synthetic objective scores each
architecture, so the checks are fast and exact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Proposal, Strategy, Suggestion
from nasflow.trial import FrozenTrial, TrialState

StrategyFactory = Callable[[], Strategy]


def synthetic_score(arch: Architecture, salt: str = "") -> float:
    """A fixed pseudo-random score in [0, 100) for an architecture."""
    digest = hashlib.sha256((salt + arch.to_json()).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def arch_of(proposal: Proposal) -> Architecture:
    """The architecture of a proposal (multi-fidelity strategies wrap it in a Suggestion)."""
    return proposal.arch if isinstance(proposal, Suggestion) else proposal


def drive(
    strategy: Strategy,
    steps: int,
    objectives: list[Objective],
    batch: int = 1,
    start: int = 0,
    fail_every: int = 0,
) -> list[Proposal]:
    """Ask/tell ``steps`` proposals (``batch`` at a time); returns them in order."""
    proposed: list[Proposal] = []
    number = start
    while len(proposed) < steps:
        archs = strategy.ask(min(batch, steps - len(proposed)))
        for proposal in archs:
            arch = arch_of(proposal)
            failed = fail_every and number % fail_every == fail_every - 1
            metrics = {o.metric: synthetic_score(arch, o.metric) for o in objectives}
            strategy.tell(
                FrozenTrial(
                    number=number,
                    arch=arch,
                    arch_str="",
                    canonical="",
                    state=TrialState.FAILED if failed else TrialState.COMPLETE,
                    metrics={} if failed else metrics,
                    values=None if failed else tuple(metrics[o.metric] for o in objectives),
                    error="synthetic failure" if failed else None,
                    fidelity=dict(proposal.fidelity) if isinstance(proposal, Suggestion) else {},
                )
            )
            number += 1
        proposed.extend(archs)
    return proposed


def check_strategy(factory: StrategyFactory, space: DecisionSpace, steps: int = 40, seed: int = 0) -> None:
    """Run every contract check of ``factory()`` on ``space``."""
    single = [Objective("accuracy", "max")]
    double = [Objective("accuracy", "max"), Objective("params", "min")]

    def fresh(objectives: list[Objective]) -> Strategy:
        strategy = factory()
        strategy.setup(space, objectives, seed)
        return strategy

    first = drive(fresh(single), steps, single)
    assert all(space.is_valid(arch_of(a)) for a in first), "the strategy proposed an invalid architecture"
    assert drive(fresh(single), steps, single) == first, "same seed gave different proposals"

    # Resume: continuing from a JSON round trip of state_dict equals not stopping at all.
    head = steps // 2
    stopped = fresh(single)
    drive(stopped, head, single)
    state = json.loads(json.dumps(stopped.state_dict()))
    resumed = factory()
    resumed.setup(space, single, seed + 12345)  # the loaded state must override the new seed
    resumed.load_state_dict(state)
    tail = drive(resumed, steps - head, single, start=head)
    assert tail == first[head:], "resuming from state_dict did not continue exactly"

    # Batches for parallel workers, failed trials and several objectives.
    batched = drive(fresh(single), steps, single, batch=4, fail_every=5)
    assert len(batched) == steps and all(space.is_valid(arch_of(a)) for a in batched), "batched asks broke"
    multi = drive(fresh(double), steps, double, fail_every=7)
    assert all(space.is_valid(arch_of(a)) for a in multi), "multi-objective proposals are invalid"
    other_seed = factory()
    other_seed.setup(space, single, seed + 1)
    if len(list(space.decisions())) > 1:
        assert drive(other_seed, steps, single) != first, "a different seed gave identical proposals"
