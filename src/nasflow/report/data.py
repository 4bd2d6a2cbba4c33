"""Gather what the study report shows: summary, trajectories, rankings, frequencies and export cards.

Everything here is plain data computed from a :class:`~nasflow.study.Study` (or from lists of
:class:`~nasflow.trial.FrozenTrial` for the pure helpers), so it can be tested without drawing.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nasflow.errors import NasflowError
from nasflow.objectives.hypervolume import hypervolume_trajectory, reference_from_trials
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Choice
from nasflow.space.base import DecisionSpace
from nasflow.study import Study
from nasflow.trial import FrozenTrial, TrialState

#: metrics treated as costs of a network; histograms show those present
COST_METRICS = ("params", "flops", "latency_ms")
#: share of the ranked completed trials that counts as "good" for the operation frequencies
TOP_FRACTION = 0.25
#: decision names listed in a pooled group's label before it abbreviates
_LABEL_NAMES = 4
#: a re-measured latency this close to the recorded one (relative) counts as stable enough to rank
STABLE_WITHIN = 0.10
#: result kind that nasflow.estimators.cost.remeasure_latency stores
REMEASURED_KIND = "remeasured_latency"
#: CostEvaluator settings shown in the latency section, with their labels, in this order
_LATENCY_SETTINGS = (
    ("runtime", "runtime"),
    ("device", "device"),
    ("batch_size", "batch size"),
    ("threads", "threads"),
    ("warmup", "warm-up calls"),
    ("repeats", "timed repeats (at least)"),
    ("latency_source", "latency source"),
)


@dataclass(frozen=True)
class Series:
    """The first objective of completed trials along one axis, with the best value so far.

    Attributes:
        x: trial numbers, or seconds since the study's first trial started.
        numbers: the trial number of each point.
        values: the objective's value at each point.
        feasible: whether each trial satisfies the constraints.
        best: the best feasible value up to and including each point (NaN before the first).
    """

    x: tuple[float, ...]
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    feasible: tuple[bool, ...]
    best: tuple[float, ...]


@dataclass(frozen=True)
class ChoiceFrequencies:
    """How often each choice of one decision (or of a pool of alike decisions) was taken.

    Decisions that offer exactly the same choices (e.g. the six edges of an NB201 cell) are pooled:
    a count is then over every (trial, decision) pair.

    Attributes:
        label: the decision's name, or a short description of the pooled decisions.
        decisions: the decisions counted.
        choices: the allowed values, in the space's order.
        top_counts: counts among the good (top-ranked) trials.
        all_counts: counts among every completed trial.
    """

    label: str
    decisions: tuple[str, ...]
    choices: tuple[Choice, ...]
    top_counts: tuple[int, ...]
    all_counts: tuple[int, ...]

    @property
    def top(self) -> tuple[float, ...]:
        """Fractions among the good trials (sum to 1 unless there are none)."""
        return _fractions(self.top_counts)

    @property
    def all(self) -> tuple[float, ...]:
        """Fractions among every completed trial."""
        return _fractions(self.all_counts)

    @property
    def shift(self) -> float:
        """Total variation distance between the two distributions (0: same, 1: disjoint)."""
        return 0.5 * sum(abs(a - b) for a, b in zip(self.top, self.all))


@dataclass(frozen=True)
class HypervolumeCurve:
    """Hypervolume of the feasible completed trials found so far, after each trial.

    ``reference`` is in the objectives' own units and directions (the worst corner of the box).
    """

    numbers: tuple[int, ...]
    values: tuple[float, ...]
    reference: tuple[float, ...]


@dataclass(frozen=True)
class Summary:
    """The report's first section."""

    name: str
    space: str
    strategy: str
    evaluator: str
    objectives: tuple[str, ...]
    constraints: tuple[str, ...]
    seed: int
    counts: dict[str, int]
    total_seconds: float | None
    mean_seconds: float | None
    wall_seconds: float | None
    best: FrozenTrial | None
    best_note: str | None
    failures: tuple[FrozenTrial, ...]


