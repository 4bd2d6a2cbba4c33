"""Is there an accuracy-latency trade-off to find in the ``chain`` space on digits?

A Pareto front of accuracy vs latency can only hold many networks spanning a wide latency range when
the more accurate networks are the slower ones. This script samples random ``chain`` networks, trains
each with the default ``TrainEvaluator`` settings (digits, validation accuracy), and measures, for the
same networks: batch-1 latency in PyTorch eager and ONNX Runtime (one thread, the default
measurement), batch-64 eager latency (compute-dominated), and MACs. It reports the rank correlation
of accuracy with each cost and the Pareto front that the random sample itself holds for each cost
(size and the cost span of its members).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/chain_tradeoff_digits.py                          # ~11 min
    OMP_NUM_THREADS=1 python benchmarks/chain_tradeoff_digits.py --widths 0.125,0.25,0.5 --epochs 10
    OMP_NUM_THREADS=1 python benchmarks/chain_tradeoff_digits.py --widths 0.125,0.25,0.5,1 --depth 1
    OMP_NUM_THREADS=1 python benchmarks/chain_tradeoff_digits.py --networks 4 --epochs 1  # smoke run

Writes ``chain_tradeoff-<label>.json`` (every network with its numbers) to the output directory
(default ``benchmarks/results/chain_tradeoff/``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

import nasflow as nf
from nasflow.estimators.base import EvalContext
from nasflow.objectives.latency import measure_latency
from nasflow.objectives.metrics import count_macs
from nasflow.objectives.pareto import nondominated_sort

COSTS = ("eager_b1_ms", "onnxruntime_b1_ms", "eager_b64_ms", "macs")


def front_of(accuracy: list[float], cost: list[float]) -> list[int]:
    """Indices of the networks no other network beats on both accuracy (max) and cost (min)."""
    return nondominated_sort([(a, -c) for a, c in zip(accuracy, cost)])[0]


def measure(space: Any, arch: Any, task: Any, evaluator: Any, number: int) -> dict[str, Any]:
    metrics = evaluator.evaluate(arch, EvalContext(trial_number=number, seed=number)).metrics
    model = space.build(arch, task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ONNX exporter's deprecation notes
        onnx = measure_latency(model, task.input_shape, runtime="onnxruntime").estimate_ms
    return {
        "arch": space.format(arch),
        "accuracy": metrics["accuracy"],
        "eager_b1_ms": measure_latency(model, task.input_shape).estimate_ms,
        "onnxruntime_b1_ms": onnx,
        "eager_b64_ms": measure_latency(model, task.input_shape, batch_size=64).estimate_ms,
        "macs": count_macs(model, task.input_shape),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    accuracy = [r["accuracy"] for r in rows]
    summary: dict[str, Any] = {"accuracy_range": [min(accuracy), max(accuracy)]}
    for cost in COSTS:
        values = [float(r[cost]) for r in rows]
        front = [values[i] for i in front_of(accuracy, values)]
        summary[cost] = {
            "range": [min(values), max(values)],
            "spearman_with_accuracy": float(spearmanr(accuracy, values)[0]),
            "front_size": len(front),
            "front_span": max(front) / min(front),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="", help="width choices, e.g. 0.125,0.25,0.5")
    parser.add_argument("--depth", type=int, default=0, help="fix every stage's depth (default: 1-3)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (TrainEvaluator default 10)")
    parser.add_argument("--networks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="benchmarks/results/chain_tradeoff")
    args = parser.parse_args()
    torch.set_num_threads(1)

    options: dict[str, Any] = {"widths": [float(w) for w in args.widths.split(",")]} if args.widths else {}
    if args.depth:
        options.update(min_depth=args.depth, max_depth=args.depth)
    space = nf.get_space("chain", **options)
    task = nf.load_task("digits")
    evaluator = nf.TrainEvaluator(task=task, epochs=args.epochs)
    evaluator.setup(space)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = [measure(space, space.sample(rng), task, evaluator, i) for i in range(args.networks)]
    summary = summarise(rows)
    depth = f"-d{args.depth}" if args.depth else ""
    label = f"w{args.widths or 'default'}{depth}-e{args.epochs}-n{args.networks}".replace(",", "_")
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - start
    result = {"settings": vars(args), "seconds": seconds, "summary": summary, "rows": rows}
    (folder / f"chain_tradeoff-{label}.json").write_text(json.dumps(result, indent=1) + "\n")

    low, high = summary["accuracy_range"]
    print(f"{label}: {args.networks} networks, accuracy {low:.2f}-{high:.2f} %, {result['seconds']:.0f} s")
    print("| cost | range | Spearman with accuracy | front of the sample | front span |")
    print("| --- | --- | ---: | ---: | ---: |")
    for cost in COSTS:
        entry = summary[cost]
        lo, hi = entry["range"]
        print(
            f"| {cost} | {lo:.4g}-{hi:.4g} | {entry['spearman_with_accuracy']:+.2f} | "
            f"{entry['front_size']} | {entry['front_span']:.2f}x |"
        )


if __name__ == "__main__":
    main()
