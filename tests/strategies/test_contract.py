"""Every registered strategy passes the strategy contract on every space kind."""

from __future__ import annotations

import pytest

import nasflow as nf
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import check_strategy


@pytest.mark.parametrize("name", nf.list_strategies())
@pytest.mark.parametrize("space_name", ["constrained", *nf.list_spaces()])
def test_registered_strategy_passes_contract(name: str, space_name: str) -> None:
    space = constrained_space() if space_name == "constrained" else nf.get_space(space_name)
    check_strategy(lambda: nf.get_strategy(name), space)
