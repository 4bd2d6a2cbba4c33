"""How well do cheap performance estimators rank NB201 cells on digits? Rank correlations and cost.

Ground truth: the ``nb201-digits`` table (``nasflow.benchmarks.digits.load_nb201_digits``): 800 distinct
NB201 cells (8 channels, one cell per stage) trained from scratch on the digits task for 4 epochs
(``DIGITS_SETTINGS``), with final validation and test accuracy, per-epoch validation accuracy and the
seconds each training took.

Protocol:

* A uniform sample of ``--archs`` table rows (without replacement), fixed by ``--seed``.
* Spearman's rho and Kendall's tau (``scipy.stats``) of each estimator against the table's final
  test accuracy and its final validation accuracy. ``-inf`` scores (naswot/jacob_cov for cells whose
  output ignores the input) rank last.
* Estimators:

  1. zero-cost proxies (``nasflow.proxies.score``) on the untrained network built from ``--seed``,
     with one fixed batch of ``--batch-size`` digits training images (``ZeroCostEvaluator(task="digits")``);
  2. early training: the table's ``valid_acc_epoch_k`` for k = 1, 2, 3, i.e. the validation accuracy
     after k epochs *of the table's 4-epoch run* (its learning-rate schedule already set for 4 epochs,
     which a separate k-epoch training would not be); cost ``k/4`` of the table's training seconds;
  3. learning-curve extrapolation: ``CurvePruner().predict`` (the optimistic pow3/exp3 prediction the
     pruner uses) of the epoch-4 validation accuracy from the epoch 1-2 and 1-3 columns; cost as for
     the epochs it reads;
  4. weight sharing: a uniform single-path supernet (the training shared by ``spos`` and ``rsws``,
     ``nasflow.catalog.get_oneshot("rsws", ...)``, default 50 epochs) trained on digits once per
     ``--supernet-seeds`` seed, then ``search.rank(archs)``: each cell's accuracy on the validation
     split with inherited weights after batch-norm recalibration. Its cost is the supernet training
     once plus the ranking per architecture.

* Seconds are wall-clock with ``torch.set_num_threads(1)``; the relative cost divides by the mean of the
  table's ``train_seconds`` over the sample (measured when the table was built, also single-threaded).

Usage::

    python benchmarks/estimators_digits.py                 # --archs 800 (the whole table) --seed 0, ~7 min
    python benchmarks/estimators_digits.py --archs 50 --supernet-seeds 0

Prints a markdown table and writes ``benchmarks/results/estimators_digits.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nasflow import catalog
from nasflow.benchmarks.digits import DIGITS_SETTINGS, load_nb201_digits
from nasflow.estimators.zero_cost import ZeroCostEvaluator
from nasflow.proxies import PROXIES, score
from nasflow.pruners.curve import CurvePruner
from nasflow.space.nb201 import NB201Space

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "estimators_digits.json"
TARGETS = {"test": "test_acc", "valid": "valid_acc"}
TABLE_EPOCHS = int(DIGITS_SETTINGS["epochs"])
SPACE = NB201Space(
    channels=DIGITS_SETTINGS["space"]["channels"], cells_per_stage=DIGITS_SETTINGS["space"]["cells_per_stage"]
)


def sample_rows(count: int, seed: int) -> list[str]:
    """``count`` distinct table keys drawn uniformly, in a seeded order."""
    names = sorted(load_nb201_digits())
    if not 1 <= count <= len(names):
        raise SystemExit(f"--archs must be in [1, {len(names)}], got {count}")
    chosen = np.random.default_rng(seed).choice(len(names), size=count, replace=False)
    return [names[i] for i in chosen]


def zero_cost(
    cells: list[str], batch_size: int, seed: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each proxy's value for every cell, and its mean seconds per cell (network build included once)."""
    evaluator = ZeroCostEvaluator(list(PROXIES), task="digits", batch_size=batch_size, split_seed=seed)
    evaluator.setup(SPACE)
    inputs, labels = evaluator.batch()
    # one untimed cell first: the first FLOP count and backward pass pay one-off set-up costs
    warm = evaluator.build(SPACE.parse(cells[0]), seed)
    for name in PROXIES:
        score(name, warm, inputs, labels, seed=seed)
    values: dict[str, list[float]] = {name: [] for name in PROXIES}
    seconds: dict[str, float] = {name: 0.0 for name in PROXIES}
    build_seconds = 0.0
    for number, cell in enumerate(cells, 1):
        start = time.perf_counter()
        model = evaluator.build(SPACE.parse(cell), seed)
        build_seconds += time.perf_counter() - start
        for name in PROXIES:
            start = time.perf_counter()
            values[name].append(score(name, model, inputs, labels, seed=seed))
            seconds[name] += time.perf_counter() - start
        if number % 50 == 0 or number == len(cells):
            print(f"  proxies: {number}/{len(cells)} cells", flush=True)
    # every proxy needs the network built, so each is charged the build too
    per_cell = {name: (seconds[name] + build_seconds) / len(cells) for name in PROXIES}
    return values, per_cell


