"""The optimisation loop: ask -> evaluate -> tell -> persist, with budgets and resume."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from nasflow.errors import BudgetReached, ConfigError, NasflowError, SearchExhausted, StorageError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.execution import Executor, InlineExecutor, Outcome, make_executor
from nasflow.execution.base import run_evaluation
from nasflow.execution.interrupt import graceful_sigint
from nasflow.execution.liveness import (
    HEARTBEAT_INTERVAL_S,
    STALE_AFTER_S,
    Heartbeat,
    dead_local_drivers,
    new_driver_id,
)
from nasflow.objectives.pareto import nondominated_sort
from nasflow.objectives.spec import Constraint, Objective
from nasflow.pruners.base import Pruner, PruningHistory, PruningMonitor
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.storage import ExperimentStore, ResultRecord, TrialRecord
from nasflow.storage.base import uses_budget, utc_now
from nasflow.strategies.base import Strategy, Suggestion
from nasflow.trial import (
    INTERRUPTED,
    SCREENED,
    FrozenTrial,
    TrialState,
    is_screened,
    objective_values,
    total_violation,
)

if TYPE_CHECKING:
    from nasflow.export.pipeline import ExportResult
    from nasflow.tasks import Task

Callback = Callable[["Study", FrozenTrial], None]
#: proposals screened out in a row (at least; 10x the budget when larger) after which optimize() stops
MIN_SCREENED_IN_A_ROW = 300
#: seconds between two looks at the trials other drivers of the same study finished (at least)
SYNC_INTERVAL_S = 1.0
#: ...and at least this many times as long as the last look took, so that re-reading a large study
#: never takes more than a small share of the driver's time
SYNC_COST_FACTOR = 20.0
#: key under which the saved strategy state lists the trials its strategy was told
_TOLD_KEY = "_nasflow_told_trials"


@dataclass
class _Job:
    """A trial handed to the executor: what to run again if its worker dies."""

    record: TrialRecord
    arch: Architecture
    context: EvalContext
    attempts: int = 1


def trial_seed(study_seed: int, number: int) -> int:
    """A per-trial seed that depends only on the study seed and the trial number."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


