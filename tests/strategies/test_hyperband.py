"""Hyperband and BOHB: rung structure, promotions, parallel asks, failures, resume and a real study."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

import nasflow as nf
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy, Suggestion
from nasflow.strategies.hyperband import BOHB, Hyperband
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import drive
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]
#: fidelities of one full Hyperband cycle for eta=3, min_resource=1, max_resource=9, told one by one
CYCLE = [1.0] * 9 + [3.0] * 3 + [9.0] + [3.0] * 5 + [9.0] + [9.0] * 3


def space8() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"d{i}": [0, 1, 2, 3] for i in range(8)})


def quality(arch: Architecture) -> float:
    """True quality: how many decisions are 0 (in [0, 8])."""
    return float(sum(v == 0 for v in arch.values()))


def noise(arch: Architecture, epochs: float) -> float:
    """Fixed pseudo-random noise per (architecture, budget) that shrinks with the budget."""
    digest = hashlib.sha256(f"{arch.to_json()}|{epochs}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") / 2**64 - 0.5) * 6.0 / epochs


def observed(arch: Architecture, epochs: float) -> float:
    return quality(arch) + noise(arch, epochs)


def tell(strategy: Strategy, number: int, proposal: Suggestion, failed: bool = False) -> None:
    epochs = proposal.fidelity["epochs"]
    score = observed(proposal.arch, epochs)
    strategy.tell(
        FrozenTrial(
            number,
            proposal.arch,
            "",
            "",
            TrialState.FAILED if failed else TrialState.COMPLETE,
            {} if failed else {"accuracy": score},
            None if failed else (score,),
            fidelity=dict(proposal.fidelity),
        )
    )


def sequential(strategy: Strategy, steps: int, start: int = 0) -> list[Suggestion]:
    proposals = []
    for number in range(start, start + steps):
        (proposal,) = strategy.ask(1)
        tell(strategy, number, proposal)
        proposals.append(proposal)
    return proposals


def fresh(strategy: Strategy, seed: int = 0, space: nf.DecisionSpace | None = None) -> Strategy:
    strategy.setup(space or space8(), ONE, seed)
    return strategy


# -- the schedule --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Hyperband, BOHB])
def test_fidelity_sequence_of_two_cycles_is_exact(cls: type[Hyperband]) -> None:
    proposals = sequential(fresh(cls()), 2 * len(CYCLE))
    assert [p.fidelity for p in proposals] == [{"epochs": f} for f in CYCLE + CYCLE]


def test_bracket_sizes_follow_li_et_al() -> None:
    assert [Hyperband().bracket_rungs(b) for b in range(3)] == [
        [(9, 1.0), (3, 3.0), (1, 9.0)],
        [(5, 3.0), (1, 9.0)],
        [(3, 9.0)],
    ]
    # R = 27, eta = 3: the table of the Hyperband paper
    wide = Hyperband(min_resource=1, max_resource=27)
    sizes = [[n for n, _ in wide.bracket_rungs(b)] for b in range(4)]
    assert sizes == [[27, 9, 3, 1], [12, 4, 1], [6, 2], [4]]
    assert wide.bracket_rungs(4) == wide.bracket_rungs(0)  # the cycle repeats
    # whole budgets when both bounds are integers; exact fractions otherwise
    assert Hyperband(min_resource=1, max_resource=10).budgets == [1.0, 3.0, 10.0]
    fractions = Hyperband(resource="data_fraction", min_resource=0.1, max_resource=1.0).budgets
    assert fractions == pytest.approx([1 / 9, 1 / 3, 1.0]) and fractions[-1] == 1.0
    assert Hyperband(min_resource=4, max_resource=4).bracket_rungs(0) == [(1, 4.0)]


def test_promotions_take_the_best_of_each_rung() -> None:
    strategy = fresh(Hyperband())
    proposals = sequential(strategy, len(CYCLE))
    first, second, top = proposals[:9], proposals[9:12], proposals[12]
    ranked = sorted(first, key=lambda p: -observed(p.arch, 1.0))
    assert [p.arch for p in second] == [p.arch for p in ranked[:3]]  # best first
    assert top.arch == max(second, key=lambda p: observed(p.arch, 3.0)).arch
    bracket2 = proposals[13:18]
    assert proposals[18].arch == max(bracket2, key=lambda p: observed(p.arch, 3.0)).arch
    # new architectures are never repeats; promoted ones are the same architectures again
    new = first + bracket2 + proposals[19:22]
    assert len({p.arch for p in new}) == len(new)


def test_parallel_asks_open_the_next_bracket_instead_of_waiting() -> None:
    strategy = fresh(Hyperband())
    batch = strategy.ask(12)
    assert [p.fidelity["epochs"] for p in batch] == [1.0] * 9 + [3.0] * 3
    for number, proposal in enumerate(batch[::-1]):  # results come back in any order
        tell(strategy, number, proposal)
    follow = strategy.ask(4)
    promoted = sorted(batch[:9], key=lambda p: -observed(p.arch, 1.0))[:3]
    assert [p.arch for p in follow[:3]] == [p.arch for p in promoted]  # oldest bracket first
    assert [p.fidelity["epochs"] for p in follow] == [3.0] * 4
    assert follow[3].arch not in {p.arch for p in batch}  # bracket 2's fourth new architecture


def test_workers_never_idle_even_when_no_result_ever_returns() -> None:
    strategy = fresh(Hyperband())
    proposals = strategy.ask(60)
    assert len(proposals) == 60
    assert len({p.arch for p in proposals}) == 60  # only new architectures: nothing was promoted


def test_failed_trials_are_never_promoted_and_do_not_stall_the_search() -> None:
    strategy = fresh(Hyperband())
    first = strategy.ask(9)
    failing = {p.arch for p in first[:7]}
    for number, proposal in enumerate(first):
        tell(strategy, number, proposal, failed=proposal.arch in failing)
    survivors = strategy.ask(2)
    assert {p.arch for p in survivors} == {p.arch for p in first[7:]}
    assert all(p.fidelity["epochs"] == 3.0 for p in survivors)
    # a rung where everything fails ends its bracket; the search goes on with the next one
    for number, proposal in enumerate(survivors, start=9):
        tell(strategy, number, proposal, failed=True)
    nxt = strategy.ask(1)[0]
    assert nxt.fidelity["epochs"] == 3.0 and nxt.arch not in {p.arch for p in first}
    for number in range(11, 60):
        (proposal,) = strategy.ask(1)
        tell(strategy, number, proposal, failed=True)
    assert len(strategy.ask(5)) == 5


def test_unknown_and_duplicate_results_are_ignored() -> None:
    strategy = fresh(Hyperband())
    (proposal,) = strategy.ask(1)
    stranger = Suggestion(space8().sample(np.random.default_rng(99)), {"epochs": 1.0})
    tell(strategy, 0, stranger)
    tell(strategy, 1, proposal)
    tell(strategy, 2, proposal)  # reported twice: the second report matches nothing
    assert [p.fidelity["epochs"] for p in sequential(strategy, len(CYCLE) - 1, start=3)] == CYCLE[1:]


# -- state ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Hyperband, BOHB])
@pytest.mark.parametrize("head", [5, 10, 16, 30])
def test_resume_mid_bracket_continues_exactly(cls: type[Hyperband], head: int) -> None:
    whole = sequential(fresh(cls(), seed=3), 60)
    stopped = fresh(cls(), seed=3)
    sequential(stopped, head)
    state = json.loads(json.dumps(stopped.state_dict()))
    resumed = fresh(cls(), seed=12345)
    resumed.load_state_dict(state)
    assert sequential(resumed, 60 - head, start=head) == whole[head:]


def test_jobs_cut_off_by_an_interruption_are_handed_out_again() -> None:
    strategy = fresh(Hyperband())
    sequential(strategy, 4)
    in_flight = strategy.ask(3)  # the process dies while these run; the study never reports them
    resumed = fresh(Hyperband(), seed=1)
    resumed.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    again = resumed.ask(3)
    assert again == in_flight
    for number, proposal in enumerate(again, start=4):
        tell(resumed, number, proposal)
    assert [p.fidelity["epochs"] for p in sequential(resumed, 10, start=7)] == CYCLE[7:17]


@pytest.mark.parametrize("cls", [Hyperband, BOHB])
def test_constrained_space_two_objectives_batches_and_failures_stay_valid(cls: type[Hyperband]) -> None:
    space = constrained_space()
    two = [Objective("accuracy", "max"), Objective("params", "min")]
    strategy = cls()
    strategy.setup(space, two, 0)
    proposals = drive(strategy, 100, two, batch=3, fail_every=5)
    assert all(isinstance(p, Suggestion) and space.is_valid(p.arch) for p in proposals)
    assert {p.fidelity["epochs"] for p in proposals} == {1.0, 3.0, 9.0}


# -- search quality -------------------------------------------------------------------------------
def run_for_epochs(strategy: Strategy, epochs: float, seed: int) -> float:
    """True quality of the best architecture evaluated at full budget within ``epochs`` of training."""
    strategy.setup(space8(), ONE, seed)
    spent, best, best_seen, number = 0.0, -math.inf, -math.inf, 0
    while spent < epochs:
        (proposal,) = strategy.ask(1)
        budget = proposal.fidelity["epochs"] if isinstance(proposal, Suggestion) else 9.0
        arch = proposal.arch if isinstance(proposal, Suggestion) else proposal
        spent += budget
        if budget == 9.0 and observed(arch, 9.0) > best_seen:
            best_seen, best = observed(arch, 9.0), quality(arch)
        tell(strategy, number, Suggestion(arch, {"epochs": budget}))
        number += 1
    return best


def test_hyperband_beats_full_budget_random_search_for_the_same_epochs() -> None:
    seeds = range(10)
    hyperband = [run_for_epochs(Hyperband(), 4 * 78, s) for s in seeds]
    random = [run_for_epochs(nf.get_strategy("random"), 4 * 78, s) for s in seeds]
    # random affords ~35 full evaluations; Hyperband screens ~70 architectures cheaply
    assert np.mean(hyperband) - np.mean(random) >= 0.5


def test_bohb_model_beats_hyperband_once_it_has_data() -> None:
    seeds = range(6)
    bohb = [run_for_epochs(BOHB(), 6 * 78, s) for s in seeds]
    hyperband = [run_for_epochs(Hyperband(), 6 * 78, s) for s in seeds]
    # six Hyperband cycles: BOHB's later brackets sample near the good architectures (about 7 of 8
    # decisions right against about 5 for Hyperband's random ones)
    assert np.mean(bohb) - np.mean(hyperband) >= 1.0


def test_bohb_density_ratio_prefers_the_values_of_good_architectures() -> None:
    space = space8()
    strategy = fresh(BOHB(random_fraction=0.0, min_resource=9, max_resource=9), space=space)
    rng = np.random.default_rng(0)
    for number in range(40):
        arch = space.sample(rng)
        score = quality(arch)
        strategy.tell(complete(number, arch, score))
    picks = [strategy.ask(1)[0].arch for _ in range(10)]
    random = [space.sample(rng) for _ in range(200)]
    # good ones have about 4 of 8 decisions right, random ones 2
    assert np.mean([quality(a) for a in picks]) >= np.mean([quality(a) for a in random]) + 1.5


def test_bohb_log_density_matches_the_product_kernel_formula() -> None:
    space = nf.DecisionSpace({"a": [0, 1, 2], "b": ["x", "y"], "c": [True]})
    strategy = fresh(BOHB(bandwidth=0.3), space=space)
    data = np.array([[0, 0, 0], [2, 1, 0]])
    codes = np.array([[0, 1, 0], [1, 1, 0]])

    def kernel(x: int, y: int, size: int) -> float:
        spread = min(0.3, (size - 1) / size)
        return 1 - spread if x == y else spread / (size - 1)

    expected = [
        math.log(np.mean([np.prod([kernel(c[j], d[j], s) for j, s in enumerate([3, 2, 1])]) for d in data]))
        for c in codes
    ]
    assert strategy._log_density(codes, data) == pytest.approx(expected)


def complete(number: int, arch: Architecture, score: float, epochs: float = 9.0) -> FrozenTrial:
    return FrozenTrial(
        number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,), fidelity={"epochs": epochs}
    )


# -- a real study --------------------------------------------------------------------------------
class EpochsEvaluator(nf.Evaluator):
    """Reads the budget from ``context.fidelity`` like a training evaluator would."""

    name = "epochs-probe"

    def evaluate(self, arch: Architecture, context: nf.EvalContext) -> nf.Measurement:
        epochs = float(context.fidelity["epochs"])
        return nf.Measurement({"accuracy": observed(arch, epochs), "epochs_seen": epochs})


@pytest.mark.parametrize("name", ["hyperband", "bohb"])
def test_a_study_records_every_rungs_fidelity(tmp_path, name: str) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    study = nf.create_study(
        space=space8(), strategy=name, evaluator=EpochsEvaluator(), storage=url, name="hb", seed=0
    )
    study.optimize(budget=len(CYCLE) + 4)
    trials = nf.load_study("hb", storage=url).trials()  # read back from the database
    assert [t.fidelity for t in trials] == [{"epochs": f} for f in CYCLE + CYCLE[:4]]
    assert all(t.metrics["epochs_seen"] == t.fidelity["epochs"] for t in trials)
    assert trials[12].arch in {t.arch for t in trials[9:12]}  # the 9-epoch run is a promoted one


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("resource", ""),
        ("min_resource", 0),
        ("min_resource", "1"),
        ("max_resource", 0.5),
        ("eta", 1.5),
        ("eta", math.inf),
    ],
)
def test_bad_schedule_settings_raise_config_error(setting: str, value: object) -> None:
    with pytest.raises(nf.ConfigError, match=setting):
        Hyperband(**{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("random_fraction", -0.1),
        ("random_fraction", 1.5),
        ("top_fraction", 0.0),
        ("top_fraction", 1.0),
        ("candidates", 0),
        ("bandwidth", 0.0),
        ("min_points", 0),
    ],
)
def test_bad_bohb_settings_raise_config_error(setting: str, value: object) -> None:
    with pytest.raises(nf.ConfigError, match=setting):
        BOHB(**{setting: value})  # type: ignore[arg-type]


def test_registered_and_described() -> None:
    assert nf.get_strategy("hyperband").describe() == {
        "name": "hyperband",
        "resource": "epochs",
        "min_resource": 1,
        "max_resource": 9,
        "eta": 3,
    }
    bohb = nf.get_strategy("bohb", resource="data_fraction", min_resource=0.25, max_resource=1.0)
    assert bohb.describe()["resource"] == "data_fraction" and bohb.describe()["random_fraction"] == 1 / 3
