"""Every registered strategy passes the strategy contract on every kind of space."""

from __future__ import annotations

import pytest

import nasflow as nf
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import check_strategy

#: one space of each kind: user-defined with a validity predicate, a graph cell with canonical keys
#: (nb201), a huge two-cell space (darts, ~1e18 networks) and a variable-depth chain (macro).
#: nb201-digits is nb201 restricted by a validity predicate, which "constrained" already covers;
#: chain (MobileNet-like, inactive blocks) and hierarchical (macro stages over a cell) are the
#: efficient-network spaces.
SPACES = ["constrained", "nb201", "darts", "macro", "chain", "hierarchical"]
#: combinations too large to enumerate: a grid cannot start there (tested below)
TOO_LARGE_FOR_GRID = {"darts", "chain", "hierarchical"}


@pytest.mark.parametrize("name", nf.list_strategies())
@pytest.mark.parametrize("space_name", SPACES)
def test_registered_strategy_passes_contract(name: str, space_name: str) -> None:
    if name == "grid" and space_name in TOO_LARGE_FOR_GRID:
        pytest.skip("grid refuses spaces it cannot enumerate; see the next test")
    space = constrained_space() if space_name == "constrained" else nf.get_space(space_name)
    # the big spaces make every model-based ask costlier; fewer steps keep CI fast
    steps = 40 if space_name in ("constrained", "nb201") else 16
    check_strategy(lambda: nf.get_strategy(name), space, steps=steps)


def test_grid_on_a_space_too_large_to_enumerate_says_so() -> None:
    strategy = nf.get_strategy("grid")
    with pytest.raises(nf.ConfigError, match="grid"):
        strategy.setup(nf.get_space("darts"), [nf.Objective("accuracy", "max")], 0)
        strategy.ask(1)
