import time

import numpy as np
import pytest
import torch

from nasflow.errors import ConfigError, InvalidArchitectureError, SpaceError
from nasflow.ops import NB201_EDGES, NB201_OPS
from nasflow.space.nb201 import EDGE_NAMES, EDGES, OPS, NB201Space
from nasflow.tasks.base import Task

ARCH_9930 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


@pytest.fixture(scope="module")
def all_cells(space: NB201Space) -> list:
    return list(space.enumerate())


def cell(**ops: str) -> dict[str, str]:
    """An architecture mapping with every edge ``none`` except those given as ``e<dst><src>=op``."""
    values = dict.fromkeys(EDGE_NAMES, "none")
    for key, op in ops.items():
        values[f"{key[1]}<-{key[2]}"] = op
    return values


def test_decisions_follow_the_official_edge_order(space: NB201Space) -> None:
    assert list(space.decisions()) == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert all(choices == OPS for choices in space.decisions().values())
    assert OPS == NB201_OPS and EDGES == NB201_EDGES  # space and torch ops agree
    assert space.size() == 15_625
    assert space.describe() == {"name": "nb201", "channels": 16, "cells_per_stage": 5}
    assert NB201Space(8, 1).describe() == {"name": "nb201", "channels": 8, "cells_per_stage": 1}


@pytest.mark.parametrize("settings", [{"channels": 0}, {"cells_per_stage": -1}, {"channels": 2.5}])
def test_rejects_bad_settings(settings: dict) -> None:
    with pytest.raises(ConfigError):
        NB201Space(**settings)


def test_every_cell_is_valid_and_round_trips(space: NB201Space, all_cells: list) -> None:
    assert len(all_cells) == 15_625
    texts = {space.format(arch) for arch in all_cells}
    assert len(texts) == 15_625
    for arch in all_cells:
        assert space.is_valid(arch)
        assert space.parse(space.format(arch)) == arch


def test_format_matches_the_official_string(space: NB201Space) -> None:
    arch = space.parse(ARCH_9930)
    assert arch["1<-0"] == "nor_conv_3x3" and arch["3<-0"] == "skip_connect"
    assert space.format(arch) == ARCH_9930
    # the base class's JSON form is accepted as well
    assert space.parse(arch.to_json()) == arch


@pytest.mark.parametrize(
    "text, hint",
    [
        (ARCH_9930.replace("skip_connect", "max_pool_3x3"), "max_pool_3x3"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "need 3"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 input"),
        (ARCH_9930.replace("nor_conv_3x3~0", "nor_conv_3x3", 1), "lacks '~'"),
        (ARCH_9930.replace("~2", "~3"), "0..2"),
        (ARCH_9930.replace("~1|+|skip", "~0|+|skip"), "appears twice"),
        ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "'|'"),
        ("", "node group"),
    ],
)
def test_parse_rejects_garbage_with_a_helpful_message(space: NB201Space, text: str, hint: str) -> None:
    with pytest.raises(InvalidArchitectureError) as info:
        space.parse(text)
    message = str(info.value)
    assert hint in message
    assert "avg_pool_3x3" in message  # allowed operations are listed


def test_canonical_keys_count_the_6466_unique_cells(space: NB201Space, all_cells: list) -> None:
    start = time.perf_counter()
    keys = {space.canonical(arch) for arch in all_cells}
    assert len(keys) == 6_466
    assert time.perf_counter() - start < 10


def test_dead_edges_do_not_change_the_key(space: NB201Space) -> None:
    # node 1 receives only `none`, so whatever leaves it is dead
    base = cell(e30="nor_conv_3x3", e31="avg_pool_3x3")
    other = cell(e30="nor_conv_3x3", e31="nor_conv_1x1")
    assert space.canonical(base) == space.canonical(other)
    # node 2 does not reach the output (3<-2 is none), so edges into it are dead
    base = cell(e30="nor_conv_1x1", e20="nor_conv_3x3", e21="avg_pool_3x3", e10="skip_connect")
    other = cell(e30="nor_conv_1x1", e20="skip_connect", e21="nor_conv_1x1", e10="nor_conv_3x3")
    assert space.canonical(base) == space.canonical(other)


