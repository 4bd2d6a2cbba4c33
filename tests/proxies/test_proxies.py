"""Zero-cost proxies: closed-form values on tiny networks, side effects, determinism and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional

from nasflow import proxies
from nasflow.errors import ConfigError, EvaluationError, UnknownNameError
from nasflow.ops.nb201 import Zero
from nasflow.proxies import PROXIES, score
from nasflow.proxies.activation import JACOB_COV_EPS
from nasflow.space.nb201 import NB201Space
from nasflow.tasks import load_task

W = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
X = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny networks gain nothing from threads, and on a busy machine they only wait for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear(weight: torch.Tensor = W, bias: torch.Tensor | None = None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def sum_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``L = sum(outputs)``: dL/dW of a linear layer is then the column sums of the inputs."""
    return outputs.sum()


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def tiny_nb201() -> nn.Module:
    space = NB201Space(channels=4, cells_per_stage=1)
    arch = space.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return space.build(arch, load_task("digits"))


def digits_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    task = load_task("digits")
    return torch.as_tensor(task.x_train[:n]), torch.as_tensor(task.y_train[:n])


# -- closed forms -----------------------------------------------------------------------------------
def test_synflow_of_a_two_layer_linear_net_is_the_product_of_absolute_weights() -> None:
    w1 = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [-1.5, 1.0, 2.0], [2.0, -0.5, 1.0]])
    w2 = torch.tensor([[1.0, -1.0, 2.0, 0.5], [-3.0, 0.25, 1.0, -2.0]])
    norm = nn.BatchNorm1d(4)
    with torch.no_grad():
        norm.running_var.fill_(4.0)  # a normalising BN would divide the flow by 2 ...
        norm.weight.fill_(3.0)  # ... or multiply it by 3; synflow must remove it
    net = nn.Sequential(linear(w1), norm, nn.ReLU(), linear(w2))
    # R = 1' |W2| |W1| 1, and sum |theta * dR/dtheta| over either layer equals R
    r = float(w2.abs().sum(0) @ w1.abs().sum(1))
    # column sums of |W2| [4, 1.25, 3, 2.5] . row sums of |W1| [3.5, 4, 4.5, 3.5]
    assert r == 14 + 5 + 13.5 + 8.75
    value = score("synflow", net, torch.randn(5, 3))
    assert value == pytest.approx(2 * r, rel=1e-12)


def test_snip_and_grad_norm_of_a_linear_layer_by_hand() -> None:
    # dL/dW_ij = sum_n x_nj = [0, 2, 4] for every row; the bias is not scored
    net = linear(bias=torch.tensor([10.0, -10.0]))
    assert score("snip", net, X, torch.zeros(2), loss_fn=sum_loss) == 50.0  # (0+4+12) + (0+10+24)
    assert score("grad_norm", net, X, torch.zeros(2), loss_fn=sum_loss) == pytest.approx(math.sqrt(40))


def test_grad_norm_and_snip_match_autograd_for_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(1)
    net = nn.Linear(5, 3)
    x, y = torch.randn(8, 5, generator=generator), torch.randint(3, (8,), generator=generator)
    (grad,) = torch.autograd.grad(functional.cross_entropy(net(x), y), [net.weight])
    assert score("grad_norm", net, x, y) == pytest.approx(float(grad.norm()), rel=1e-6)
    expected = float((grad * net.weight.detach()).abs().sum())
    assert score("snip", net, x, y) == pytest.approx(expected, rel=1e-6)


def test_grasp_equals_minus_theta_times_explicit_hessian_times_gradient() -> None:
    generator = torch.Generator().manual_seed(2)
    net = nn.Linear(4, 3, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(3, 4, generator=generator, dtype=torch.float64))
    x = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(3, (6,), generator=generator)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(x @ flat.reshape(3, 4).T, y)

    flat = net.weight.detach().flatten()
    hessian = torch.autograd.functional.hessian(loss, flat)
    grad = torch.autograd.functional.jacobian(loss, flat)
    expected = float(-(flat * (hessian @ grad)).sum())
    assert expected != 0.0
    assert score("grasp", net, x, y) == pytest.approx(expected, rel=1e-9)


def test_fisher_of_a_linear_layer_by_hand() -> None:
    # a = W x + b = [[7, -13], [3, -3]]; with L = sum(a * y), dL/da = y, so the per-channel saliency is
    # 1/2 * mean_n (a_nk y_nk)^2 = 1/2 * [(49 + 2.25) / 2, (676 + 9) / 2] = [12.8125, 171.25]
    net = linear(bias=torch.tensor([1.0, -1.0]))
    y = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    value = score("fisher", net, X, y, loss_fn=lambda out, target: (out * target).sum())
    assert value == 184.0625


def test_fisher_sums_convolution_outputs_over_space_per_channel() -> None:
    generator = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(2, 3, 1, bias=False)
    x, y = torch.randn(4, 2, 3, 3, generator=generator), torch.randn(4, 3, 3, 3, generator=generator)
    # with L = sum(a * y), dL/da = y
    expected = 0.5 * ((conv(x).detach() * y).sum((2, 3)) ** 2).mean(0).sum()
    value = score("fisher", conv, x, y, loss_fn=lambda out, target: (out * target).sum())
    assert value == pytest.approx(float(expected), rel=1e-6)


