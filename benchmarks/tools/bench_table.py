"""Print the markdown table of docs/benchmarks.md from two `nasflow bench` JSON summaries.

    python benchmarks/tools/bench_table.py benchmarks/results/bench/nb201-cifar10.json \
        benchmarks/results/bench/nb201-cifar100.json
"""

from __future__ import annotations

import json
import sys

BUDGETS = (25, 50, 100, 200)


def main(first: str, second: str) -> None:
    runs = [json.load(open(path)) for path in (first, second)]
    rows = {s["strategy"]: [s] for s in runs[0]["strategies"]}
    for summary in runs[1]["strategies"]:
        rows.setdefault(summary["strategy"], []).append(summary)
    names = [d["dataset"] for d in runs]
    header = ["strategy"]
    for name in names:
        header += [f"{name} @{b}" for b in BUDGETS] + ["ms/trial"]
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    # ordered by mean accuracy at 100 queries on the first data set
    for strategy, pair in sorted(rows.items(), key=lambda item: -item[1][0]["mean@100"]):
        cells = [strategy]
        for summary in pair:
            cells += [f"{summary[f'mean@{b}']:.2f} ± {summary[f'std@{b}']:.2f}" for b in BUDGETS]
            cells.append(f"{summary['ms_per_trial']:.1f}")
        print("| " + " | ".join(cells) + " |")
    oracle = ["oracle"]
    for run in runs:
        oracle += [f"{run['oracle']:.2f}"] * len(BUDGETS) + [""]
    print("| " + " | ".join(oracle) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
