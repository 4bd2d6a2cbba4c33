"""Optuna's own samplers (TPE, NSGA-II) driven through nasflow's ask/tell interface.

Optuna is imported only when one of these strategies is created, so nasflow works without it.
The adapter keeps a private in-memory Optuna study: every nasflow proposal is one Optuna trial with
one categorical parameter per space decision. Its ``state_dict`` holds that study's trials (params,
states, values, system attributes), the study's system attributes and the sampler's random states,
so a resumed search rebuilds the study trial by trial and proposes exactly what an uninterrupted
run would have proposed. This relies on Optuna internals (where samplers keep their
``RandomState``, ``study._storage``); it is tested with Optuna 5.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture, Choice
from nasflow.strategies.base import Strategy
from nasflow.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna

#: constraint key under which a trial's summed violation is stored for Optuna's constrained samplers
CONSTRAINT_KEY = "constraints:violation"
# TPE's constant liar copies each trial's sampled params into system attributes, read only while the
# trial runs (TPESampler._get_params); dropping them from finished trials keeps the state 3x smaller
_RUNNING_ONLY_ATTR = "tpe:relative_params:"
_INSTALL_HINT = "pip install 'nasflow[optuna]'"
# objects of these modules are searched for random states; nothing else is walked
_WALK_PREFIX = "optuna"
_WALK_DEPTH = 4


def import_optuna(strategy: str) -> Any:
    """The ``optuna`` module, or a ConfigError that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            f"strategy {strategy!r} drives Optuna's sampler but Optuna is not installed; "
            f"install it with: {_INSTALL_HINT}"
        ) from None
    return optuna


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's INFO log lines (e.g. 'A new study created') for the duration of a call."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class OptunaAdapter(Strategy):
    """Base of the adapters: maps decisions to categorical parameters and handles state.

    Args:
        max_invalid_retries: proposals that the space rejects (``is_valid`` false) are told to Optuna
            as PRUNED and re-asked up to this many times; after that a random valid architecture is
            proposed instead (and told to Optuna as an extra trial once its result is known).
    """

    name = "optuna"

    def __init__(self, max_invalid_retries: int = 20) -> None:
        if isinstance(max_invalid_retries, bool) or not isinstance(max_invalid_retries, int):
            raise ConfigError(f"max_invalid_retries must be an integer >= 0, got {max_invalid_retries!r}")
        if max_invalid_retries < 0:
            raise ConfigError(f"max_invalid_retries must be an integer >= 0, got {max_invalid_retries}")
        self.max_invalid_retries = max_invalid_retries
        import_optuna(self.name)  # fail at construction, not at the first ask

    @property
    def _optuna(self) -> Any:
        return import_optuna(self.name)

    @abstractmethod
    def _make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """A fresh Optuna sampler with this strategy's settings."""

    # -- setup -----------------------------------------------------------------------------
    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._labels: dict[str, tuple[Choice, ...]] = {}
        self._distributions: dict[str, Any] = {}
        for name, choices in space.decisions().items():
            # Optuna compares choices with ==, which conflates 1, 1.0 and True; text labels never do
            labels = choices if all(isinstance(c, str) for c in choices) else tuple(map(json.dumps, choices))
            self._labels[name] = labels
            self._distributions[name] = self._optuna.distributions.CategoricalDistribution(labels)
        self._index = {
            name: {label: i for i, label in enumerate(labels)} for name, labels in self._labels.items()
        }
        self._new_study(_sampler_seed(seed, self.rng))
        self._records: dict[int, dict[str, Any]] = {}
        # asked and not yet told, in ask order: (Optuna trial number or None for a fallback, arch)
        self._pending: list[tuple[int | None, Architecture]] = []

    def _new_study(self, seed: int) -> None:
        directions = ["maximize" if o.direction == "max" else "minimize" for o in self.objectives]
        with _quiet():
            self._study = self._optuna.create_study(sampler=self._make_sampler(seed), directions=directions)

    # -- mapping ---------------------------------------------------------------------------
    def _arch(self, params: dict[str, Any]) -> Architecture:
        decisions = self.space.decisions()
        return Architecture({k: decisions[k][self._index[k][params[k]]] for k in self._labels})

    def _params(self, arch: Architecture) -> dict[str, Any]:
        decisions = self.space.decisions()
        result = {}
        for name, choices in decisions.items():
            position = [json.dumps(c) for c in choices].index(json.dumps(arch[name]))
            result[name] = self._labels[name][position]
        return result

    # -- asking ----------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        pruned = self._optuna.trial.TrialState.PRUNED
        for _ in range(self.max_invalid_retries + 1):
            trial = self._study.ask(self._distributions)
            arch = self._arch(trial.params)
            if self.space.is_valid(arch):
                self._pending.append((trial.number, arch))
                return arch
            # PRUNED (not FAIL) so that TPE counts the region as bad and moves away from it
            self._study.tell(trial.number, state=pruned)
        arch = self.space.sample(self.rng)
        self._pending.append((None, arch))
        return arch

    # -- telling ---------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        number: int | None = None
        told = _exact(trial.arch)
        for i, (pending_number, arch) in enumerate(self._pending):
            if _exact(arch) == told:
                number = pending_number
                del self._pending[i]
                break
        state, values = self._outcome(trial)
        if number is None:
            self._add_finished(trial.arch, state, values, trial.violation)
            return
        if values is not None:
            storage = self._study._storage
            trial_id = storage.get_trial_id_from_study_id_trial_number(self._study._study_id, number)
            storage.set_trial_system_attr(trial_id, CONSTRAINT_KEY, float(trial.violation))
        self._study.tell(number, values, state=state)

    def _outcome(self, trial: FrozenTrial) -> tuple[Any, list[float] | None]:
        states = self._optuna.trial.TrialState
        if trial.state is TrialState.COMPLETE and trial.values is not None:
            return states.COMPLETE, [float(v) for v in trial.values]
        if trial.state is TrialState.PRUNED:
            return states.PRUNED, None
        return states.FAIL, None

    def _add_finished(
        self, arch: Architecture, state: Any, values: list[float] | None, violation: float
    ) -> None:
        """Record a result Optuna did not propose (a fallback or a trial this strategy never asked for)."""
        if not self.space.is_valid(arch):
            return
        self._study.add_trial(
            self._optuna.trial.create_trial(
                state=state,
                params=self._params(arch),
                distributions=self._distributions,
                values=values,
                system_attrs={CONSTRAINT_KEY: float(violation)} if values is not None else {},
            )
        )

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trials = []
        for t in self._study.get_trials(deepcopy=False):
            record = self._records.get(t.number)
            if record is None:
                finished = t.state.is_finished()
                record = {
                    "state": t.state.name,
                    "params": [self._index[k][t.params[k]] for k in self._labels],
                    "values": t.values,
                    "system_attrs": {
                        k: v
                        for k, v in t.system_attrs.items()
                        if not (finished and k.startswith(_RUNNING_ONLY_ATTR))
                    },
                }
                if finished:  # finished trials never change again: build their record once
                    self._records[t.number] = record
            trials.append(record)
        storage = self._study._storage
        return {
            **super().state_dict(),
            "optuna_version": self._optuna.__version__,
            "trials": trials,
            "study_system_attrs": storage.get_study_system_attrs(self._study._study_id),
            "sampler_random_states": {
                path: _random_state_to_json(rs) for path, rs in _random_states(self._study.sampler)
            },
            "pending": [[number, arch.to_dict()] for number, arch in self._pending],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._new_study(0)  # the seed does not matter: the random states are overwritten below
        self._records = {}
        states = self._optuna.trial.TrialState
        names = list(self._labels)
        for record in state["trials"]:
            params = {names[i]: self._labels[names[i]][j] for i, j in enumerate(record["params"])}
            self._study.add_trial(
                self._optuna.trial.create_trial(
                    state=states[record["state"]],
                    params=params,
                    distributions={k: self._distributions[k] for k in params},
                    values=record["values"],
                    system_attrs=record["system_attrs"],
                )
            )
        storage = self._study._storage
        for key, value in state["study_system_attrs"].items():
            storage.set_study_system_attr(self._study._study_id, key, value)
        saved = state["sampler_random_states"]
        found = dict(_random_states(self._study.sampler))
        if set(found) != set(saved):
            raise ConfigError(
                f"the saved {self.name!r} state does not fit this Optuna version "
                f"({self._optuna.__version__}; saved with {state.get('optuna_version')}): sampler random "
                f"states {sorted(saved)} vs {sorted(found)}"
            )
        for path, random_state in found.items():
            random_state.set_state(_random_state_from_json(saved[path]))
        self._pending = [(number, Architecture(arch)) for number, arch in state["pending"]]


class OptunaTPE(OptunaAdapter):
    """Optuna's Tree-structured Parzen Estimator (``optuna.samplers.TPESampler``).

    Bergstra, Bardenet, Bengio & Kégl 2011, "Algorithms for Hyper-Parameter Optimization"; the
    multivariate variant (Optuna's default for one objective since 5.0) follows Falkner, Klein &
    Hutter 2018 (BOHB). With several objectives Optuna's multi-objective TPE is used (Ozaki et al.
    2020), with the objectives' directions; constraint violations go to Optuna's constrained TPE.

    Args:
        n_startup_trials: random trials before TPE models the results (Optuna's default 10).
        n_ei_candidates: candidates drawn per proposal to maximise the density ratio (24).
        multivariate: joint TPE over all decisions; ``None`` is Optuna's default (multivariate for
            one objective, independent per decision for several).
        constant_liar: treat running trials as bad results so parallel asks spread out (Optuna 5's
            default True).
        max_invalid_retries: see :class:`OptunaAdapter`.
    """

    name = "tpe"

    def __init__(
        self,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
        multivariate: bool | None = None,
        constant_liar: bool = True,
        max_invalid_retries: int = 20,
    ) -> None:
        for label, value in (("n_startup_trials", n_startup_trials), ("n_ei_candidates", n_ei_candidates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (label == "n_ei_candidates"):
                raise ConfigError(
                    f"{label} must be a non-negative integer (n_ei_candidates >= 1), got {value!r}"
                )
        if multivariate not in (None, True, False):
            raise ConfigError(f"multivariate must be true, false or null, got {multivariate!r}")
        if not isinstance(constant_liar, bool):
            raise ConfigError(f"constant_liar must be true or false, got {constant_liar!r}")
        super().__init__(max_invalid_retries)
        self.n_startup_trials = n_startup_trials
        self.n_ei_candidates = n_ei_candidates
        self.multivariate = multivariate
        self.constant_liar = constant_liar

    def _make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return self._optuna.samplers.TPESampler(
            n_startup_trials=self.n_startup_trials,
            n_ei_candidates=self.n_ei_candidates,
            multivariate=self.multivariate,
            constant_liar=self.constant_liar,
            seed=seed,
        )


class OptunaNSGA2(OptunaAdapter):
    """Optuna's NSGA-II genetic algorithm (``optuna.samplers.NSGAIISampler``).

    Deb, Pratap, Agarwal & Meyarivan 2002, "A fast and elitist multiobjective genetic algorithm:
    NSGA-II". Natively multi-objective (non-dominated sorting and crowding distance over the
    objectives' directions); constraint violations use Optuna's constrained domination.

    Args:
        population_size: individuals per generation (Optuna's default 50).
        crossover_prob: probability that a child is a crossover of two parents (0.9).
        swapping_prob: per-decision probability of taking the second parent's choice in uniform
            crossover (0.5).
        mutation_prob: per-decision probability of a random choice in a child; ``None`` means
            ``1 / number of decisions`` (Optuna's default).
        max_invalid_retries: see :class:`OptunaAdapter`.
    """

    name = "optuna-nsga2"

    def __init__(
        self,
        population_size: int = 50,
        crossover_prob: float = 0.9,
        swapping_prob: float = 0.5,
        mutation_prob: float | None = None,
        max_invalid_retries: int = 20,
    ) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"population_size must be an integer >= 2, got {population_size!r}")
        probabilities = (("crossover_prob", crossover_prob), ("swapping_prob", swapping_prob))
        if mutation_prob is not None:
            probabilities += (("mutation_prob", mutation_prob),)
        for label, value in probabilities:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{label} must be a probability between 0 and 1, got {value!r}")
        super().__init__(max_invalid_retries)
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.swapping_prob = swapping_prob
        self.mutation_prob = mutation_prob

    def _make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return self._optuna.samplers.NSGAIISampler(
            population_size=self.population_size,
            crossover_prob=self.crossover_prob,
            swapping_prob=self.swapping_prob,
            mutation_prob=self.mutation_prob,
            seed=seed,
        )


def _exact(arch: Architecture) -> str:
    """A text form that tells 1, 1.0 and True apart (Architecture equality does not)."""
    return json.dumps(arch.to_dict(), sort_keys=True)


# -- random states -------------------------------------------------------------------------------
def _sampler_seed(seed: int | None, rng: np.random.Generator) -> int:
    """The study seed itself where Optuna accepts it, so ``tpe`` with seed s equals plain Optuna with s."""
    if seed is not None and 0 <= seed < 2**32:
        return int(seed)
    return int(rng.integers(2**32))


def _random_states(root: object) -> list[tuple[str, np.random.RandomState]]:
    """Every ``RandomState`` reachable from an Optuna sampler through its attributes, by path.

    Samplers keep them in ``LazyRandomState`` wrappers (the sampler's own and its fallback
    ``RandomSampler``'s); objects shared along several paths are reported once, at their first path.
    """
    found: list[tuple[str, np.random.RandomState]] = []
    visited: set[int] = set()

    def walk(obj: object, path: str, depth: int) -> None:
        if id(obj) in visited or depth > _WALK_DEPTH:
            return
        visited.add(id(obj))
        if isinstance(obj, np.random.RandomState):
            found.append((path, obj))
            return
        if type(obj).__name__ == "LazyRandomState":
            walk(obj.rng, path + ".rng", depth + 1)  # type: ignore[attr-defined]
            return
        if not type(obj).__module__.startswith(_WALK_PREFIX) or not hasattr(obj, "__dict__"):
            return
        for name in sorted(vars(obj)):
            walk(vars(obj)[name], f"{path}.{name}" if path else name, depth + 1)

    walk(root, "", 0)
    return found


def _random_state_to_json(random_state: np.random.RandomState) -> dict[str, Any]:
    state = random_state.get_state(legacy=False)
    return {
        "key": state["state"]["key"].tolist(),
        "pos": int(state["state"]["pos"]),
        "has_gauss": int(state["has_gauss"]),
        "gauss": float(state["gauss"]),
    }


def _random_state_from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": "MT19937",
        "state": {"key": np.array(data["key"], dtype=np.uint32), "pos": int(data["pos"])},
        "has_gauss": int(data["has_gauss"]),
        "gauss": float(data["gauss"]),
    }