@dataclass(frozen=True)
class Remeasurement:
    """One row of a stored latency re-measurement: a trial's recorded and fresh ``latency_ms``.

    Attributes:
        trial: the trial's number.
        arch_str: its architecture string (None when the trial is not in the study).
        recorded_ms: ``latency_ms`` stored with the trial during the search.
        remeasured_ms: the fresh measurement after the search.
        feasible: whether every constraint held with the fresh value (None when not recorded).
    """

    trial: int
    arch_str: str | None
    recorded_ms: float | None
    remeasured_ms: float | None
    feasible: bool | None

    @property
    def difference(self) -> float | None:
        """``|remeasured - recorded| / recorded`` as a fraction; None unless both are known, recorded > 0."""
        if self.recorded_ms is None or self.remeasured_ms is None or not self.recorded_ms > 0:
            return None
        return abs(self.remeasured_ms - self.recorded_ms) / self.recorded_ms


@dataclass(frozen=True)
class LatencyStability:
    """How stable the study's latency measurements are: settings, spread within one, and repeats.

    Attributes:
        settings: (label, value) of the measurement settings the stored study config records.
        source: ``"measured"`` or ``"predicted"`` when the config records it, else None.
        spread_trials: trials whose metrics hold ``latency_spread``.
        spread_median, spread_max: median and largest ``latency_spread`` over them (None without any).
        spread_max_trial: the trial with the largest spread.
        remeasurements: every row of every stored ``remeasured_latency`` result, oldest first.
        results: how many ``remeasured_latency`` results were stored.
        predicted_results: how many of them re-measured a predicted (look-up table) latency.
    """

    settings: tuple[tuple[str, Any], ...]
    source: str | None
    spread_trials: int
    spread_median: float | None
    spread_max: float | None
    spread_max_trial: int | None
    remeasurements: tuple[Remeasurement, ...]
    results: int
    predicted_results: int = 0

    @property
    def compared(self) -> list[Remeasurement]:
        """The rows with a relative difference (both numbers known, recorded > 0)."""
        return [r for r in self.remeasurements if r.difference is not None]

    def within(self, tolerance: float = STABLE_WITHIN) -> int:
        """How many compared rows differ from the recorded latency by less than ``tolerance``."""
        return sum(1 for r in self.compared if r.difference is not None and r.difference < tolerance)

    @property
    def max_difference(self) -> float | None:
        """The largest relative difference among the compared rows."""
        return max((r.difference for r in self.compared if r.difference is not None), default=None)


@dataclass
class ReportData:
    """Everything the report shows, computed once from a study."""

    summary: Summary
    objectives: list[Objective]
    space: DecisionSpace | None
    trials: list[FrozenTrial]
    completed: list[FrozenTrial]
    ranked: list[FrozenTrial]
    top: list[FrozenTrial]
    by_number: Series
    by_time: Series | None
    front: list[FrozenTrial]
    hypervolume: HypervolumeCurve | None
    hypervolume_note: str | None
    frequencies: list[ChoiceFrequencies]
    good_trials: int
    cards: list[dict[str, Any]] = field(default_factory=list)
    latency: LatencyStability | None = None

    @property
    def first(self) -> Objective:
        return self.objectives[0]


# -- pure helpers ----------------------------------------------------------------------------
def best_so_far(
    values: Sequence[float], objective: Objective, feasible: Sequence[bool] | None = None
) -> list[float]:
    """The best feasible value among ``values[: i + 1]`` for every ``i`` (NaN before the first one)."""
    best = math.nan
    result = []
    for i, value in enumerate(values):
        if feasible is None or feasible[i]:
            if math.isnan(best) or objective.oriented(value) > objective.oriented(best):
                best = value
        result.append(best)
    return result


def completed_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials that have objective values, in trial-number order."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and t.values is not None]
    return sorted(done, key=lambda t: t.number)


def rank_trials(trials: Sequence[FrozenTrial], objectives: Sequence[Objective]) -> list[FrozenTrial]:
    """Completed trials best first: feasible (less violation) first, then the first objective, then number."""
    first = objectives[0]
    return sorted(
        completed_trials(trials),
        key=lambda t: (t.violation, -first.oriented(t.values[0]), t.number),  # type: ignore[index]
    )


def _series(points: list[tuple[float, FrozenTrial]], objective: Objective) -> Series:
    values = [t.values[0] for _, t in points]  # type: ignore[index]
    feasible = [t.feasible for _, t in points]
    return Series(
        x=tuple(x for x, _ in points),
        numbers=tuple(t.number for _, t in points),
        values=tuple(values),
        feasible=tuple(feasible),
        best=tuple(best_so_far(values, objective, feasible)),
    )


def trajectory_by_number(trials: Sequence[FrozenTrial], objective: Objective) -> Series:
    """First-objective values and the best so far against trial number."""
    return _series([(float(t.number), t) for t in completed_trials(trials)], objective)