def test_naswot_counts_agreeing_relu_units_across_the_batch() -> None:
    # codes x > 0: [1,0,1], [1,1,0], [0,0,0]; K_ij = 3 - hamming = [[3,1,1],[1,3,1],[1,1,3]], det 20
    x = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    assert score("naswot", nn.Sequential(nn.ReLU()), x) == pytest.approx(math.log(20.0))
    # a second ReLU sees the same signs, so K doubles and det(2K) = 8 * 20
    assert score("naswot", nn.Sequential(nn.ReLU(), nn.ReLU(inplace=True)), x) == pytest.approx(
        math.log(160.0)
    )
    # two examples with the same code make K singular
    same = torch.tensor([[1.0, -1.0], [2.0, -3.0]])
    assert score("naswot", nn.Sequential(nn.ReLU()), same) == -math.inf


def test_jacob_cov_of_a_linear_map_sees_perfectly_correlated_jacobians() -> None:
    # every example has the same Jacobian W' 1, so the correlation matrix is all ones: eigenvalues N, 0, ..
    n, k = 5, JACOB_COV_EPS
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(4))
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert score("jacob_cov", linear(), x) == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_of_uncorrelated_jacobians_is_maximal() -> None:
    # d sum(x^2) / dx = 2x; these rows are centred and orthogonal, so the correlation matrix is I
    x = torch.tensor([[1.0, 0.0, -1.0], [1.0, -2.0, 1.0]])
    k = JACOB_COV_EPS
    assert score("jacob_cov", Square(), x) == pytest.approx(-2 * (math.log(1 + k) + 1 / (1 + k)))
    # an output that ignores the input has no correlations to speak of: the worst score, whether the
    # Jacobian is all zeros or the output does not depend on the input at all
    assert score("jacob_cov", Square(), torch.zeros(2, 3)) == -math.inf
    assert score("jacob_cov", Zero(), x) == -math.inf


def test_params_and_flops_of_a_known_conv_net() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),  # 36 weights, 8*8*4*9 = 2304 MACs
        nn.BatchNorm2d(4),  # 8
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),  # 50 parameters, 40 MACs
    )
    x = torch.zeros(3, 1, 8, 8)
    assert score("params", net, x) == 94.0
    assert score("flops", net, x) == 2344.0


# -- side effects and determinism -----------------------------------------------------------------
def test_proxies_leave_the_model_and_the_global_random_state_unchanged() -> None:
    net = tiny_nb201()
    net.train()
    net.cells[0].ops[0][1].weight.grad = torch.ones_like(net.cells[0].ops[0][1].weight)
    x, y = digits_batch()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    for name in PROXIES:
        score(name, net, x, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert [m.training for m in net.modules()] == modes
    assert torch.equal(net.cells[0].ops[0][1].weight.grad, torch.ones_like(net.cells[0].ops[0][1].weight))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_every_proxy_gives_a_finite_repeatable_value_on_a_real_cell_network() -> None:
    net = tiny_nb201()
    x, y = digits_batch()
    first = {name: score(name, net, x, y) for name in PROXIES}
    assert first == {name: score(name, net, x, y) for name in PROXIES}
    assert all(math.isfinite(v) for v in first.values()), first
    assert first["params"] == sum(p.numel() for p in net.parameters())


def test_random_layers_draw_from_the_seed() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10))
    x, y = digits_batch()
    assert score("snip", net, x, y, seed=3) == score("snip", net, x, y, seed=3)
    assert score("snip", net, x, y, seed=3) != score("snip", net, x, y, seed=4)


# -- errors ---------------------------------------------------------------------------------------
def test_mistakes_raise_clear_nasflow_errors() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    x = torch.randn(4, 3)
    with pytest.raises(UnknownNameError, match="unknown proxy 'synflw'; allowed: synflow, snip"):
        score("synflw", net, x)
    with pytest.raises(ConfigError, match="'snip' computes a loss and needs targets"):
        score("snip", net, x)
    with pytest.raises(ConfigError, match="targets have 3 entries for 4 inputs"):
        score("snip", net, x, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ConfigError, match="floating-point torch.Tensor"):
        score("snip", net, [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model must be a torch.nn.Module"):
        score("params", "net", x)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'naswot' reads the activation codes of nn.ReLU"):
        score("naswot", net, x)
    with pytest.raises(ConfigError, match="at least 2 examples"):
        score("jacob_cov", net, x[:1])
    with pytest.raises(ConfigError, match="'snip' scores the weights of convolution and linear layers"):
        score("snip", nn.Sequential(nn.Flatten(), nn.ReLU()), x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(EvaluationError, match="proxy 'grasp' failed on a batch shaped \\(4, 5\\)"):
        score("grasp", net, torch.randn(4, 5), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ConfigError, match="loss_fn must return a scalar"):
        score("snip", net, x, torch.zeros(4), loss_fn=lambda out, y: out)


def test_registry_lists_every_proxy_with_its_needs() -> None:
    assert proxies.proxy_names() == [
        "synflow", "snip", "grasp", "fisher", "grad_norm", "jacob_cov", "naswot", "params", "flops",
    ]  # fmt: skip
    assert {n for n, p in PROXIES.items() if p.needs_targets} == {"snip", "grasp", "fisher", "grad_norm"}
    assert {n for n, p in PROXIES.items() if not p.uses_data} == {"synflow", "params", "flops"}
