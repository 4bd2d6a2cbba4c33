"""One-shot (weight-sharing) searches: DARTS, DARTS+, FairDARTS, GDAS, ENAS, SPOS and RSWS.

They train a supernet once and read an architecture off it, instead of proposing architectures
to an evaluator one by one; see ``docs/oneshot.md``.

>>> from nasflow.oneshot import DARTS, run_oneshot
>>> from nasflow.space.nb201 import NB201Space
>>> search = DARTS(space=NB201Space(channels=8, cells_per_stage=1), epochs=20, seed=0)
>>> result = search.fit("digits")  # doctest: +SKIP
>>> search.derive()  # doctest: +SKIP
"""

from __future__ import annotations

from nasflow.oneshot.base import EpochLog, OneShotResult, OneShotSearch
from nasflow.oneshot.darts import DARTS, GDAS, DARTSPlus, FairDARTS
from nasflow.oneshot.enas import ENAS
from nasflow.oneshot.run import OneShotRun, OneShotStrategy, read_log, run_oneshot
from nasflow.oneshot.spos import RSWS, SPOS
from nasflow.oneshot.supernet import MixedOp, Supernet, build_supernet

__all__ = [
    "DARTS",
    "DARTSPlus",
    "ENAS",
    "EpochLog",
    "FairDARTS",
    "GDAS",
    "MixedOp",
    "OneShotResult",
    "OneShotRun",
    "OneShotSearch",
    "OneShotStrategy",
    "RSWS",
    "SPOS",
    "Supernet",
    "build_supernet",
    "read_log",
    "run_oneshot",
]
