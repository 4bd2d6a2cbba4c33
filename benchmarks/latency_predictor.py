"""Latency look-up table for the ``chain`` space: profile, held-out check, and measurement stability.

For each runtime (PyTorch eager and ONNX Runtime) the script profiles every block of the default
``chain`` space for the digits input (1x8x8, 10 classes, batch 1, one thread) plus 30 calibration
networks, fits ``network ≈ a * sum(blocks) + b``, and then measures 50 held-out random networks
(never the calibration ones) to report the share of predictions within ±10% and ±5%, RMSE,
Spearman's rank correlation and the largest error. Target: ≥ 90% within ±10% for eager.

Stability: the same 10 random networks are measured 5 times each with fresh ``measure_latency``
calls (in 5 rounds over the 10 networks, so that a burst of background load hits all of them); the
relative deviation ``(max - min) / median`` of each network's 5 medians is reported. Target: < 10%.

Latency depends on what else the machine runs. For each phase (and each stability round) the script
records how many CPUs other processes kept busy meanwhile (from /proc/stat, our own CPU time
subtracted) and the load average; numbers from a busy machine should be read as such.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/latency_predictor.py            # both runtimes, defaults
    OMP_NUM_THREADS=1 python benchmarks/latency_predictor.py --runtimes eager --samples 20

Prints the numbers and writes ``benchmarks/results/latency/chain-<runtime>.json`` and
``benchmarks/results/latency/stability.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.objectives.latency import DEFAULT_MIN_TIME_MS, ShapeTask, cpu_name, measure_latency
from nasflow.objectives.latency_predictor import LatencyPredictor, check, profile_blocks, sample_distinct
from nasflow.space.chain import ChainSpace

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "latency"
INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


class OtherLoad:
    """CPUs kept busy by other processes while a block runs: (all busy CPU time - ours) / wall time.

    Read from /proc/stat (Linux); on a 2-core machine, 1.0 means another process had a full core.
    """

    def __enter__(self) -> OtherLoad:
        self.start = (self._busy_seconds(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, ours, wall = self._busy_seconds(), time.process_time(), time.perf_counter()
        other = (busy - self.start[0]) - (ours - self.start[1])
        self.cpus = round(max(0.0, other) / max(wall - self.start[2], 1e-9), 2)

    @staticmethod
    def _busy_seconds() -> float:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
        except OSError:
            return float("nan")
        idle = fields[3] + fields[4]  # idle and iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def profile_and_check(
    runtime: str, calibration: int, samples: int, passes: int, seed: int, tables: Path | None
) -> dict[str, Any]:
    space = ChainSpace()
    load_before = load()
    start = time.perf_counter()
    with OtherLoad() as profile_load:
        table = profile_blocks(
            space,
            INPUT_SHAPE,
            NUM_CLASSES,
            runtime=runtime,
            calibration=calibration,
            seed=seed,
            passes=passes,
        )
    profile_seconds = time.perf_counter() - start
    if tables is not None:
        table.save(tables / f"chain-{runtime}.json")
    start = time.perf_counter()
    with OtherLoad() as check_load:
        result = check(LatencyPredictor(table, space), n=samples, seed=seed + 1)
    check_seconds = time.perf_counter() - start
    calibration_rows = table.calibration
    fitted = [table.a * r["block_sum_ms"] + table.b for r in calibration_rows]
    calibration_error = [
        abs(f - r["measured_ms"]) / r["measured_ms"] for f, r in zip(fitted, calibration_rows)
    ]
    measured = [row["measured_ms"] for row in result.rows]
    return {
        "runtime": runtime,
        "space": space.describe(),
        "input_shape": list(INPUT_SHAPE),
        "num_classes": NUM_CLASSES,
        "settings": table.settings,
        "blocks": len(table.blocks),
        "calibration": len(calibration_rows),
        "fit": {"a": table.a, "b": table.b},
        "calibration_within_10": float(np.mean(np.array(calibration_error) <= 0.10)),
        "profile_seconds": round(profile_seconds, 1),
        "check_seconds": round(check_seconds, 1),
        "held_out": {k: v for k, v in result.to_dict().items() if k != "rows"},
        "measured_ms_range": [min(measured), max(measured)],
        "rows": list(result.rows),
        "load_before": load_before,
        "load_after": load(),
        "other_cpus_profile": profile_load.cpus,
        "other_cpus_check": check_load.cpus,
    }


def stability(
    runtime: str, archs: int, rounds: int, seed: int, min_time_ms: float = DEFAULT_MIN_TIME_MS
) -> dict[str, Any]:
    space = ChainSpace()
    task = ShapeTask(INPUT_SHAPE, NUM_CLASSES)
    chosen = sample_distinct(space, archs, np.random.default_rng(seed))
    networks = []
    for arch in chosen:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            networks.append(space.build(arch, task))
    load_before = load()
    medians = np.zeros((len(chosen), rounds))
    other_cpus = []
    for r in range(rounds):
        with OtherLoad() as round_load:
            for i, network in enumerate(networks):
                result = measure_latency(network, INPUT_SHAPE, runtime=runtime, min_time_ms=min_time_ms)
                medians[i, r] = result.estimate_ms
        other_cpus.append(round_load.cpus)
    deviation = (medians.max(axis=1) - medians.min(axis=1)) / np.median(medians, axis=1)
    return {
        "runtime": runtime,
        "archs": [space.format(a) for a in chosen],
        "medians_ms": medians.round(5).tolist(),
        "relative_deviation": deviation.round(4).tolist(),
        "max_relative_deviation": float(deviation.max()),
        "mean_relative_deviation": float(deviation.mean()),
        "load_before": load_before,
        "load_after": load(),
        "other_cpus_per_round": other_cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default="eager,onnxruntime")
    parser.add_argument("--calibration", type=int, default=30)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2, help="measurement passes of the table and the check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stability-archs", type=int, default=10)
    parser.add_argument("--stability-rounds", type=int, default=5)
    parser.add_argument(
        "--stability-min-time-ms", type=float, default=DEFAULT_MIN_TIME_MS, help="window of each measurement"
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tables-dir", type=Path, default=None, help="also keep the look-up tables here")
    parser.add_argument("--stability-only", action="store_true", help="skip the tables, measure stability")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = args.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]

    print(
        "| runtime | blocks | a | b (ms) | within ±10% | within ±5% | RMSE (ms) | Spearman | max error "
        "| other CPUs busy (profile / check) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for runtime in [] if args.stability_only else runtimes:
        summary = profile_and_check(
            runtime, args.calibration, args.samples, args.passes, args.seed, args.tables_dir
        )
        summary.update(created=created, machine=machine())
        (folder / f"chain-{runtime}.json").write_text(json.dumps(summary, indent=1) + "\n")
        held = summary["held_out"]
        print(
            f"| {runtime} | {summary['blocks']} | {summary['fit']['a']:.3f} | {summary['fit']['b']:.4f} "
            f"| {100 * held['within_10']:.0f}% | {100 * held['within_5']:.0f}% | {held['rmse_ms']:.4f} "
            f"| {held['spearman']:.3f} | {100 * held['max_error']:.1f}% "
            f"| {summary['other_cpus_profile']:.2f} / {summary['other_cpus_check']:.2f} |"
        )

    results = {"created": created, "machine": machine(), "runs": []}
    print()
    print(
        "| runtime | networks x rounds | max deviation of medians | mean deviation "
        "| other CPUs busy per round |"
    )
    print("|---|---|---|---|---|")
    for runtime in runtimes:
        run = stability(
            runtime, args.stability_archs, args.stability_rounds, args.seed + 100, args.stability_min_time_ms
        )
        results["runs"].append(run)  # type: ignore[attr-defined]
        print(
            f"| {runtime} | {args.stability_archs} x {args.stability_rounds} "
            f"| {100 * run['max_relative_deviation']:.1f}% | {100 * run['mean_relative_deviation']:.1f}% "
            f"| {', '.join(f'{c:.2f}' for c in run['other_cpus_per_round'])} |"
        )
    (folder / "stability.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
