"""The benchmark harness: strategies side by side on a tabular benchmark or a user function."""

from nasflow.bench.harness import BenchResult, RunTrace, run_bench
from nasflow.bench.report import summary_rows, write_csv, write_plot

__all__ = ["BenchResult", "RunTrace", "run_bench", "summary_rows", "write_csv", "write_plot"]