class Study:
    """A persistent search: one space, strategy, evaluator and set of objectives.

    Create one with :func:`nasflow.create_study` or reopen it with :func:`nasflow.load_study`.
    """

    def __init__(
        self,
        *,
        name: str,
        study_id: int,
        space: DecisionSpace | None,
        strategy: Strategy | None,
        evaluator: Evaluator | None,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint],
        store: ExperimentStore,
        seed: int,
        pruner: Pruner | None = None,
    ) -> None:
        self.name = name
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.seed = seed
        self.pruner = pruner
        #: name of the stored study's pruner when it could not be rebuilt (then optimize() refuses)
        self.missing_pruner: str | None = None
        self._store = store
        self._study_id = study_id
        self._ready = False
        #: this process's id in the trials it runs; other drivers may share the study
        self._driver = new_driver_id()
        #: numbers of the finished trials the strategy has been told (or that it must not be told)
        self._told: set[int] = set()
        self._stop_requested = False
        self._forked = False  # see _diverge
        self._sync_due = 0.0  # when _sync should next look at other drivers' trials
        #: the highest trial number this driver knows of: a new trial numbered higher than the next
        #: one means another driver created trials in between
        self._max_number = -1
        self.heartbeat_interval = HEARTBEAT_INTERVAL_S
        self.stale_after = STALE_AFTER_S

    # -- running ---------------------------------------------------------------------------
    def optimize(
        self,
        budget: int | None = None,
        seconds: float | None = None,
        workers: int = 1,
        executor: Executor | str | None = None,
        callbacks: Sequence[Callback] = (),
        max_retries: int = 2,
        catch_sigint: bool = True,
    ) -> None:
        """Run trials until the study holds ``budget`` finished trials or ``seconds`` have passed.

        ``budget`` counts every finished trial of the study, including those of earlier runs and of
        other drivers working on the same study at the same time, so running the same budget again
        after an interruption completes it rather than starting over. Trials cut off by an
        interruption are marked FAILED and do not count. Evaluations that fail (e.g. a NaN loss) are
        recorded as FAILED trials, count towards the budget, and the search goes on. With a pruner,
        trials it stops are PRUNED and count towards the budget too. With constraints, an architecture
        whose metrics known before evaluation (the evaluator's ``precheck``, e.g. parameters or a
        predicted latency) violate one is not evaluated: its trial is PRUNED as screened, the strategy
        learns from it, and it does not count towards the budget.

        A trial whose worker dies (process killed, Ray worker or node lost) is run again, up to
        ``max_retries`` times, then FAILED with the reason. Ctrl-C (SIGINT) stops starting trials and
        lets the running ones finish; a second Ctrl-C stops at once, marking them interrupted.

        Args:
            budget: total number of finished trials to reach.
            seconds: stop proposing new trials after this many seconds (running ones finish).
            workers: evaluations in parallel (local processes when > 1).
            executor: an executor object, or a name: "inline", "process" or "ray" (a local Ray
                instance; pass a :class:`~nasflow.execution.ray.RayExecutor` for a cluster).
            callbacks: called as ``callback(study, trial)`` after each finished trial.
            max_retries: how often a trial whose worker died is run again.
            catch_sigint: handle Ctrl-C as above (in the main thread, when nobody else handles it).
        """
        if budget is None and seconds is None:
            raise ConfigError("optimize() needs a budget (trials) or seconds (time limit), or both")
        if budget is not None and budget < 0:
            raise ConfigError(f"budget must be >= 0, got {budget}")
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if self.space is None or self.strategy is None or self.evaluator is None:
            raise ConfigError(
                f"study {self.name!r} was loaded without a space, strategy or evaluator that can be "
                "rebuilt from storage; pass space=, strategy= and evaluator= to load_study to continue it"
            )
        if self.pruner is None and self.missing_pruner is not None:
            raise ConfigError(
                f"study {self.name!r} uses the pruner {self.missing_pruner!r}, which cannot be rebuilt "
                "from storage; pass pruner= to load_study to continue it"
            )
        self._prepare()
        self._stop_requested = False
        deadline = None if seconds is None else time.monotonic() + seconds
        own_executor = not isinstance(executor, Executor)
        if not isinstance(executor, Executor):
            executor = make_executor(workers) if executor is None else make_executor(workers, executor)
        self._check_pruner_travels(executor)
        running: dict[Future[Outcome], _Job] = {}
        starting: TrialRecord | None = None  # created in the store, not yet handed to the executor
        exhausted = False
        screened_in_a_row = 0
        claimed = self._sync()  # budget taken by finished trials and by other drivers' running ones
        interrupt = graceful_sigint(self.stop, lambda: len(running)) if catch_sigint else _no_context()
        try:
            with interrupt, Heartbeat(self._store, self.heartbeat_interval) as heartbeat:
                while True:
                    if time.monotonic() >= self._sync_due:
                        claimed = self._sync()
                    while (
                        not exhausted
                        and len(running) < executor.max_workers
                        and self._may_start(claimed + len(running), budget, deadline)
                    ):
                        try:
                            starting, arch = self._start_trial(budget)
                        except SearchExhausted:
                            exhausted = True  # finish what runs, then stop: the strategy has nothing new
                            break
                        except BudgetReached:  # other drivers took the rest of the budget
                            claimed = self._sync()
                            break
                        screened = self._screen(starting, arch)
                        if screened is not None:
                            starting = None
                            screened_in_a_row += 1
                            for callback in callbacks:
                                callback(self, screened)
                            if screened_in_a_row >= max(MIN_SCREENED_IN_A_ROW, 10 * (budget or 0)):
                                warnings.warn(
                                    f"study {self.name!r} stopped: the last {screened_in_a_row} proposals "
                                    "all violated the constraints before evaluation; relax them or change "
                                    "the space",
                                    stacklevel=2,
                                )
                                exhausted = True
                                break
                            continue
                        screened_in_a_row = 0
                        job = _Job(starting, arch, self._context(starting))
                        heartbeat.add(starting.trial_id)
                        running[executor.submit(self.evaluator, arch, job.context)] = job
                        starting = None
                    if not running:
                        break
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        job = running.pop(future)
                        outcome = future.result()
                        if outcome.lost and job.attempts <= max_retries and not self._stop_requested:
                            job.attempts = self._retry(job, outcome)
                            running[executor.submit(self.evaluator, job.arch, job.context)] = job
                            continue
                        heartbeat.discard(job.record.trial_id)
                        trial = self._end_job(job, outcome)
                        if trial is None:
                            continue
                        claimed += 1
                        for callback in callbacks:
                            callback(self, trial)
        except BaseException:
            # A second Ctrl-C or a crash: keep every finished trial, mark the cut-off ones, stop the workers.
            cut_off = [job.record for job in running.values()] + ([starting] if starting else [])
            for record in cut_off:
                self._store.finish_trial(record.trial_id, TrialState.FAILED, {}, INTERRUPTED)
            if own_executor:
                executor.shutdown(cancel=True)
            raise
        if own_executor:
            executor.shutdown()

    def stop(self) -> None:
        """Stop the running :meth:`optimize` after its running trials finish (e.g. from a callback)."""
        self._stop_requested = True

    @property
    def stopped(self) -> bool:
        """True when the last :meth:`optimize` ended early through :meth:`stop` or Ctrl-C."""
        return self._stop_requested

    def _context(self, record: TrialRecord) -> EvalContext:
        return EvalContext(
            trial_number=record.number,
            seed=trial_seed(self.seed, record.number),
            fidelity=dict(record.fidelity),
            pruning=self._pruning_monitor(),
        )

    def _retry(self, job: _Job, outcome: Outcome) -> int:
        """Record one more attempt at a trial whose worker died; returns the attempts so far."""
        attempts = self._store.retry_trial(job.record.trial_id)
        warnings.warn(
            f"trial {job.record.number}: {outcome.error}; running it again (attempt {attempts})",
            stacklevel=3,
        )
        return attempts

    def _end_job(self, job: _Job, outcome: Outcome) -> FrozenTrial | None:
        """Store a finished evaluation; None when the trial no longer needs (or accepts) a result."""
        if outcome.lost:
            if self._stop_requested:  # e.g. Ctrl-C reached the worker too: run it again on resume
                self._store.finish_trial(job.record.trial_id, TrialState.FAILED, {}, INTERRUPTED)
                return None
            outcome = Outcome(None, f"{outcome.error} (gave up after {job.attempts} attempts)")
        try:
            return self._finish_trial(job.record, job.arch, outcome, job.attempts)
        except StorageError:
            if self._still_running(job.record):
                raise
            # another driver took the trial over (our heartbeats did not reach the database in time)
            warnings.warn(
                f"trial {job.record.number} was marked interrupted by another driver before it finished; "
                "its result is dropped and the trial will be proposed again",
                stacklevel=3,
            )
            return None

    def _still_running(self, record: TrialRecord) -> bool:
        trials = self._store.get_trials(self._study_id)
        return any(t.trial_id == record.trial_id and t.state is TrialState.RUNNING for t in trials)

    def evaluate(self, arch: Architecture | Mapping[str, Any]) -> FrozenTrial:
        """Evaluate one given architecture with the study's evaluator, as one more trial.

        For architectures chosen outside the strategy, e.g. the network a one-shot search derived,
        trained from scratch. The strategy is told the result like any other. The study's pruner does
        not stop it: this architecture was asked for by name.
        """
        self._prepare()
        record, arch = self._create_record(arch, {})
        context = EvalContext(trial_number=record.number, seed=trial_seed(self.seed, record.number))
        try:
            with Heartbeat(self._store, self.heartbeat_interval) as heartbeat:
                heartbeat.add(record.trial_id)
                outcome = run_evaluation(self.evaluator, arch, context)  # type: ignore[arg-type]
        except BaseException:
            self._store.finish_trial(record.trial_id, TrialState.FAILED, {}, INTERRUPTED)
            raise
        return self._finish_trial(record, arch, outcome)

    def add_trial(
        self,
        arch: Architecture | Mapping[str, Any],
        metrics: Mapping[str, float],
        intermediate: Mapping[int, Mapping[str, float]] | None = None,
    ) -> FrozenTrial:
        """Record an architecture measured outside the study (e.g. trained with inherited weights).

        The trial is COMPLETE when ``metrics`` hold every objective, else FAILED with the reason; the
        strategy is told, and the trial counts towards the budget like any other.
        """
        self._prepare()
        record, arch = self._create_record(arch, {})
        steps = sorted((int(k), {n: float(v) for n, v in m.items()}) for k, m in (intermediate or {}).items())
        measurement = Measurement({n: float(v) for n, v in metrics.items()})
        return self._finish_trial(record, arch, Outcome(measurement, None, steps))

    def _prepare(self) -> None:
        """Bind components and restore the strategy, once per Study object."""
        if self._ready:
            return
        assert self.space is not None and self.strategy is not None and self.evaluator is not None
        self.evaluator.setup(self.space)
        self.strategy.setup(self.space, self.objectives, self.seed)
        if self.pruner is not None:
            self.pruner.setup(self.objectives)
        records = self._reclaim(self._store.get_trials(self._study_id))
        self._max_number = max((r.number for r in records), default=-1)
        state = self._store.load_strategy_state(self._study_id)
        if state is not None:
            told = state.pop(_TOLD_KEY, None)
            self.strategy.load_state_dict(state)
            # a state saved before drivers could share a study knew every trial finished by then
            self._told = (
                {n for first, last in told for n in range(first, last + 1)}
                if told is not None
                else {r.number for r in records if r.state.finished}
            )
        self._ready = True

    def _reclaim(self, records: list[TrialRecord]) -> list[TrialRecord]:
        """Mark RUNNING trials of vanished drivers interrupted; returns the trials as they are now.

        A driver is gone when its heartbeat is older than ``stale_after`` seconds, or at once when it
        ran on this host in a process that no longer exists (e.g. a search killed with SIGKILL).
        """
        others = [r.driver for r in records if r.state is TrialState.RUNNING and r.driver != self._driver]
        if not others:
            return records
        cutoff = utc_now() - timedelta(seconds=self.stale_after)
        reclaimed = self._store.fail_stale_trials(
            self._study_id, INTERRUPTED, heartbeat_before=cutoff, drivers=dead_local_drivers(others)
        )
        return self._store.get_trials(self._study_id) if reclaimed else records

    def _diverge(self) -> None:
        """Give this driver's strategy its own random stream once another live driver shows up.

        Drivers of one study restore the same saved strategy state, so with the same random stream
        they would propose the same architectures. A single driver never forks, so resuming a study
        alone still gives the trials of an uninterrupted run.
        """
        if self._forked or self.strategy is None:
            return
        self._forked = True
        key = int.from_bytes(hashlib.sha256(self._driver.encode()).digest()[:8], "little")
        self.strategy.rng = np.random.default_rng([self.seed, key])

    def _sync(self) -> int:
        """Tell the strategy the trials other drivers finished; returns the budget already taken.

        The budget taken counts finished trials (except interrupted and screened ones) and trials
        other drivers are running now; this driver's own running trials are counted by the caller.
        """
        assert self.strategy is not None
        start = time.monotonic()
        records = self._reclaim(self._store.get_trials(self._study_id))
        self._max_number = max(self._max_number, max((r.number for r in records), default=-1))
        taken = 0
        for record in records:
            if record.state is TrialState.RUNNING:
                if record.driver != self._driver:
                    taken += 1
                    self._diverge()
                continue
            taken += uses_budget(record.state, record.error)
            if record.number in self._told:
                continue
            self._told.add(record.number)
            if record.error == INTERRUPTED:
                continue  # never told: the strategy may propose it again
            self.strategy.tell(self._freeze_record(record))
        now = time.monotonic()
        self._sync_due = now + max(SYNC_INTERVAL_S, SYNC_COST_FACTOR * (now - start))
        return taken

    def _pruning_monitor(self) -> PruningMonitor | None:
        """The pruner with a snapshot of the finished trials' curves, to travel with one evaluation."""
        if self.pruner is None:
            return None
        trials = self._store.get_trials(self._study_id)
        return PruningMonitor(self.pruner, PruningHistory.from_trials(trials, self.pruner.metric))

    def _check_pruner_travels(self, executor: Executor) -> None:
        # Fail early and clearly rather than with a pickling error from inside a worker pool.
        if self.pruner is None or isinstance(executor, InlineExecutor):
            return
        try:
            pickle.dumps(self.pruner)
        except Exception as exc:
            raise ConfigError(
                f"the pruner cannot be sent to worker processes ({exc}); make it picklable or run "
                "with workers=1"
            ) from None

    def _screen(self, record: TrialRecord, arch: Architecture) -> FrozenTrial | None:
        """Finish a new trial unevaluated when metrics known in advance violate a constraint.

        Cheap cost metrics (parameters, MACs, a predicted or cached latency) let every strategy steer
        clear of infeasible networks without paying for their evaluation; the strategy is told the
        screened trial like any other, and it does not count towards the budget.
        """
        assert self.evaluator is not None
        if not self.constraints:
            return None
        try:
            known = self.evaluator.precheck(arch)
        except Exception:  # e.g. a network that cannot be built: the evaluation records why it fails
            return None
        broken = [c for c in self.constraints if c.metric in known and c.violation(known) > 0]
        if not broken:
            return None
        reason = f"{SCREENED} " + ", ".join(f"{c} ({c.metric}={known[c.metric]:g})" for c in broken)
        return self._finish_trial(record, arch, Outcome(Measurement(dict(known)), reason, pruned=True))

    def _may_start(self, started: int, budget: int | None, deadline: float | None) -> bool:
        if self._stop_requested:
            return False
        if budget is not None and started >= budget:
            return False
        return deadline is None or time.monotonic() < deadline

    def _start_trial(self, budget: int | None) -> tuple[TrialRecord, Architecture]:
        assert self.space is not None and self.strategy is not None
        proposed = self.strategy.ask(1)[0]
        fidelity = proposed.fidelity if isinstance(proposed, Suggestion) else {}
        arch = proposed.arch if isinstance(proposed, Suggestion) else proposed
        return self._create_record(arch, fidelity, budget)

    def _create_record(
        self, arch: Architecture | Mapping[str, Any], fidelity: dict[str, float], budget: int | None = None
    ) -> tuple[TrialRecord, Architecture]:
        """Validate ``arch`` and store it as a new RUNNING trial of this driver.

        With ``budget``, the store refuses (BudgetReached) when the study's trials, other drivers'
        included, already use it up: the check and the insert are one transaction.
        """
        assert self.space is not None
        arch = self.space.validate(arch if isinstance(arch, Architecture) else Architecture(arch))
        record = self._store.create_trial(
            self._study_id,
            arch.to_dict(),
            self.space.format(arch),
            self.space.canonical(arch),
            fidelity,
            driver=self._driver,
            budget=budget,
        )
        if record.number != self._max_number + 1:
            self._diverge()  # another driver is creating trials in this study right now
        self._max_number = max(self._max_number, record.number)
        return record, arch

    def _finish_trial(
        self, record: TrialRecord, arch: Architecture, outcome: Outcome, attempts: int = 1
    ) -> FrozenTrial:
        assert self.strategy is not None
        for step, metrics in outcome.intermediate:
            self._store.report_intermediate(record.trial_id, step, metrics)
        state, metrics, error = TrialState.FAILED, {}, outcome.error
        if outcome.pruned:
            state = TrialState.PRUNED
            metrics = outcome.measurement.metrics if outcome.measurement is not None else {}
        elif outcome.measurement is not None:
            metrics = outcome.measurement.metrics
            missing = [o.metric for o in self.objectives if objective_values(metrics, [o]) is None]
            if missing:
                error = (
                    f"the evaluator returned no finite value for objective {missing}; "
                    f"it returned: {sorted(metrics)}"
                )
            else:
                state = TrialState.COMPLETE
        frozen = self._freeze(record, arch, state, metrics, error, dict(outcome.intermediate), None, attempts)
        self.strategy.tell(frozen)
        self._told.add(record.number)
        strategy_state = {**self.strategy.state_dict(), _TOLD_KEY: _ranges(self._told)}
        self._store.finish_trial(
            record.trial_id, state, metrics, error, strategy_state=strategy_state, study_id=self._study_id
        )
        return frozen

    def _freeze(
        self,
        record: TrialRecord,
        arch: Architecture,
        state: TrialState,
        metrics: dict[str, float],
        error: str | None,
        intermediate: dict[int, dict[str, float]],
        finished_at: Any = None,
        attempts: int = 1,
    ) -> FrozenTrial:
        values = objective_values(metrics, self.objectives) if state is TrialState.COMPLETE else None
        return FrozenTrial(
            number=record.number,
            arch=arch,
            arch_str=record.arch_str,
            canonical=record.canonical,
            state=state,
            metrics=dict(metrics),
            values=values,
            violation=self._violation(state, metrics, error, values),
            error=error,
            intermediate=intermediate,
            started_at=record.started_at,
            finished_at=finished_at,
            fidelity=dict(record.fidelity),
            attempts=attempts,
        )

    def _violation(
        self, state: TrialState, metrics: dict[str, float], error: str | None, values: Any
    ) -> float:
        """Constraint violation of a scored trial, or of a screened one on the metrics known in advance."""
        if values is not None:
            return total_violation(metrics, self.constraints)
        if is_screened(state, error):
            return total_violation(metrics, [c for c in self.constraints if c.metric in metrics])
        return 0.0

    # -- results ---------------------------------------------------------------------------
    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """Every trial of the study in order, optionally only those in ``states``."""
        result = []
        for record in self._store.get_trials(self._study_id):
            if states is not None and record.state not in states:
                continue
            result.append(self._freeze_record(record))
        return result

    def _freeze_record(self, record: TrialRecord) -> FrozenTrial:
        """A stored trial as the user and the strategy see it."""
        return self._freeze(
            record,
            Architecture(record.arch),
            record.state,
            record.metrics,
            record.error,
            record.intermediate,
            record.finished_at,
            record.attempts,
        )

    def _scored(self) -> list[FrozenTrial]:
        return [t for t in self.trials([TrialState.COMPLETE]) if t.values is not None]

    def best(self) -> FrozenTrial:
        """The feasible completed trial best on the first objective (the earliest among equals).

        With several objectives this is the Pareto-front member best on the first objective; see
        :meth:`pareto_front` for the whole front. An architecture that violates a constraint is never
        the best: when no completed trial satisfies the constraints this raises.

        Raises:
            NasflowError: no trial has completed, or none satisfies the constraints.
        """
        scored = self._scored()
        if not scored:
            raise NasflowError(f"study {self.name!r} has no completed trial yet; run optimize() first")
        feasible = [t for t in scored if t.feasible]
        if not feasible:
            closest = min(scored, key=lambda t: (t.violation, t.number))
            bounds = ", ".join(str(c) for c in self.constraints)
            raise NasflowError(
                f"none of the {len(scored)} completed trials of study {self.name!r} satisfies the "
                f"constraints ({bounds}); the closest is trial {closest.number} (violation "
                f"{closest.violation:g}). Run more trials or relax the bounds"
            )
        first = self.objectives[0]
        return max(feasible, key=lambda t: (first.oriented(t.values[0]), -t.number))  # type: ignore[index]

    def has_feasible_trial(self) -> bool:
        """True when some completed trial satisfies every constraint."""
        return any(t.feasible for t in self._scored())

    def pareto_front(self) -> list[FrozenTrial]:
        """Feasible completed trials that no other feasible trial dominates, best first objective first.

        With one objective this is the best trial(s). Architectures evaluated more than once appear once.
        """
        feasible = [t for t in self._scored() if t.feasible]
        if not feasible:
            return []
        points = [tuple(o.oriented(v) for o, v in zip(self.objectives, t.values)) for t in feasible]  # type: ignore[arg-type]
        front = [feasible[i] for i in nondominated_sort(points)[0]]
        unique: dict[str, FrozenTrial] = {}
        for trial in sorted(front, key=lambda t: t.number):
            unique.setdefault(trial.canonical, trial)
        first = self.objectives[0]
        return sorted(unique.values(), key=lambda t: -first.oriented(t.values[0]))  # type: ignore[index]

    @property
    def config(self) -> dict[str, Any]:
        """The settings recorded when the study was created (space, strategy, evaluator, objectives...)."""
        return dict(self._store.load_study(self.name).config)

    def add_result(self, kind: str, payload: Mapping[str, Any]) -> ResultRecord:
        """Store a JSON result (e.g. a retrained model's validation) in the study's database."""
        return self._store.add_result(self._study_id, kind, dict(payload))

    def results(self, kind: str | None = None) -> list[ResultRecord]:
        """Results stored with :meth:`add_result`, oldest first, only those of ``kind`` if given."""
        return self._store.get_results(self._study_id, kind)

    def export(
        self,
        *,
        top: int = 1,
        pareto: bool = False,
        trial: int | None = None,
        retrain_epochs: int | None = None,
        seeds: int = 1,
        formats: str | Sequence[str] = ("onnx", "torchscript"),
        output_dir: str | os.PathLike[str] | None = None,
        robustness: bool = True,
        transfer_data: str | os.PathLike[str] | None = None,
        init_weights: str | os.PathLike[str] | None = None,
        fine_tune: bool = False,
        task: str | Task | None = None,
        latency: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> list[ExportResult]:
        """Retrain, validate and export the best architecture(s) as ONNX + TorchScript with model cards.

        See :func:`nasflow.export.export_study` for the arguments; each model card is also stored
        here as a result of kind ``"export"``.
        """
        from nasflow.export.pipeline import export_study  # torch's exporters load only when used

        return export_study(
            self,
            top=top,
            pareto=pareto,
            trial=trial,
            retrain_epochs=retrain_epochs,
            seeds=seeds,
            formats=formats,
            output_dir=output_dir,
            robustness=robustness,
            transfer_data=transfer_data,
            init_weights=init_weights,
            fine_tune=fine_tune,
            task=task,
            latency=latency,
            progress=progress,
        )

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def __repr__(self) -> str:
        space = self.space.name if self.space is not None else None
        return f"Study(name={self.name!r}, space={space!r}, objectives={[str(o) for o in self.objectives]})"


def _ranges(numbers: set[int]) -> list[list[int]]:
    """Sorted numbers as ``[first, last]`` runs: short even for long studies."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return runs


@contextmanager
def _no_context() -> Iterator[None]:
    yield
