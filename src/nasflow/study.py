"""The optimisation loop: ask -> evaluate -> tell -> persist, with budgets and resume."""

from __future__ import annotations

import os
import pickle
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from nasflow.errors import ConfigError, NasflowError, SearchExhausted
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.execution import Executor, InlineExecutor, Outcome, make_executor
from nasflow.execution.base import run_evaluation
from nasflow.objectives.pareto import nondominated_sort
from nasflow.objectives.spec import Constraint, Objective
from nasflow.pruners.base import Pruner, PruningHistory, PruningMonitor
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.storage import ExperimentStore, ResultRecord, TrialRecord
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

    # -- running ---------------------------------------------------------------------------
    def optimize(
        self,
        budget: int | None = None,
        seconds: float | None = None,
        workers: int = 1,
        executor: Executor | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        """Run trials until the study holds ``budget`` finished trials or ``seconds`` have passed.

        ``budget`` counts every finished trial of the study, including those of earlier runs, so
        running the same budget again after an interruption completes it rather than starting over.
        Trials cut off by an interruption are marked FAILED and do not count. Evaluations that fail
        (e.g. a NaN loss) are recorded as FAILED trials, count towards the budget, and the search
        goes on. With a pruner, trials it stops are PRUNED and count towards the budget too.
        With constraints, an architecture whose metrics known before evaluation (the evaluator's
        ``precheck``, e.g. parameters or a predicted latency) violate one is not evaluated: its trial
        is PRUNED as screened, the strategy learns from it, and it does not count towards the budget.

        Args:
            budget: total number of finished trials to reach.
            seconds: stop proposing new trials after this many seconds (running ones finish).
            workers: evaluations in parallel (local processes when > 1).
            executor: a custom executor (overrides ``workers``).
            callbacks: called as ``callback(study, trial)`` after each finished trial.
        """
        if budget is None and seconds is None:
            raise ConfigError("optimize() needs a budget (trials) or seconds (time limit), or both")
        if budget is not None and budget < 0:
            raise ConfigError(f"budget must be >= 0, got {budget}")
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
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
        deadline = None if seconds is None else time.monotonic() + seconds
        used = self._used_budget()
        own_executor = executor is None
        executor = executor or make_executor(workers)
        self._check_pruner_travels(executor)
        running: dict[Future[Outcome], tuple[TrialRecord, Architecture]] = {}
        starting: TrialRecord | None = None  # created in the store, not yet handed to the executor
        exhausted = False
        screened_in_a_row = 0
        try:
            while True:
                while (
                    not exhausted
                    and len(running) < executor.max_workers
                    and self._may_start(used + len(running), budget, deadline)
                ):
                    try:
                        starting, arch = self._start_trial()
                    except SearchExhausted:
                        exhausted = True  # finish what runs, then stop: the strategy has nothing new
                        break
                    screened = self._screen(starting, arch)
                    if screened is not None:
                        starting = None
                        screened_in_a_row += 1
                        for callback in callbacks:
                            callback(self, screened)
                        if screened_in_a_row >= max(MIN_SCREENED_IN_A_ROW, 10 * (budget or 0)):
                            warnings.warn(
                                f"study {self.name!r} stopped: the last {screened_in_a_row} proposals all "
                                "violated the constraints before evaluation; relax them or change the space",
                                stacklevel=2,
                            )
                            exhausted = True
                            break
                        continue
                    screened_in_a_row = 0
                    context = EvalContext(
                        trial_number=starting.number,
                        seed=trial_seed(self.seed, starting.number),
                        fidelity=dict(starting.fidelity),
                        pruning=self._pruning_monitor(),
                    )
                    running[executor.submit(self.evaluator, arch, context)] = (starting, arch)
                    starting = None
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    record, arch = running.pop(future)
                    trial = self._finish_trial(record, arch, future.result())
                    used += 1
                    for callback in callbacks:
                        callback(self, trial)
        except BaseException:
            # Ctrl-C or a crash: keep every finished trial, mark the cut-off ones, stop the workers.
            cut_off = [record for record, _ in running.values()] + ([starting] if starting else [])
            for record in cut_off:
                self._store.finish_trial(record.trial_id, TrialState.FAILED, {}, INTERRUPTED)
            if own_executor:
                executor.shutdown(cancel=True)
            raise
        if own_executor:
            executor.shutdown()

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
        # One driver writes a study, so anything still RUNNING belongs to a process that died.
        self._store.fail_running_trials(self._study_id, INTERRUPTED)
        state = self._store.load_strategy_state(self._study_id)
        if state is not None:
            self.strategy.load_state_dict(state)
        self._ready = True

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

    def _used_budget(self) -> int:
        return sum(
            1
            for t in self._store.get_trials(self._study_id)
            if t.state.finished and t.error != INTERRUPTED and not is_screened(t.state, t.error)
        )

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

    @staticmethod
    def _may_start(started: int, budget: int | None, deadline: float | None) -> bool:
        if budget is not None and started >= budget:
            return False
        return deadline is None or time.monotonic() < deadline

    def _start_trial(self) -> tuple[TrialRecord, Architecture]:
        assert self.space is not None and self.strategy is not None
        proposed = self.strategy.ask(1)[0]
        fidelity = proposed.fidelity if isinstance(proposed, Suggestion) else {}
        return self._create_record(proposed.arch if isinstance(proposed, Suggestion) else proposed, fidelity)

    def _create_record(
        self, arch: Architecture | Mapping[str, Any], fidelity: dict[str, float]
    ) -> tuple[TrialRecord, Architecture]:
        """Validate ``arch`` and store it as a new RUNNING trial."""
        assert self.space is not None
        arch = self.space.validate(arch if isinstance(arch, Architecture) else Architecture(arch))
        record = self._store.create_trial(
            self._study_id, arch.to_dict(), self.space.format(arch), self.space.canonical(arch), fidelity
        )
        return record, arch

    def _finish_trial(self, record: TrialRecord, arch: Architecture, outcome: Outcome) -> FrozenTrial:
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
        frozen = self._freeze(record, arch, state, metrics, error, dict(outcome.intermediate))
        self.strategy.tell(frozen)
        self._store.finish_trial(
            record.trial_id,
            state,
            metrics,
            error,
            strategy_state=self.strategy.state_dict(),
            study_id=self._study_id,
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
            result.append(
                self._freeze(
                    record,
                    Architecture(record.arch),
                    record.state,
                    record.metrics,
                    record.error,
                    record.intermediate,
                    record.finished_at,
                )
            )
        return result

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
