"""Reusable torch building blocks; this package imports nothing from the rest of nasflow."""

from nasflow.ops.nb201 import (
    NB201_EDGES,
    NB201_NODES,
    NB201_OPS,
    AvgPool3x3,
    NB201Cell,
    NB201Network,
    ReLUConvBN,
    ResidualReduction,
    Zero,
    make_nb201_op,
)

__all__ = [
    "NB201_EDGES",
    "NB201_NODES",
    "NB201_OPS",
    "AvgPool3x3",
    "NB201Cell",
    "NB201Network",
    "ReLUConvBN",
    "ResidualReduction",
    "Zero",
    "make_nb201_op",
]
