"""Behaviour of the learning strategies: REINFORCE (LSTM controller) and AS-NAS (reinforced evolution)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nasflow as nf
from nasflow.errors import ConfigError
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import NB201Space
from nasflow.strategies.asnas import ASNAS, OPERATORS
from nasflow.strategies.bitstring import BitCodec
from nasflow.strategies.reinforce import ReinforceStrategy
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import drive, synthetic_score
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]


def onemax_space(decisions: int = 12) -> nf.DecisionSpace:
    return nf.DecisionSpace({f"b{i}": [0, 1, 2, 3] for i in range(decisions)})


def onemax(arch: Architecture) -> float:
    return float(sum(v == 0 for v in arch.values()))


def complete(number: int, arch: Architecture, score: float, violation: float = 0.0) -> FrozenTrial:
    return FrozenTrial(
        number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,), violation=violation
    )


def search(
    strategy: nf.Strategy, space: nf.DecisionSpace, steps: int, seed: int, score=onemax
) -> list[float]:
    """Scores of the proposals in order (one ask/tell at a time)."""
    strategy.setup(space, ONE, seed)
    scores = []
    for number in range(steps):
        (arch,) = strategy.ask(1)
        value = score(arch)
        scores.append(value)
        strategy.tell(complete(number, arch, value))
    return scores


# -- REINFORCE ------------------------------------------------------------------------------------
def test_reinforce_policy_moves_toward_rewarded_choices() -> None:
    # One rewarded choice per decision (index 2 of 4); reward = how many decisions pick it.
    space = onemax_space(6)
    target = Architecture({f"b{i}": 2 for i in range(6)})
    per_decision = []
    for seed in range(3):
        strategy = ReinforceStrategy()
        strategy.setup(space, ONE, seed)
        before = math.exp(strategy.log_prob(target) / 6)
        for number in range(60):
            (arch,) = strategy.ask(1)
            strategy.tell(complete(number, arch, float(sum(v == 2 for v in arch.values()))))
        per_decision.append(math.exp(strategy.log_prob(target) / 6))
        assert before == pytest.approx(0.25, abs=0.02)  # starts uniform over 4 choices
    # Geometric mean of the rewarded choices' conditional probabilities: 0.25 when uniform, measured
    # 0.97 / 0.90 / 0.91 after 60 trials.
    assert min(per_decision) > 0.8, per_decision


def test_reinforce_beats_random_on_a_structured_objective() -> None:
    space = onemax_space(8)
    learnt = [max(search(ReinforceStrategy(), space, 80, s)) for s in range(4)]
    random = [max(search(nf.get_strategy("random"), space, 80, s)) for s in range(4)]
    # Measured: the controller reaches 7.75 of 8 on average, random's best of 80 draws 4.5.
    assert np.mean(learnt) >= 7.25, learnt
    assert np.mean(learnt) - np.mean(random) >= 2.5, (learnt, random)


def test_reinforce_resume_reproduces_the_controller_exactly() -> None:
    space = NB201Space()
    probe = space.sample(np.random.default_rng(7))
    straight = ReinforceStrategy(batch_size=3)
    straight.setup(space, ONE, 5)
    drive(straight, 23, ONE)  # 23 tells: a partial batch is pending at the cut
    resumed = ReinforceStrategy(batch_size=3)
    resumed.setup(space, ONE, 99)
    resumed.load_state_dict(json.loads(json.dumps(straight.state_dict())))
    assert resumed.log_prob(probe) == straight.log_prob(probe)
    assert drive(resumed, 10, ONE, start=23) == drive(straight, 10, ONE, start=23)
    assert resumed.log_prob(probe) == straight.log_prob(probe)


def test_reinforce_leaves_global_torch_state_alone() -> None:
    import torch

    threads = torch.get_num_threads()
    before = torch.random.get_rng_state()
    strategy = ReinforceStrategy()
    strategy.setup(NB201Space(), ONE, 0)
    drive(strategy, 10, ONE)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_reinforce_stays_valid_and_unique_on_a_constrained_space() -> None:
    space = constrained_space()
    strategy = ReinforceStrategy(lr=0.2)  # a fast-collapsing policy exercises the fallbacks
    strategy.setup(space, ONE, 3)
    archs = drive(strategy, 60, ONE)
    assert all(space.is_valid(a) for a in archs)
    keys = [space.canonical(a) for a in archs]
    assert len(set(keys)) == len(keys)  # 60 of the space's ~70 distinct networks, none twice


def test_reinforce_learns_from_infeasible_and_unasked_trials() -> None:
    space = onemax_space(4)
    strategy = ReinforceStrategy()
    strategy.setup(space, ONE, 0)
    strategy.tell(complete(0, space.sample(np.random.default_rng(1)), 3.0))  # never asked
    strategy.tell(complete(1, strategy.ask(1)[0], 2.0, violation=5.0))  # infeasible: huge penalty
    strategy.tell(FrozenTrial(2, strategy.ask(1)[0], "", "", TrialState.FAILED))
    # The infeasible reward is replaced by the worst feasible one, so the baseline stays in range.
    assert strategy._baseline == pytest.approx(3.0)
    assert len(strategy.state_dict()["history"]) == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("hidden_size", 0),
        ("lr", 0.0),
        ("baseline_decay", 1.0),
        ("entropy_weight", -0.1),
        ("batch_size", 0),
        ("max_resamples", -1),
    ],
)
def test_reinforce_rejects_bad_settings(setting: str, value: float) -> None:
    with pytest.raises(ConfigError, match=setting):
        ReinforceStrategy(**{setting: value})


def test_reinforce_describe_lists_its_settings() -> None:
    described = nf.get_strategy("reinforce", lr=0.03).describe()
    assert described["name"] == "reinforce" and described["lr"] == 0.03
    assert {"hidden_size", "baseline_decay", "entropy_weight", "normalize_rewards"} <= set(described)


# -- bit strings ----------------------------------------------------------------------------------
def test_codec_round_trips_every_valid_architecture() -> None:
    rng = np.random.default_rng(0)
    for space in (constrained_space(), NB201Space()):
        codec = BitCodec(space)
        for arch in space.enumerate():
            bits = codec.encode(arch)
            assert bits.sum() <= len(space.decisions())
            assert codec.decode(bits, rng) == arch
    assert BitCodec(NB201Space()).length == 24  # six edges x (5 - 1) bits


def test_codec_repairs_every_string_into_a_valid_architecture() -> None:
    space = constrained_space()
    codec = BitCodec(space)
    rng = np.random.default_rng(1)
    for _ in range(500):
        bits = (rng.random(codec.length) < 0.5).astype(np.uint8)
        assert space.is_valid(codec.decode(bits, rng))


def test_codec_counts_active_edges_of_nb201() -> None:
    space = NB201Space()
    codec = BitCodec(space)
    arch = space.parse("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    assert codec.active(arch) == 3


# -- AS-NAS ---------------------------------------------------------------------------------------
def test_asnas_action_values_move_toward_the_improving_operator() -> None:
    # Rigged: only children of "turnover" improve (each one beats everything before it).
    for seed in range(3):
        strategy = ASNAS(population_size=10)
        strategy.setup(onemax_space(), ONE, seed)
        for number in range(120):
            (arch,) = strategy.ask(1)
            score = float(number) if strategy.origin(arch) == "turnover" else -1.0
            strategy.tell(complete(number, arch, score))
        values = strategy.operator_values()
        probabilities = strategy.operator_probabilities()
        assert values["turnover"] > 0.8, values
        assert all(values[o] < 0 for o in OPERATORS if o != "turnover"), values
        assert probabilities["turnover"] > 0.8, probabilities


def test_asnas_children_are_valid_and_new_on_a_constrained_space() -> None:
    space = constrained_space()
    strategy = ASNAS(population_size=6, tournament_size=3)
    strategy.setup(space, ONE, 2)
    archs = drive(strategy, 60, ONE)
    assert all(space.is_valid(a) for a in archs)
    keys = [space.canonical(a) for a in archs]
    assert len(set(keys)) == len(keys)
    assert sum(strategy._uses) > 0  # the operators, not only fallbacks, produced children


def test_asnas_beats_random_on_a_structured_objective() -> None:
    space = onemax_space()
    evolved = [max(search(ASNAS(), space, 200, s)) for s in range(5)]
    random = [max(search(nf.get_strategy("random"), space, 200, s)) for s in range(5)]
    assert np.mean(evolved) >= 11.0, evolved
    assert np.mean(evolved) - np.mean(random) >= 3.0, (evolved, random)


def test_asnas_sparsity_pressure_lowers_the_number_of_active_bits() -> None:
    space = onemax_space()  # 12 decisions x 4 choices: 36 bits, 9 ones on average when uniform
    codec = BitCodec(space)

    def active_bits(weight: float, seed: int) -> float:
        strategy = ASNAS(sparsity_weight=weight)
        search(strategy, space, 120, seed, score=lambda a: synthetic_score(a) / 10)  # fitness in [0, 10)
        return float(np.mean([codec.active(m.arch) for m in strategy._population]))

    dense = [active_bits(0.0, s) for s in range(3)]
    sparse = [active_bits(2.0, s) for s in range(3)]
    # Measured: ~9.6 ones per survivor without pressure, ~5.7 with 2 per one.
    assert np.mean(dense) > 8.5, dense
    assert np.mean(dense) - np.mean(sparse) > 3.0, (dense, sparse)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("population_size", 1),
        ("tournament_size", 0),
        ("temperature", 0.0),
        ("q_step", 1.5),
        ("sparsity_weight", -1.0),
        ("survivor", "youngest"),
    ],
)
def test_asnas_rejects_bad_settings(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        ASNAS(**{setting: value})  # type: ignore[arg-type]
