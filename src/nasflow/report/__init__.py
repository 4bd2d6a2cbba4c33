"""The study report: plots and a self-contained HTML page (``nasflow report NAME``)."""

from nasflow.report.html import build_report

__all__ = ["build_report"]
