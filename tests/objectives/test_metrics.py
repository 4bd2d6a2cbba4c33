import pytest
from torch import nn

from nasflow.errors import ConfigError
from nasflow.objectives.metrics import count_macs, count_parameters
from nasflow.space.nb201 import NB201Space

ARCH_9930 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_count_parameters_skips_frozen_ones() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    assert count_parameters(model) == (4 * 3 + 3) + (3 * 2 + 2)
    model[0].requires_grad_(False)
    assert count_parameters(model) == 3 * 2 + 2


def test_count_macs_of_simple_layers() -> None:
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert count_macs(conv, (2, 5, 5)) == 5 * 5 * 4 * 2 * 9
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    assert count_macs(mlp, (3, 2, 2)) == 12 * 5 + 5 * 2


def test_count_macs_restores_each_module_mode() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout())
    model.train()
    model[1].eval()
    count_macs(model, (1, 4, 4))
    assert model.training and model[0].training and model[2].training
    assert not model[1].training


def test_count_macs_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError):
        count_macs(nn.Identity(), (3, 0, 4))
    with pytest.raises(ConfigError):
        count_macs(nn.Identity(), (32, 32))


@pytest.mark.parametrize(
    "text, params, macs_m",
    [(ARCH_9930, 1_288_506, 184.73), (ALL_CONV, 1_531_546, 220.12)],
    ids=["index_9930", "all_conv3x3"],
)
def test_nb201_networks_match_the_published_costs(text: str, params: int, macs_m: float) -> None:
    space = NB201Space()
    model = space.build(space.parse(text))
    assert count_parameters(model) == params
    assert round(count_macs(model, (3, 32, 32)) / 1e6, 2) == macs_m
    assert model.training  # the counter leaves a fresh (training) model as it was
