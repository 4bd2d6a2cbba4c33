"""Trials per second through each executor and store, and where the driver's time goes.

The study's driver is the only process that writes the store and talks to the strategy, so how many
trials per second one driver sustains bounds how many workers it can keep busy. With the (near-free)
tabular NB201 evaluator and the random strategy almost all of a trial's time is the driver's own
work, which this script measures in five parts:

1. **Executors x stores**: ``study.optimize(budget=N)`` on a fresh study through each executor (inline;
   ``processes`` = ``ProcessExecutor(workers, threads_per_worker=1)``; ``ray`` = nasflow's RayExecutor
   on a local Ray instance, when it imports) and each store (in memory; a SQLite file; PostgreSQL when
   ``--postgres URL`` or ``NASFLOW_TEST_POSTGRES_URL`` is given). Each executor is started and warmed
   up with a few trials first; its start-up time is reported separately. Reported: wall time,
   trials/s, ms per trial and the driver process's CPU ms per trial.
2. **Loop cost against study size**: the same inline search run to ``--sizes`` trials; the ms per
   trial of the last fifth of the trials before each size shows what grows with the study.
3. **Store cost per trial**: ``create_trial``, one ``report_intermediate`` and ``finish_trial`` (with a
   real strategy state) timed directly against each store, and ``get_trials`` (which the driver
   calls about once a second to see other drivers' trials) at several study sizes.
4. **Strategy cost per trial**: ``ask``, ``tell`` and ``state_dict`` (with its JSON encoding, which
   the store saves with every finished trial) of each strategy, averaged over a window of trials
   ending at each history size.
5. **Ray's own task overhead**: a no-op Ray task, one at a time (round trip) and many in flight
   (throughput), on a local Ray instance with ``--workers`` CPUs.

Usage::

    python benchmarks/throughput.py                     # full run, about 2-3 minutes on 2 cores
    python benchmarks/throughput.py --quick             # tiny sizes, a few seconds (used by the tests)
    python benchmarks/throughput.py --postgres postgresql://user@host/db

Prints markdown tables and writes ``benchmarks/results/throughput.json``. Against PostgreSQL it
leaves its studies (named ``throughput-...``) in that database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import nasflow as nf
from nasflow.benchmarks.nb201 import load_nb201
from nasflow.execution import Executor, InlineExecutor, ProcessExecutor
from nasflow.objectives.spec import Objective
from nasflow.space.base import DecisionSpace
from nasflow.storage import open_store
from nasflow.strategies.base import Strategy
from nasflow.trial import FrozenTrial, TrialState

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "throughput.json"
EXECUTORS = ("inline", "processes", "ray")
STORAGES = ("memory", "sqlite", "postgres")
#: strategies whose cost per trial hardly depends on a model; the others get --model-history sizes
CHEAP_STRATEGIES = ("random", "evolution", "local", "grid")


# -- building blocks --------------------------------------------------------------------------------
def ray_executor_class() -> type[Executor] | None:
    """nasflow's RayExecutor, or None when it (or Ray) does not import."""
    try:
        from nasflow.execution.ray import RayExecutor
    except ImportError:
        return None
    return RayExecutor  # type: ignore[no-any-return]


def make_executor(kind: str, workers: int) -> Executor:
    """An executor of ``kind`` with ``workers`` slots (inline always has one)."""
    if kind == "inline":
        return InlineExecutor()
    if kind == "processes":
        return ProcessExecutor(workers, threads_per_worker=1)
    ray_class = ray_executor_class()
    if ray_class is None:
        raise RuntimeError("nasflow.execution.ray.RayExecutor does not import")
    # a local Ray instance with ``workers`` CPUs, one per trial; the executor stops it at shutdown
    return ray_class(None, trial_cpus=1.0, num_cpus=workers, max_workers=workers)  # type: ignore[call-arg]


def storage_url(kind: str, folder: Path, postgres: str | None, tag: str) -> str | None:
    """The store URL for ``kind``: a new SQLite file per tag, or the given PostgreSQL database."""
    if kind == "memory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{folder / f'{tag}.db'}"
    if postgres is None:
        raise ValueError("PostgreSQL needs --postgres URL or NASFLOW_TEST_POSTGRES_URL")
    return postgres