def curve_predictions(cells: list[str], epochs: int) -> list[float]:
    """``CurvePruner().predict`` of the final validation accuracy from the first ``epochs`` columns."""
    table = load_nb201_digits()
    pruner = CurvePruner()
    predictions = []
    for cell in cells:
        row = table.row(cell)
        curve = {k: row[f"valid_acc_epoch_{k}"] for k in range(1, epochs + 1)}
        predictions.append(pruner.predict(curve, TABLE_EPOCHS))
    return predictions


def weight_sharing(cells: list[str], seed: int, epochs: int) -> dict[str, Any]:
    """Train a uniform single-path supernet on digits and score every cell with inherited weights."""
    # candidates=1: fit() also scores random candidates to pick an architecture, which is not measured here
    search = catalog.get_oneshot("rsws", space=SPACE, epochs=epochs, candidates=1, seed=seed)
    start = time.perf_counter()
    search.fit("digits")
    fit_seconds = time.perf_counter() - start
    archs = [SPACE.parse(cell) for cell in cells]
    start = time.perf_counter()
    scores = search.rank(archs)
    rank_seconds = (time.perf_counter() - start) / len(cells)
    print(f"  supernet seed {seed}: fit {fit_seconds:.1f} s, rank {rank_seconds:.3f} s/cell", flush=True)
    return {"scores": scores, "fit_seconds": fit_seconds, "rank_seconds_per_arch": rank_seconds}


def short_training(cells: list[str], epochs: int, seed: int) -> tuple[list[float], float]:
    """Validation accuracy after a separate ``epochs``-epoch training (its own cosine schedule).

    Same settings as the table (``TrainEvaluator`` defaults on digits, NB201 with 8 channels and one
    cell per stage) except the number of epochs; returns the values and the mean seconds per cell.
    """
    from nasflow.estimators.base import EvalContext
    from nasflow.estimators.train import TrainEvaluator

    evaluator = TrainEvaluator("digits", epochs=epochs)
    evaluator.setup(SPACE)
    values, start = [], time.perf_counter()
    for number, cell in enumerate(cells):
        context = EvalContext(trial_number=number, seed=seed + number)
        values.append(evaluator.evaluate(SPACE.parse(cell), context).metrics["accuracy"])
    return values, (time.perf_counter() - start) / max(1, len(cells))


def correlate(values: list[float], targets: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """target -> {"spearman", "kendall"}; -inf ranks last, NaN correlations stay NaN."""
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)]
    low = float(finite.min()) - 1.0 if finite.size else 0.0
    x = np.where(np.isneginf(x), low, x)  # ties below every finite score: "ranks last"
    return {
        name: {
            "spearman": float(stats.spearmanr(x, y).statistic),
            "kendall": float(stats.kendalltau(x, y).statistic),
        }
        for name, y in targets.items()
    }


