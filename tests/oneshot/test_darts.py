"""DARTS, DARTS+, FairDARTS and GDAS: relaxations, gradients, stopping and derivation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from nasflow import catalog
from nasflow.errors import ConfigError, NasflowError
from nasflow.oneshot import DARTS, GDAS, DARTSPlus, FairDARTS, OneShotResult
from nasflow.oneshot.darts import early_stop_reason, learnable_ops, zero_one_loss
from nasflow.oneshot.nb201_supernet import NB201Supernet
from nasflow.ops.nb201 import NB201_OPS
from nasflow.space.nb201 import EDGE_NAMES, NB201Space

SKIP, CONV3 = NB201_OPS.index("skip_connect"), NB201_OPS.index("nor_conv_3x3")


def _set_alphas(search: DARTS, rows: list[list[float]]) -> None:
    with torch.no_grad():
        search.alphas.copy_(torch.tensor(rows, dtype=torch.float32))


def test_darts_mixing_weights_are_the_softmax_of_hand_set_alphas(tiny_task, tiny_space, tiny) -> None:
    search = DARTS(space=tiny_space, seed=0, **tiny)
    search.prepare(tiny_task)
    # softmax of log(1, 2, 3, 4, 10) is (1, 2, 3, 4, 10) / 20
    _set_alphas(search, [list(np.log([1.0, 2.0, 3.0, 4.0, 10.0]))] * 6)
    weights = search.mixing_weights()
    assert torch.allclose(weights, torch.tensor([[0.05, 0.1, 0.15, 0.2, 0.5]] * 6), atol=1e-6)
    assert torch.allclose(weights.sum(dim=1), torch.ones(6))
    # the first edge of the first cell really mixes with these weights
    edge = search.supernet.cells[0].edges[0]
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    by_hand = sum(w * op(x) for w, op in zip([0.05, 0.1, 0.15, 0.2, 0.5], edge.ops))
    assert torch.allclose(edge(x, weights=weights[0]), by_hand, atol=1e-6)


def test_derive_picks_the_argmax_per_edge_for_hand_set_alphas(tiny_task, tiny_space, tiny) -> None:
    search = DARTS(space=tiny_space, seed=0, **tiny)
    search.prepare(tiny_task)
    picks = ["nor_conv_1x1", "skip_connect", "none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect"]
    rows = [[0.0] * 5 for _ in range(6)]
    for row, op in zip(rows, picks):
        row[NB201_OPS.index(op)] = 1.5
    _set_alphas(search, rows)
    arch = search.current_arch()
    assert [arch[name] for name in EDGE_NAMES] == picks


def test_fairdarts_zero_one_loss_for_hand_set_alphas(tiny_task, tiny_space, tiny) -> None:
    assert float(zero_one_loss(torch.full((3, 4), 0.5))) == 0.0
    # sigmoid(log 3) = 0.75 and sigmoid(-log 3) = 0.25: every term is 0.25^2
    assert float(zero_one_loss(torch.tensor([0.75, 0.25]))) == pytest.approx(-0.0625)
    search = FairDARTS(space=tiny_space, seed=0, zero_one_weight=10.0, **tiny)
    search.prepare(tiny_task)
    rows = [[50.0, math.log(3), -math.log(3), math.log(3), -math.log(3)]] * 6
    _set_alphas(search, rows)
    # "none" has no switch: its alpha (50) changes neither the loss nor the mixing weights
    assert float(search._regulariser().detach()) == pytest.approx(10.0 * -0.0625, abs=1e-6)
    weights = search.mixing_weights()
    assert torch.all(weights[:, 0] == 0.0)
    assert torch.allclose(weights[0, 1:], torch.tensor([0.75, 0.25, 0.75, 0.25]), atol=1e-6)


def test_fairdarts_keeps_an_op_only_above_the_threshold(tiny_task, tiny_space, tiny) -> None:
    search = FairDARTS(space=tiny_space, seed=0, threshold=0.85, **tiny)
    search.prepare(tiny_task)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    above = [0.0, logit(0.2), logit(0.9), logit(0.3), logit(0.1)]  # conv 1x1 at 0.9 > 0.85
    below = [0.0, logit(0.8), logit(0.2), logit(0.6), logit(0.1)]  # best is 0.8 < 0.85: none
    _set_alphas(search, [above, below, above, below, above, below])
    arch = search.current_arch()
    assert [arch[name] for name in EDGE_NAMES] == ["nor_conv_1x1", "none"] * 3
    # no edge into node 3 reaches the threshold: its strongest one (3<-1, skip at 0.8) stays, so the
    # cell is still connected (an empty output node would compute zeros)
    weak = [0.0, logit(0.6), logit(0.2), logit(0.3), logit(0.1)]
    _set_alphas(search, [above, below, above, weak, below, weak])
    arch = search.current_arch()
    expected = ["nor_conv_1x1", "none", "nor_conv_1x1", "none", "skip_connect", "none"]
    assert [arch[name] for name in EDGE_NAMES] == expected


def test_gdas_runs_exactly_one_op_per_edge_and_alphas_get_gradients(tiny_task, tiny_space, tiny) -> None:
    search = GDAS(space=tiny_space, seed=0, **tiny)
    search.prepare(tiny_task)
    calls: dict[tuple[int, int], int] = {}
    for c, cell in enumerate(search.supernet.cells):
        for e, edge in enumerate(getattr(cell, "edges", [])):
            for op in edge.ops:
                op.register_forward_hook(lambda *_, key=(c, e): calls.__setitem__(key, calls.get(key, 0) + 1))
    weights, path = search.sample_weights()
    assert all(p is not None for p in path)
    assert torch.allclose(weights.detach().sum(dim=1), torch.ones(6))
    assert sorted(float(v) for v in weights.detach().max(dim=1).values) == pytest.approx([1.0] * 6)
    x, y = torch.as_tensor(tiny_task.x_train[:16]), torch.as_tensor(tiny_task.y_train[:16])
    loss = torch.nn.functional.cross_entropy(search.supernet(x, weights=weights, path=path), y)
    cells = [c for c, cell in enumerate(search.supernet.cells) if hasattr(cell, "edges")]
    assert calls == {(c, e): 1 for c in cells for e in range(6)}
    loss.backward()
    assert search.alphas.grad is not None
    assert bool((search.alphas.grad.abs().sum(dim=1) > 0).all())  # every edge's alphas learn


def test_gdas_samples_follow_the_softmax_and_temperature_anneals(tiny_task, tiny_space) -> None:
    search = GDAS(space=tiny_space, seed=0, epochs=5, tau_max=10.0, tau_min=0.1)
    search.prepare(tiny_task)
    probabilities = [0.5, 0.2, 0.1, 0.1, 0.1]
    _set_alphas(search, [list(np.log(probabilities))] * 6)
    counts = np.zeros(5)
    for _ in range(1000):
        for index in search.sample_weights()[1]:
            counts[index] += 1
    assert np.allclose(counts / counts.sum(), probabilities, atol=0.02)  # Gumbel-max sampling
    assert [search.temperature(e) for e in range(1, 6)] == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])


def test_darts_plus_stops_at_two_skip_connections() -> None:
    supernet = NB201Supernet(NB201Space(channels=4, cells_per_stage=1), (1, 8, 8), 10)

    def weights(skips: int) -> np.ndarray:
        w = np.full((6, 5), 0.1)
        w[:, CONV3] = 0.5
        w[:skips, SKIP] = 0.6
        return w

    history = [weights(0), weights(1)]
    assert early_stop_reason(history, supernet, max_skips=2, patience=10) is None
    history.append(weights(2))
    reason = early_stop_reason(history, supernet, max_skips=2, patience=10)
    assert reason is not None and "2 skip connections" in reason
    assert early_stop_reason(history, supernet, max_skips=3, patience=10) is None


def test_darts_plus_stops_when_the_ranking_of_learnable_ops_is_stable() -> None:
    supernet = NB201Supernet(NB201Space(channels=4, cells_per_stage=1), (1, 8, 8), 10)
    assert learnable_ops(supernet) == [NB201_OPS.index("nor_conv_1x1"), CONV3]
    base = np.full((6, 5), 0.1)
    base[:, CONV3] = 0.5
    moved = base.copy()
    moved[:, CONV3] = 0.6  # the values change, the ranking of the two convolutions does not
    swapped = base.copy()
    swapped[0, NB201_OPS.index("nor_conv_1x1")] = 0.9  # ranking changes on edge 0
    assert early_stop_reason([swapped, base, moved], supernet, patience=2) is None
    reason = early_stop_reason([swapped, base, moved, base], supernet, patience=2)
    assert reason is not None and "not changed for 2 epochs" in reason


def test_darts_plus_fit_stops_early_and_reports_why(tiny_task, tiny_space) -> None:
    search = DARTSPlus(space=tiny_space, seed=0, epochs=6, patience=1, batch_size=96, bn_examples=64)
    result = search.fit(tiny_task)
    assert result.stopped_early is not None
    assert len(result.epochs) < 6
    assert result.arch_str == result.epochs[-1].arch


def _smooth(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Tanh())
        else:
            _smooth(child)


def test_second_order_gradient_matches_the_exact_unrolled_gradient(tiny_task, tiny) -> None:
    """The paper's finite-difference Hessian-vector product against exact double backprop.

    Finite differences need a smooth loss: on a 2-channel network ReLU kinks and float32 rounding
    swamp them, so the supernet gets tanh activations and float64 here.
    """
    search = DARTS(space=NB201Space(channels=2, cells_per_stage=1), seed=0, order=2, **tiny)
    search.prepare(tiny_task)
    supernet = search.supernet
    _smooth(supernet)
    supernet.double().train()
    search._x_w, search._x_arch = search._x_w.double(), search._x_arch.double()
    search.alphas.data = search.alphas.data.double()
    names = [n for n, _ in supernet.named_parameters()]
    params = list(supernet.parameters())
    before = [p.detach().clone() for p in params]
    index = torch.arange(32)
    x_arch, y_arch = search._x_arch[:32], search._y_arch[:32]
    search._unrolled_gradient(index, x_arch, y_arch)
    approx = search.alphas.grad.clone()
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # weights restored

    # exact: d/d alpha L_val(w - xi * (grad_w L_train(w, alpha) + wd * w), alpha) by double backprop
    xi, wd = search._learning_rate(), search.weight_decay
    x_train, y_train = search._x_w[index], search._y_w[index]

    def loss(weights, x, y):
        logits = functional_call(
            supernet, dict(zip(names, weights)), (x,), {"weights": search.mixing_weights()}
        )
        return nn.functional.cross_entropy(logits, y)

    grads = torch.autograd.grad(loss(params, x_train, y_train), params, create_graph=True, allow_unused=True)
    unrolled = [p - xi * ((0 if g is None else g) + wd * p) for p, g in zip(params, grads)]
    (exact,) = torch.autograd.grad(loss(unrolled, x_arch, y_arch), [search.alphas])
    detached = [u.detach() for u in unrolled]
    (first_order,) = torch.autograd.grad(loss(detached, x_arch, y_arch), [search.alphas])
    assert torch.allclose(approx, exact, rtol=0.02, atol=2e-5)
    # the Hessian term matters: dropping it is further off than the approximation
    assert (first_order - exact).abs().max() > 5 * (approx - exact).abs().max()


def test_same_seed_same_search_and_json_round_trip(tiny_task, tiny_space, tiny) -> None:
    first = DARTS(space=tiny_space, seed=3, **tiny).fit(tiny_task)
    again = DARTS(space=tiny_space, seed=3, **tiny).fit(tiny_task)
    other = DARTS(space=tiny_space, seed=4, **tiny).fit(tiny_task)
    assert first.arch == again.arch
    assert [e.alphas for e in first.epochs] == [e.alphas for e in again.epochs]
    assert [e.alphas for e in first.epochs] != [e.alphas for e in other.epochs]
    data = json.loads(first.to_json())
    assert OneShotResult.from_dict(data).to_dict() == first.to_dict()
    assert data["choices"]["1<-0"] == list(NB201_OPS)
    for epoch in data["epochs"]:
        assert sorted(epoch["metrics"]) == ["arch_loss", "train_accuracy", "train_loss"]
        assert all(sum(row) == pytest.approx(1.0) for row in epoch["weights"].values())


def test_rank_scores_architectures_with_the_shared_weights(tiny_task, tiny_space, tiny) -> None:
    search = DARTS(space=tiny_space, seed=0, **tiny)
    with pytest.raises(NasflowError, match="call fit"):
        search.derive()
    result = search.fit(tiny_task)
    assert search.derive() == result.arch
    other = tiny_space.parse("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    scores = search.rank([result.arch, other])
    assert scores[0] == pytest.approx(result.score)
    assert all(0.0 <= s <= 100.0 for s in scores) and scores == search.rank([result.arch, other])
    # candidates: every epoch's derived architecture, scored and sorted best first
    assert [c["score"] for c in result.candidates] == sorted(
        (c["score"] for c in result.candidates), reverse=True
    )
    assert result.arch_str in {c["arch_str"] for c in result.candidates}


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("darts", {"order": 3}, "order must be 1"),
        ("gdas", {"order": 2}, "bad options for one-shot search 'gdas'"),
        ("fairdarts", {"threshold": 1.5}, r"threshold must be in \[0.0, 1.0\]"),
        ("darts", {"arch_split": "test"}, "arch_split must be one of"),
        ("darts", {"epochs": 0}, "epochs must be an integer >= 1"),
        ("gdas", {"tau_min": 2.0, "tau_max": 1.0}, "tau_max must be in"),
    ],
)
def test_bad_settings_name_the_field(name: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        catalog.get_oneshot(name, **options)


def test_fit_without_a_space_says_how_to_give_one(tiny_task) -> None:
    with pytest.raises(ConfigError, match="no search space"):
        DARTS().fit(tiny_task)


def test_half_split_trains_alphas_on_the_other_half_of_the_training_data(tiny_task, tiny_space, tiny) -> None:
    search = DARTS(space=tiny_space, seed=0, arch_split="half", **tiny)
    search.prepare(tiny_task)
    assert len(search._y_w) + len(search._y_arch) == len(tiny_task.y_train)
    assert abs(len(search._y_w) - len(search._y_arch)) <= 10  # one example per class at most