def test_reordered_sums_and_identities_share_a_key(space: NB201Space) -> None:
    # conv3(x) + conv1(skip(x)) vs conv1(x) + conv3(skip(x))
    first = cell(e10="skip_connect", e30="nor_conv_3x3", e31="nor_conv_1x1")
    second = cell(e10="skip_connect", e30="nor_conv_1x1", e31="nor_conv_3x3")
    assert space.canonical(first) == space.canonical(second)
    # an identity edge does not matter: conv(skip(x)) via node 1 == skip(conv(x)) via node 1 == conv(x)
    direct = space.canonical(cell(e30="nor_conv_3x3"))
    assert space.canonical(cell(e10="skip_connect", e31="nor_conv_3x3")) == direct
    assert space.canonical(cell(e10="nor_conv_3x3", e31="skip_connect")) == direct
    # node 2 also sums a zero term from node 1; like NAS-Bench-201, the key keeps x + 0 apart from x
    assert space.canonical(cell(e20="skip_connect", e32="nor_conv_3x3")) != direct


def test_different_cells_get_different_keys(space: NB201Space) -> None:
    keys = {
        space.canonical(space.parse(ARCH_9930)),
        space.canonical(space.parse(ALL_CONV)),
        space.canonical(space.parse(ALL_NONE)),
        space.canonical(cell(e30="nor_conv_3x3")),
        space.canonical(cell(e30="nor_conv_1x1")),
        space.canonical(cell(e10="nor_conv_3x3", e31="nor_conv_3x3")),
    }
    assert len(keys) == 6


def test_encodings(space: NB201Space) -> None:
    assert set(space.encodings()) == {"onehot", "index", "adjacency", "path"}
    conv, none = space.parse(ALL_CONV), space.parse(ALL_NONE)
    assert space.encode(conv, "onehot").shape == (30,)
    assert space.encode(conv, "index").tolist() == [3.0] * 6
    adjacency = space.encode(conv, "adjacency")
    assert adjacency.shape == (24,) and adjacency.sum() == 6
    assert not space.encode(none, "adjacency").any()
    path = space.encode(conv, "path")
    assert path.shape == (180,) and path.sum() == 4  # one path per route
    assert not space.encode(none, "path").any()
    # 9930 has routes 0->3 (skip), 0->1->3, 0->2->3 and 0->1->2->3, all through real ops
    assert space.encode(space.parse(ARCH_9930), "path").sum() == 4
    only_direct = space.encode(cell(e30="avg_pool_3x3", e10="nor_conv_1x1"), "path")
    assert np.flatnonzero(only_direct).tolist() == [4]  # route 0->3, op index 4
    with pytest.raises(SpaceError):
        space.encode(conv, "graph")


def test_build_gives_the_benchmark_network(space: NB201Space) -> None:
    model = space.build(space.parse(ARCH_9930))
    assert sum(p.numel() for p in model.parameters()) == 1_288_506
    assert model.classifier.out_features == 10 and model.stem[0].in_channels == 3


def test_build_validates(space: NB201Space) -> None:
    with pytest.raises(InvalidArchitectureError):
        space.build({**space.parse(ALL_CONV), "1<-0": "sep_conv_3x3"})


def _digits_like_task(shape: tuple[int, int, int]) -> Task:
    rng = np.random.default_rng(0)
    x = rng.random((4, *shape), dtype=np.float32)
    y = np.arange(4, dtype=np.int64) % 10
    return Task("tiny", x, y, x, y, x, y, num_classes=10)


@pytest.mark.parametrize("text", [ARCH_9930, ALL_NONE], ids=["index_9930", "all_none"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 7)])
def test_scaled_build_runs_on_a_task(text: str, shape: tuple[int, int, int]) -> None:
    small = NB201Space(channels=8, cells_per_stage=1)
    model = small.build(small.parse(text), _digits_like_task(shape))
    logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 10)
    logits.sum().backward()  # trainable end to end, even when every cell edge is `none`