def markdown(estimators: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| estimator | Spearman test | Kendall test | Spearman valid | Kendall valid | s / arch "
        "| x full training |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in estimators.items():
        c = entry["correlation"]
        lines.append(
            f"| {name} | {c['test']['spearman']:.3f} | {c['test']['kendall']:.3f} | "
            f"{c['valid']['spearman']:.3f} | {c['valid']['kendall']:.3f} | "
            f"{entry['seconds_per_arch']:.3g} | {entry['relative_cost']:.3g} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=800, help="table rows in the sample (max 800)")
    parser.add_argument("--seed", type=int, default=0, help="sample, proxy batch and network weights")
    parser.add_argument("--batch-size", type=int, default=64, help="images in the proxies' batch")
    parser.add_argument("--supernet-epochs", type=int, default=50, help="epochs of each supernet training")
    parser.add_argument("--supernet-seeds", type=int, nargs="*", default=[0, 1], help="one supernet per seed")
    parser.add_argument(
        "--train-archs", type=int, default=200, help="cells (of the sample) given a separate 1-epoch training"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()

    table = load_nb201_digits()
    cells = sample_rows(args.archs, args.seed)
    rows = [table.row(cell) for cell in cells]
    targets = {name: np.array([row[column] for row in rows]) for name, column in TARGETS.items()}
    train_seconds = float(np.mean([row["train_seconds"] for row in rows]))
    print(f"{len(cells)} cells, mean full training {train_seconds:.2f} s", flush=True)

    estimators: dict[str, dict[str, Any]] = {}

    def add(name: str, values: list[float], seconds: float, **extra: Any) -> None:
        # an estimator measured on the first len(values) cells of the sample is compared on those only
        subset = {k: v[: len(values)] for k, v in targets.items()}
        estimators[name] = {
            "correlation": correlate(values, subset),
            "archs": len(values),
            "seconds_per_arch": seconds,
            "relative_cost": seconds / train_seconds,
            "values": [float(v) for v in values],
            **extra,
        }

    add("table valid_acc (reference)", list(targets["valid"]), train_seconds)
    proxy_values, proxy_seconds = zero_cost(cells, args.batch_size, args.seed)
    for name in PROXIES:
        add(f"zero-cost {name}", proxy_values[name], proxy_seconds[name])
    for epoch in range(1, TABLE_EPOCHS):
        column = f"valid_acc_epoch_{epoch}"
        add(
            f"{epoch}-epoch valid acc (table column)",
            [row[column] for row in rows],
            train_seconds * epoch / TABLE_EPOCHS,
            column=column,
        )
    if args.train_archs > 0:
        trained, seconds = short_training(cells[: args.train_archs], 1, args.seed)
        add(f"1-epoch training, separate run ({len(trained)} cells)", trained, seconds)
    for epoch in (2, 3):
        add(
            f"curve extrapolation from epochs 1-{epoch}",
            curve_predictions(cells, epoch),
            train_seconds * epoch / TABLE_EPOCHS,
        )
    for seed in args.supernet_seeds:
        result = weight_sharing(cells, seed, args.supernet_epochs)
        # the supernet is trained once for the whole sample, so its cost is spread over the sample
        per_arch = result["fit_seconds"] / len(cells) + result["rank_seconds_per_arch"]
        add(
            f"weight sharing (supernet seed {seed})",
            result["scores"],
            per_arch,
            fit_seconds=result["fit_seconds"],
            rank_seconds_per_arch=result["rank_seconds_per_arch"],
        )

    summary = markdown(estimators)
    print()
    print(summary)
    payload = {
        "benchmark": "estimators_digits",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "settings": {
            "archs": len(cells),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "supernet": {"search": "rsws (uniform single path)", "epochs": args.supernet_epochs},
            "supernet_seeds": args.supernet_seeds,
            "train_archs": args.train_archs,
            "threads": 1,
            "table_settings": DIGITS_SETTINGS,
        },
        "mean_train_seconds": train_seconds,
        "table_valid_vs_test_all_rows": {
            "spearman": float(stats.spearmanr(table.column("valid_acc"), table.column("test_acc")).statistic),
            "kendall": float(stats.kendalltau(table.column("valid_acc"), table.column("test_acc")).statistic),
        },
        "cells": cells,
        "targets": {name: [float(v) for v in values] for name, values in targets.items()},
        "estimators": estimators,
        "markdown": summary,
        "wall_seconds": time.perf_counter() - started,
    }
    if not all(math.isfinite(v) for v in targets["test"]):
        raise SystemExit("the table holds non-finite accuracies")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\nwrote {args.output} ({payload['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