def new_study(strategy: str | Strategy, url: str | None, seed: int = 0) -> nf.Study:
    return nf.create_study(
        space="nb201",
        strategy=strategy,
        evaluator=nf.TabularEvaluator("nb201", dataset="cifar10"),
        storage=url,
        name=f"throughput-{uuid.uuid4().hex[:10]}",
        seed=seed,
    )


def timed_search(study: nf.Study, executor: Executor, trials: int) -> dict[str, Any]:
    """Run ``trials`` trials; wall and driver-CPU seconds, and the time each trial finished at."""
    finished: list[float] = []
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    study.optimize(
        budget=trials, executor=executor, callbacks=[lambda s, t: finished.append(time.perf_counter())]
    )
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    states = [t.state for t in study.trials()]
    if len(states) != trials or any(state is not TrialState.COMPLETE for state in states):
        raise RuntimeError(f"expected {trials} complete trials, the study holds {len(states)}: {set(states)}")
    return {"wall_s": wall, "cpu_s": cpu, "finished": [t - start_wall for t in finished]}


def window_ms(finished: Sequence[float], size: int) -> float:
    """ms per trial over the last fifth of the trials up to ``size`` (finish times since the start)."""
    width = max(1, size // 5)
    first = finished[size - width - 1] if size > width else 0.0
    return (finished[size - 1] - first) / width * 1e3


# -- 1. executors x stores --------------------------------------------------------------------------
def executor_rows(args: argparse.Namespace, folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for kind in args.executors:
        if kind == "ray" and ray_executor_class() is None:
            notes.append("ray: skipped, nasflow.execution.ray.RayExecutor does not import yet")
            continue
        start = time.perf_counter()
        executor = make_executor(kind, args.workers)
        # start-up (spawning workers, importing nasflow and loading the table in each) is paid once
        warmup = new_study("random", None, seed=1)
        warmup.optimize(budget=2 * executor.max_workers, executor=executor)
        start_s = time.perf_counter() - start
        try:
            for storage in args.storages:
                url = storage_url(storage, folder, args.postgres, f"{kind}-{storage}")
                run = timed_search(new_study("random", url), executor, args.trials)
                rows.append(
                    {
                        "executor": kind,
                        "workers": executor.max_workers,
                        "storage": storage,
                        "trials": args.trials,
                        "start_s": start_s,
                        "wall_s": run["wall_s"],
                        "trials_per_s": args.trials / run["wall_s"],
                        "ms_per_trial": run["wall_s"] / args.trials * 1e3,
                        "driver_cpu_ms_per_trial": run["cpu_s"] / args.trials * 1e3,
                    }
                )
                print(f"{kind:>9} / {storage:<8}: {rows[-1]['trials_per_s']:8.1f} trials/s", flush=True)
        finally:
            executor.shutdown()
    return rows, notes


# -- 2. loop cost against study size ----------------------------------------------------------------
def growth_rows(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    rows = []
    largest = max(args.sizes)
    for storage in args.storages:
        url = storage_url(storage, folder, args.postgres, f"growth-{storage}")
        run = timed_search(new_study("random", url), InlineExecutor(), largest)
        for size in sorted(args.sizes):
            rows.append(
                {
                    "storage": storage,
                    "study_size": size,
                    "window": max(1, size // 5),
                    "ms_per_trial": window_ms(run["finished"], size),
                }
            )
        print(
            f"   growth / {storage:<8}: {rows[-1]['ms_per_trial']:.3f} ms per trial at {largest}", flush=True
        )
    return rows


# -- 3. store cost per trial ------------------------------------------------------------------------
def sample_state(trials: int = 100) -> dict[str, Any]:
    """The strategy state an evolution search saves after ``trials`` trials (population of 10)."""
    timer = PhaseTimer(nf.get_strategy("evolution"))
    new_study(timer, None).optimize(budget=trials, executor=InlineExecutor())
    return timer.last_state


def store_rows(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """A trial's writes timed directly against each store, and get_trials at each study size.

    Each trial is written as the study writes it: ``create_trial`` (with a budget to check, where the
    store takes one, as the study passes it), one ``report_intermediate`` (one epoch's report) and
    ``finish_trial`` with a strategy state.
    """
    space = nf.get_space("nb201")
    arch = space.sample(np.random.default_rng(0))
    arch_dict, arch_str, canonical = arch.to_dict(), space.format(arch), space.canonical(arch)
    metrics = {"accuracy": 90.0, "test_accuracy": 89.5, "train_seconds": 1.0}
    state = sample_state()
    sizes = sorted(args.store_sizes)
    rows = []
    for storage in args.storages:
        store = open_store(storage_url(storage, folder, args.postgres, f"store-{storage}"))
        takes_budget = "budget" in inspect.signature(store.create_trial).parameters
        extra = {"budget": 10 * max(sizes)} if takes_budget else {}
        study_id = store.create_study(f"throughput-{uuid.uuid4().hex[:10]}", {}).study_id
        spent = {"create": 0.0, "report": 0.0, "finish": 0.0}
        done = 0
        for size in sizes:
            for _ in range(size - done):
                t0 = time.perf_counter()
                record = store.create_trial(study_id, arch_dict, arch_str, canonical, **extra)
                t1 = time.perf_counter()
                store.report_intermediate(record.trial_id, 0, {"accuracy": 80.0})
                t2 = time.perf_counter()
                store.finish_trial(
                    record.trial_id, TrialState.COMPLETE, metrics, strategy_state=state, study_id=study_id
                )
                spent["create"] += t1 - t0
                spent["report"] += t2 - t1
                spent["finish"] += time.perf_counter() - t2
            done = size
            t0 = time.perf_counter()
            trials = store.get_trials(study_id)
            get_ms = (time.perf_counter() - t0) * 1e3
            assert len(trials) == size
            ms = {name: seconds / done * 1e3 for name, seconds in spent.items()}
            rows.append(
                {
                    "storage": storage,
                    "study_size": size,
                    "create_ms": ms["create"],
                    "report_ms": ms["report"],
                    "finish_ms": ms["finish"],
                    "write_ms": ms["create"] + ms["finish"],
                    "max_trials_per_s": 1e3 / (ms["create"] + ms["finish"]),
                    "get_trials_ms": get_ms,
                    "state_bytes": len(json.dumps(state)),
                    "budget_checked": takes_budget,
                }
            )
        store.close()
        print(f"    store / {storage:<8}: {rows[-1]['write_ms']:.3f} ms per trial written", flush=True)
    return rows


# -- 4. strategy cost per trial ---------------------------------------------------------------------
class PhaseTimer(Strategy):
    """Delegates to ``inner`` and records the seconds of every ask, tell and state_dict call.

    ``state_dict`` is timed together with its JSON encoding, the part of saving it that grows with
    the state; ``last_state`` keeps the latest state.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.name = inner.name
        self.ask_s: list[float] = []
        self.tell_s: list[float] = []
        self.state_s: list[float] = []
        self.state_bytes: list[int] = []
        self.last_state: dict[str, Any] = {}

    def setup(self, space: DecisionSpace, objectives: Sequence[Objective], seed: int | None) -> None:
        self.inner.setup(space, objectives, seed)

    def ask(self, n: int = 1) -> list[Any]:
        return self._timed(self.ask_s, lambda: self.inner.ask(n))  # type: ignore[no-any-return]

    def tell(self, trial: FrozenTrial) -> None:
        self._timed(self.tell_s, lambda: self.inner.tell(trial))

    def state_dict(self) -> dict[str, Any]:
        start = time.perf_counter()
        state = self.inner.state_dict()
        size = len(json.dumps(state))
        self.state_s.append(time.perf_counter() - start)
        self.state_bytes.append(size)
        self.last_state = state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    @staticmethod
    def _timed(into: list[float], call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return call()
        finally:
            into.append(time.perf_counter() - start)


def ask_seconds(strategy: Strategy, n: int) -> float:
    start = time.perf_counter()
    strategy.ask(n)
    return time.perf_counter() - start


def strategy_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.strategies:
        sizes = sorted(args.history if name in CHEAP_STRATEGIES else args.model_history)
        timer = PhaseTimer(nf.get_strategy(name))
        start = time.perf_counter()
        new_study(timer, None).optimize(budget=max(sizes), executor=InlineExecutor())
        wall = time.perf_counter() - start
        for size in sizes:
            width = max(1, size // 5)
            window = slice(size - width, size)

            def mean_ms(values: list[float], window: slice = window) -> float:
                return statistics.fmean(values[window]) * 1e3

            ask, tell, state = mean_ms(timer.ask_s), mean_ms(timer.tell_s), mean_ms(timer.state_s)
            rows.append(
                {
                    "strategy": name,
                    "history": size,
                    "window": width,
                    "ask_ms": ask,
                    "tell_ms": tell,
                    "state_ms": state,
                    "total_ms": ask + tell + state,
                    "state_kb": timer.state_bytes[size - 1] / 1024,
                    "ask1_ms": None,
                    "batch_ask_ms_per_arch": None,
                }
            )
        # Several free workers could be served by one ask(n): a model-based strategy fits its model
        # once for the batch. Measured at the largest history, after one ask that absorbs a due refit.
        timer.inner.ask(1)
        one, batch = ask_seconds(timer.inner, 1), ask_seconds(timer.inner, args.batch)
        rows[-1]["ask1_ms"] = one * 1e3
        rows[-1]["batch_ask_ms_per_arch"] = batch / args.batch * 1e3
        print(f" strategy / {name:<10}: {rows[-1]['total_ms']:.3f} ms per trial ({wall:.1f} s)", flush=True)
    return rows


# -- 5. Ray's own task overhead ---------------------------------------------------------------------
def _noop(value: int) -> int:
    return value


def ray_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        return []
    start = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        task = ray.remote(num_cpus=1)(_noop)
        ray.get([task.remote(i) for i in range(2 * args.workers)])  # start the worker processes
        count = args.ray_tasks
        t0 = time.perf_counter()
        for i in range(count):
            ray.get(task.remote(i))
        serial = (time.perf_counter() - t0) / count
        t0 = time.perf_counter()
        results = ray.get([task.remote(i) for i in range(count)])
        pipelined = (time.perf_counter() - t0) / count
        assert results == list(range(count))
    finally:
        if started_here:
            ray.shutdown()
    print(
        f"      ray: {serial * 1e3:.2f} ms round trip, {pipelined * 1e3:.2f} ms per task in flight",
        flush=True,
    )
    return [
        {
            "cpus": args.workers,
            "tasks": count,
            "init_s": init_s if started_here else None,
            "round_trip_ms": serial * 1e3,
            "pipelined_ms": pipelined * 1e3,
        }
    ]


# -- 6. several drivers on one study ---------------------------------------------------------------
DRIVER_MODE = "_driver"


def drive(url: str, name: str, budget: int, folder: Path, index: int) -> None:
    """One driver process: open the shared study, wait for the start signal, run, print its times."""
    study = nf.load_study(name, storage=url)
    load_nb201()
    (folder / f"ready-{index}").touch()
    while not (folder / "go").exists():
        time.sleep(0.002)
    start = time.time()
    study.optimize(budget=budget, executor=InlineExecutor())
    print(json.dumps({"start": start, "end": time.time()}))


def run_drivers(url: str, count: int, budget: int, folder: Path) -> dict[str, Any]:
    """``count`` driver processes search one new study to ``budget`` trials together.

    The drivers start (imports, opening the study) before the clock does: each signals it is ready
    and waits for a shared start file, so the span covers only the search.
    """
    study = new_study("random", url)
    signals = folder / f"drivers-{study.name}"
    signals.mkdir()
    command = [sys.executable, str(Path(__file__).resolve()), DRIVER_MODE, url, study.name, str(budget)]
    processes = [
        subprocess.Popen([*command, str(signals), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 300
        while len(list(signals.glob("ready-*"))) < count:
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in processes):
                raise RuntimeError("a driver process failed to start")
            time.sleep(0.01)
        (signals / "go").touch()
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    if any(p.returncode != 0 for p in processes):
        raise RuntimeError(f"a driver process failed: {outputs}")
    times = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    span = max(t["end"] for t in times) - min(t["start"] for t in times)
    trials = study.trials()
    numbers = sorted(t.number for t in trials)
    if numbers != list(range(budget)) or any(t.state is not TrialState.COMPLETE for t in trials):
        raise RuntimeError(f"{count} drivers: expected trials 0..{budget - 1} complete, got {len(trials)}")
    store = open_store(url)
    # which driver ran each trial (the store records it; older stores do not)
    runners = Counter(
        getattr(r, "driver", None) for r in store.get_trials(store.load_study(study.name).study_id)
    )
    store.close()
    return {
        "drivers": count,
        "trials": budget,
        "wall_s": span,
        "trials_per_s": budget / span,
        "busiest_share": max(runners.values()) / budget if None not in runners else None,
        "distinct_archs": len({t.arch_str for t in trials}),
    }


def driver_rows(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    rows = []
    for storage in [s for s in args.storages if s != "memory"]:
        for count in sorted({1, args.drivers}):
            url = storage_url(storage, folder, args.postgres, f"drivers-{storage}-{count}")
            assert url is not None
            rows.append({"storage": storage, **run_drivers(url, count, args.trials, folder)})
            print(f"  drivers / {storage:<8}: {count} x: {rows[-1]['trials_per_s']:.1f} trials/s", flush=True)
    return rows


# -- report -----------------------------------------------------------------------------------------
Column = tuple[str, Callable[[dict[str, Any]], str]]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], right_from: int) -> list[str]:
    """A markdown table; columns from ``right_from`` on are right-aligned (numbers)."""
    align = ["---" if i < right_from else "---:" for i in range(len(columns))]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(cell(row) for _, cell in columns) + " |" for row in rows]


def number(key: str, spec: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: "-" if row[key] is None else format(row[key], spec)


EXECUTOR_COLUMNS: list[Column] = [
    ("executor", lambda r: r["executor"]),
    ("workers", number("workers", "d")),
    ("storage", lambda r: r["storage"]),
    ("trials", number("trials", ",")),
    ("start-up s", number("start_s", ".2f")),
    ("wall s", number("wall_s", ".2f")),
    ("trials/s", number("trials_per_s", ".1f")),
    ("ms / trial", number("ms_per_trial", ".3f")),
    ("driver CPU ms / trial", number("driver_cpu_ms_per_trial", ".3f")),
]
GROWTH_COLUMNS: list[Column] = [
    ("storage", lambda r: r["storage"]),
    ("study size", number("study_size", ",")),
    ("window", number("window", ",")),
    ("ms / trial", number("ms_per_trial", ".3f")),
]
STORE_COLUMNS: list[Column] = [
    ("storage", lambda r: r["storage"]),
    ("study size", number("study_size", ",")),
    ("create ms", number("create_ms", ".3f")),
    ("finish ms", number("finish_ms", ".3f")),
    ("create + finish ms", number("write_ms", ".3f")),
    ("max trials/s", number("max_trials_per_s", ".0f")),
    ("report ms (1 step)", number("report_ms", ".3f")),
    ("get_trials ms", number("get_trials_ms", ".1f")),
    ("state bytes", number("state_bytes", "d")),
]
STRATEGY_COLUMNS: list[Column] = [
    ("strategy", lambda r: r["strategy"]),
    ("history", number("history", ",")),
    ("ask ms", number("ask_ms", ".3f")),
    ("tell ms", number("tell_ms", ".3f")),
    ("state_dict + JSON ms", number("state_ms", ".3f")),
    ("total ms", number("total_ms", ".3f")),
    ("state KB", number("state_kb", ".1f")),
    ("ask(1) ms, then", number("ask1_ms", ".3f")),
    ("ask(batch) ms / arch", number("batch_ask_ms_per_arch", ".3f")),
]
DRIVER_COLUMNS: list[Column] = [
    ("storage", lambda r: r["storage"]),
    ("drivers", number("drivers", "d")),
    ("trials", number("trials", ",")),
    ("wall s", number("wall_s", ".2f")),
    ("trials/s", number("trials_per_s", ".1f")),
    (
        "trials of the busiest driver",
        lambda r: "-" if r["busiest_share"] is None else f"{r['busiest_share']:.0%}",
    ),
    ("distinct architectures", number("distinct_archs", ",")),
]
RAY_COLUMNS: list[Column] = [
    ("CPUs", number("cpus", "d")),
    ("tasks", number("tasks", ",")),
    ("ray.init s", number("init_s", ".2f")),
    ("round trip ms", number("round_trip_ms", ".3f")),
    ("ms per task, all in flight", number("pipelined_ms", ".3f")),
]


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    sections = [
        (
            f"Executors x stores: random strategy, tabular NB201, {args.trials:,} trials",
            "executors",
            EXECUTOR_COLUMNS,
            3,
        ),
        (
            "Loop cost against study size: inline, random; ms per trial over the last fifth before each size",
            "growth",
            GROWTH_COLUMNS,
            1,
        ),
        (
            "Store cost per trial (create_trial, report_intermediate, finish_trial with an evolution state)",
            "stores",
            STORE_COLUMNS,
            1,
        ),
        (
            "Strategy cost per trial (mean over the last fifth of the trials before each history size)",
            "strategies",
            STRATEGY_COLUMNS,
            1,
        ),
        (
            "Several drivers on one study: random, tabular NB201, inline executor each",
            "drivers",
            DRIVER_COLUMNS,
            1,
        ),
        ("Ray's own overhead for a no-op task (local instance)", "ray", RAY_COLUMNS, 0),
    ]
    lines: list[str] = []
    for title, key, columns, right_from in sections:
        if results[key]:
            lines += ["", f"### {title}", "", *table(results[key], columns, right_from)]
    lines += [f"\n{note}" for note in results["notes"]]
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {}
    for package in ("nasflow", "numpy", "sqlalchemy", "psycopg", "torch", "ray"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per executor x store run (1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes / Ray CPUs (2)")
    parser.add_argument("--executors", nargs="+", default=list(EXECUTORS), choices=EXECUTORS)
    parser.add_argument(
        "--storages",
        nargs="+",
        default=None,
        choices=STORAGES,
        help="default: memory sqlite, and postgres when a URL is given",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("NASFLOW_TEST_POSTGRES_URL"),
        help="PostgreSQL URL (default: $NASFLOW_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[500, 1500, 3000],
        help="study sizes of the loop-growth measurement",
    )
    parser.add_argument(
        "--store-sizes",
        type=int,
        nargs="+",
        default=[200, 1000, 3000],
        help="study sizes at which the store costs and get_trials are reported",
    )
    parser.add_argument("--strategies", nargs="+", default=["random", "evolution", "bananas"])
    parser.add_argument(
        "--history",
        type=int,
        nargs="+",
        default=[100, 1000, 3000],
        help="history sizes for random, evolution, local, grid",
    )
    parser.add_argument(
        "--model-history",
        type=int,
        nargs="+",
        default=[50, 200, 400],
        help="history sizes for model-based strategies (bananas, bo, ...)",
    )
    parser.add_argument(
        "--drivers", type=int, default=2, help="driver processes sharing one study, against 1 (2; 1 = skip)"
    )
    parser.add_argument("--batch", type=int, default=10, help="architectures of the batched ask (10)")
    parser.add_argument("--ray-tasks", type=int, default=500, help="no-op Ray tasks per measurement (500)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every part")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file ({DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.sizes, args.store_sizes = 20, [10, 20], [10, 20]
        args.history, args.model_history, args.ray_tasks = [10, 20], [12, 16], 20
    if args.storages is None:
        args.storages = ["memory", "sqlite"] + (["postgres"] if args.postgres else [])
    if "postgres" in args.storages and not args.postgres:
        parser.error("--storages postgres needs --postgres URL or NASFLOW_TEST_POSTGRES_URL")
    numbers = [
        args.drivers,
        args.batch,
        args.trials,
        args.workers,
        args.ray_tasks,
        *args.sizes,
        *args.store_sizes,
        *args.history,
        *args.model_history,
    ]
    if min(numbers) < 1:
        parser.error("every count and size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [DRIVER_MODE]:  # a child process started by run_drivers
        url, name, budget, signals, index = argv[1:]
        drive(url, name, int(budget), Path(signals), int(index))
        return 0
    args = parse_args(argv)
    load_nb201()  # the one-off table load stays out of every timing
    with tempfile.TemporaryDirectory(prefix="nasflow-throughput-") as tmp:
        folder = Path(tmp)
        if "sqlite" in args.storages:
            open_store(f"sqlite:///{folder / 'warmup.db'}").close()  # imports SQLAlchemy once
        executors, notes = executor_rows(args, folder)
        results: dict[str, Any] = {
            "executors": executors,
            "notes": notes,
            "growth": growth_rows(args, folder),
            "stores": store_rows(args, folder),
            "strategies": strategy_rows(args),
            "drivers": driver_rows(args, folder) if args.drivers > 1 else [],
            "ray": ray_rows(args) if "ray" in args.executors else [],
        }
    print(report(results, args))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "postgres"}
    settings["postgres"] = bool(args.postgres)
    payload = {
        "benchmark": "throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "settings": settings,
        **results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