def trajectory_by_time(trials: Sequence[FrozenTrial], objective: Objective) -> Series | None:
    """Values and best so far against seconds from the first trial's start to each trial's finish.

    Trials are taken in the order their results arrived, which differs from trial numbers when trials
    ran in parallel. None when the trials carry no times.
    """
    starts = [t.started_at for t in trials if t.started_at is not None]
    if not starts:
        return None
    origin: datetime = min(starts)
    points = [
        ((t.finished_at - origin).total_seconds(), t)
        for t in completed_trials(trials)
        if t.finished_at is not None
    ]
    if not points:
        return None
    points.sort(key=lambda p: (p[0], p[1].number))
    return _series(points, objective)


def _fractions(counts: Sequence[int]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(c / total if total else 0.0 for c in counts)


def _key(value: Any) -> str:
    # JSON text tells 1, 1.0, True and "1" apart, as the space's own value index does
    return json.dumps(value)


def _pool_label(names: Sequence[str]) -> str:
    """A short name for pooled decisions: the names, or a pattern such as ``*_node2_input_*``."""
    if len(names) == 1:
        return names[0]
    if len(names) <= _LABEL_NAMES and sum(map(len, names)) <= 36:
        return ", ".join(names)
    # names made of the same number of _-separated parts: keep the parts they share, star the others
    parts = [name.split("_") for name in names]
    if len({len(p) for p in parts}) == 1:
        pattern = ["*" if len({p[i] for p in parts}) > 1 else parts[0][i] for i in range(len(parts[0]))]
        if any(token != "*" for token in pattern):
            return f"{'_'.join(pattern)} ({len(names)} decisions)"
    return f"{names[0]}, {names[1]}, …, {names[-1]} ({len(names)} decisions)"


def observed_decisions(trials: Sequence[FrozenTrial]) -> dict[str, tuple[Choice, ...]]:
    """Decisions and the values seen in ``trials``, for studies whose space cannot be rebuilt."""
    decisions: dict[str, dict[str, Choice]] = {}
    for trial in trials:
        for name, value in trial.arch.items():
            decisions.setdefault(name, {}).setdefault(_key(value), value)
    return {name: tuple(values.values()) for name, values in decisions.items()}


def choice_frequencies(
    decisions: Mapping[str, Sequence[Choice]],
    all_trials: Sequence[FrozenTrial],
    top_trials: Sequence[FrozenTrial],
) -> list[ChoiceFrequencies]:
    """Counts of every choice among ``top_trials`` and ``all_trials``; alike decisions are pooled.

    Decisions with identical choice lists form one group (in order of their first decision), so a
    cell space reports operation counts over all its edges rather than one panel per edge.
    """
    groups: dict[str, list[str]] = {}
    for name, choices in decisions.items():
        groups.setdefault(_key(list(choices)), []).append(name)
    result = []
    for names in groups.values():
        choices = tuple(decisions[names[0]])
        position = {_key(c): i for i, c in enumerate(choices)}
        top_counts = _count(top_trials, names, position)
        all_counts = _count(all_trials, names, position)
        result.append(ChoiceFrequencies(_pool_label(names), tuple(names), choices, top_counts, all_counts))
    return result


def _count(
    trials: Sequence[FrozenTrial], names: Sequence[str], position: Mapping[str, int]
) -> tuple[int, ...]:
    counts = [0] * len(position)
    for trial in trials:
        for name in names:
            if name in trial.arch and _key(trial.arch[name]) in position:
                counts[position[_key(trial.arch[name])]] += 1
    return tuple(counts)


def good_count(n_completed: int, fraction: float = TOP_FRACTION) -> int:
    """How many of the ranked trials count as good: the top quartile, at least one."""
    return max(1, math.ceil(n_completed * fraction)) if n_completed else 0


def hypervolume_curve(
    trials: Sequence[FrozenTrial], objectives: Sequence[Objective]
) -> tuple[HypervolumeCurve | None, str | None]:
    """Hypervolume of the feasible completed trials among the first k, for every trial k.

    The reference point is the nadir of those trials' front moved 10 % of its range further out
    (``nasflow.objectives.hypervolume.reference_from_trials``). Returns the curve, or None and a
    note saying why there is none.
    """
    ordered = sorted(trials, key=lambda t: t.number)
    if not any(t.feasible for t in completed_trials(ordered)):
        return None, "no completed trial satisfies the constraints, so there is no hypervolume"
    reference = reference_from_trials(ordered, objectives)
    values = hypervolume_trajectory(ordered, objectives, reference)
    return HypervolumeCurve(tuple(t.number for t in ordered), tuple(values), tuple(reference)), None


def lookup(card: Mapping[str, Any], path: str) -> Any:
    """``card["a"]["b"]`` for ``path="a.b"``; None when any level is missing or not a mapping."""
    value: Any = card
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def as_number(value: Any) -> float | None:
    """``value`` as a finite-or-infinite float, or None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def robustness_rows(card: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """The card's ``robustness`` entries as (perturbation, severity, accuracy); malformed ones are dropped."""
    rows = []
    entries = card.get("robustness")
    if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
        return []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        severity, accuracy = as_number(entry.get("severity")), as_number(entry.get("accuracy"))
        if severity is None or accuracy is None:
            continue
        rows.append((str(entry.get("perturbation", "—")), severity, accuracy))
    return rows


def cost_description(description: Any) -> Mapping[str, Any] | None:
    """The recorded CostEvaluator settings within an evaluator's description (searched depth first).

    A CostEvaluator may sit inside another evaluator's description (e.g. as its ``inner``), so every
    nested mapping and list is looked at; the first mapping named ``"cost"`` wins.
    """
    if isinstance(description, Mapping):
        if description.get("name") == "cost":
            return description
        children: Any = description.values()
    elif isinstance(description, Sequence) and not isinstance(description, (str, bytes)):
        children = description
    else:
        return None
    for child in children:
        found = cost_description(child)
        if found is not None:
            return found
    return None


def _measures_latency(cost: Mapping[str, Any] | None) -> bool:
    metrics = cost.get("metrics") if cost is not None else None
    return (
        cost is not None
        and cost.get("latency_source", "measured") == "measured"
        and isinstance(metrics, Sequence)
        and "latency_ms" in metrics
    )


def _remeasurement(row: Mapping[str, Any], arch_strs: Mapping[int, str]) -> Remeasurement | None:
    trial = row.get("trial")
    if isinstance(trial, bool) or not isinstance(trial, int):
        return None
    feasible = row.get("feasible")
    return Remeasurement(
        trial=trial,
        arch_str=arch_strs.get(trial),
        recorded_ms=as_number(row.get("recorded_ms")),
        remeasured_ms=as_number(row.get("remeasured_ms")),
        feasible=feasible if isinstance(feasible, bool) else None,
    )


def latency_stability(
    trials: Sequence[FrozenTrial],
    remeasured: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
) -> LatencyStability | None:
    """How stable the study's measured latencies are; None when its trials hold no measured latency.

    A latency counts as measured when a trial reports ``latency_spread`` (a property of a measurement,
    which a look-up table cannot predict), or when the recorded settings show a CostEvaluator that
    measures ``latency_ms`` (it stores ``latency_spread`` only when asked to).

    Args:
        trials: the study's trials.
        remeasured: payloads of the study's ``remeasured_latency`` results (rows of trial,
            recorded_ms, remeasured_ms, feasible), oldest first.
        config: the study's stored settings (``Study.config``), for the measurement settings.
    """
    if not any(as_number(t.metrics.get("latency_ms")) is not None for t in trials):
        return None
    cost = cost_description((config or {}).get("evaluator"))
    spreads = [
        (value, t.number)
        for t in trials
        if (value := as_number(t.metrics.get("latency_spread"))) is not None and math.isfinite(value)
    ]
    if not spreads and not _measures_latency(cost):
        return None
    recorded = cost or {}
    known = [(key, label) for key, label in _LATENCY_SETTINGS if recorded.get(key) is not None]
    settings = tuple((label, recorded[key]) for key, label in known)
    arch_strs = {t.number: t.arch_str for t in trials}
    rows: list[Remeasurement] = []
    for payload in remeasured:
        entries = payload.get("rows")
        if isinstance(entries, Sequence) and not isinstance(entries, (str, bytes)):
            parsed = (_remeasurement(r, arch_strs) for r in entries if isinstance(r, Mapping))
            rows.extend(r for r in parsed if r is not None)
    widest = max(spreads, default=None)
    source = recorded.get("latency_source")
    return LatencyStability(
        settings=settings,
        source=str(source) if source is not None else None,
        spread_trials=len(spreads),
        spread_median=statistics.median(v for v, _ in spreads) if spreads else None,
        spread_max=widest[0] if widest else None,
        spread_max_trial=widest[1] if widest else None,
        remeasurements=tuple(rows),
        results=len(remeasured),
        predicted_results=sum(1 for p in remeasured if p.get("source") == "predicted"),
    )


# -- from a study -----------------------------------------------------------------------------
def describe_component(description: Any) -> str:
    """``{"name": "evolution", "population_size": 10}`` as ``evolution (population_size=10)``."""
    if not isinstance(description, Mapping):
        return "—" if description is None else str(description)
    name = str(description.get("name", "—"))
    settings = [f"{k}={_short(v)}" for k, v in description.items() if k != "name"]
    return f"{name} ({', '.join(settings)})" if settings else name


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stored_config(study: Study) -> dict[str, Any]:
    """The settings recorded with the study (empty when they cannot be read)."""
    try:
        return study.config
    except NasflowError:
        return {}


def _component(config: Mapping[str, Any], key: str, live: Any) -> str:
    if key in config:
        return describe_component(config[key])
    if live is not None and hasattr(live, "describe"):
        return describe_component(live.describe())
    return "—"


def summarize(study: Study, trials: Sequence[FrozenTrial]) -> Summary:
    """The summary section: settings, counts by state, times and the best trial."""
    config = stored_config(study)
    counts = {state.value: sum(1 for t in trials if t.state is state) for state in TrialState}
    durations = [t.duration for t in trials if t.state.finished and t.duration is not None]
    starts = [t.started_at for t in trials if t.started_at is not None]
    ends = [t.finished_at for t in trials if t.finished_at is not None]
    best, note = None, None
    if not completed_trials(trials):
        note = "no trial has completed yet"
    else:
        try:
            best = study.best()
        except NasflowError as exc:  # e.g. no completed trial satisfies the constraints
            note = str(exc)
    return Summary(
        name=study.name,
        space=_component(config, "space", study.space),
        strategy=_component(config, "strategy", study.strategy),
        evaluator=_component(config, "evaluator", study.evaluator),
        objectives=tuple(str(o) for o in study.objectives),
        constraints=tuple(str(c) for c in study.constraints),
        seed=study.seed,
        counts=counts,
        total_seconds=sum(durations) if durations else None,
        mean_seconds=sum(durations) / len(durations) if durations else None,
        wall_seconds=(max(ends) - min(starts)).total_seconds() if starts and ends else None,
        best=best,
        best_note=note,
        failures=tuple(t for t in trials if t.error and t.state is not TrialState.COMPLETE)[-3:],
    )


def export_cards(study: Study) -> list[dict[str, Any]]:
    """The model cards stored by ``nasflow export`` (results of kind ``"export"``), oldest first."""
    return [dict(r.payload) for r in study.results("export") if isinstance(r.payload, Mapping)]


def latency_section(study: Study, trials: Sequence[FrozenTrial]) -> LatencyStability | None:
    """The latency-measurement data of ``study`` (None when its trials hold no measured latency)."""
    payloads = [r.payload for r in study.results(REMEASURED_KIND) if isinstance(r.payload, Mapping)]
    return latency_stability(trials, payloads, stored_config(study))


def gather(study: Study, top: int = 10) -> ReportData:
    """Compute everything the report shows from ``study``.

    Args:
        study: a study, e.g. from :func:`nasflow.load_study`.
        top: rows of the top-architectures table.
    """
    trials = study.trials()
    objectives = list(study.objectives)
    completed = completed_trials(trials)
    ranked = rank_trials(trials, objectives)
    good = good_count(len(ranked))
    decisions = dict(study.space.decisions()) if study.space is not None else observed_decisions(trials)
    curve, note = hypervolume_curve(trials, objectives) if len(objectives) >= 2 else (None, None)
    return ReportData(
        summary=summarize(study, trials),
        objectives=objectives,
        space=study.space,
        trials=trials,
        completed=completed,
        ranked=ranked,
        top=ranked[:top],
        by_number=trajectory_by_number(trials, objectives[0]),
        by_time=trajectory_by_time(trials, objectives[0]),
        front=study.pareto_front() if len(objectives) >= 2 else [],
        hypervolume=curve,
        hypervolume_note=note,
        frequencies=choice_frequencies(decisions, completed, ranked[:good]),
        good_trials=good,
        cards=export_cards(study),
        latency=latency_section(study, trials),
    )
