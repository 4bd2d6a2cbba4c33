"""A MobileNetV2/V3-like chain space of inverted-residual blocks (ProxylessNAS / FBNet / OFA style).

A network is a stem convolution, ``S`` stages of MBConv blocks and a head (1x1 convolution, global
average pooling, linear classifier). The search chooses a global width multiplier and activation, the
depth of every stage, and per block the depthwise kernel, the expansion ratio and whether it has
squeeze-and-excitation, as in ProxylessNAS (Cai et al., 2019), FBNet (Wu et al., 2019) and
Once-for-All (Cai et al., 2020), over the blocks of MobileNetV2 (Sandler et al., 2018) and MobileNetV3
(Howard et al., 2019).

Every network is exactly the chain of its :class:`~nasflow.ops.mobile.BlockSpec` blocks
(:meth:`ChainSpace.blocks`), and :meth:`ChainSpace.block_choices` lists every block any network of
the space can hold for a given input, so a latency look-up table can profile each block once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.ops.mobile import ACTIVATIONS, BlockSpec, ChainNetwork, build_block, make_divisible
from nasflow.space.architecture import Architecture, Choice
from nasflow.space.base import DecisionSpace

DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (3, 32, 32)
DEFAULT_NUM_CLASSES = 10

_BLOCK = re.compile(r"^(?P<inactive>~)?k(?P<kernel>\d+)e(?P<expand>\d+)s(?P<se>\d+)$")
_FORM_HINT = (
    "expected 'w<width>-<act>|<stage 0>|<stage 1>|...' where a stage is ','-separated blocks "
    "'k<kernel>e<expand>s<se>' (inactive blocks, when shown, start with '~'), "
    "e.g. 'w0.75-hswish|k3e4s0,k5e6s1|k7e3s0|k3e6s1|k5e3s0'"
)


def depth_key(stage: int) -> str:
    """Decision name of a stage's number of active blocks."""
    return f"depth_{stage}"


def kernel_key(stage: int, block: int) -> str:
    return f"s{stage}_b{block}_kernel"


def expand_key(stage: int, block: int) -> str:
    return f"s{stage}_b{block}_expand"


def se_key(stage: int, block: int) -> str:
    return f"s{stage}_b{block}_se"


class ChainSpace(DecisionSpace):
    """MobileNet-like chains: width, activation, per-stage depth, per-block kernel / expansion / SE.

    Args:
        stage_channels: output channels of each stage at width multiplier 1.
        stage_strides: stride (1 or 2) of the first block of each stage.
        min_depth, max_depth: the choices of every stage's depth are ``min_depth..max_depth``.
        kernels: depthwise kernel choices (odd).
        expansions: expansion ratio choices.
        widths: width multiplier choices; stem and stage channels are ``round(c * width)`` to a multiple
            of ``divisor``.
        acts: activation choices, a subset of ``("relu", "hswish")``.
        se: squeeze-and-excitation choices per block, a subset of ``(0, 1)``.
        stem_channels: stem output channels at width multiplier 1.
        stem_stride: stride (1 or 2) of the stem convolution.
        head_channels: feature width of the head's 1x1 convolution (not scaled by the multiplier).
        divisor: channel counts are rounded to multiples of this.

    The defaults are small, for 8x8 digits on a CPU. A stride is dropped to 1 when the block's input is
    already 1x1 (so tiny inputs build), and a block adds its input to its output when its stride is 1 and
    its input and output channels agree.
    """

    name = "chain"

    def __init__(
        self,
        stage_channels: Sequence[int] = (16, 24, 32, 48),
        stage_strides: Sequence[int] = (1, 2, 2, 1),
        min_depth: int = 1,
        max_depth: int = 3,
        kernels: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (3, 4, 6),
        widths: Sequence[float] = (0.5, 0.75, 1.0),
        acts: Sequence[str] = ACTIVATIONS,
        se: Sequence[int] = (0, 1),
        stem_channels: int = 16,
        stem_stride: int = 1,
        head_channels: int = 128,
        divisor: int = 4,
    ) -> None:
        self.stage_channels = _int_list("stage_channels", stage_channels, 1)
        self.stage_strides = _int_list("stage_strides", stage_strides, 1, allowed=(1, 2), dedupe=False)
        if len(self.stage_strides) != len(self.stage_channels):
            raise ConfigError(
                f"chain stage_strides needs one entry per stage ({len(self.stage_channels)}), "
                f"got {list(stage_strides)}"
            )
        self.max_depth = _int_at_least("max_depth", max_depth, 1)
        self.min_depth = _int_at_least("min_depth", min_depth, 1)
        if self.min_depth > self.max_depth:
            raise ConfigError(f"chain min_depth ({min_depth}) must not exceed max_depth ({max_depth})")
        self.kernels = tuple(sorted(_int_list("kernels", kernels, 1)))
        if any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"chain kernels must be odd positive integers, got {list(kernels)}")
        self.expansions = tuple(sorted(_int_list("expansions", expansions, 1)))
        self.widths = _width_list(widths)
        self.acts = _str_list("acts", acts, ACTIVATIONS)
        self.se = tuple(sorted(_int_list("se", se, 0, allowed=(0, 1))))
        self.stem_channels = _int_at_least("stem_channels", stem_channels, 1)
        self.stem_stride = _int_at_least("stem_stride", stem_stride, 1)
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"chain stem_stride must be 1 or 2, got {stem_stride!r}")
        self.head_channels = _int_at_least("head_channels", head_channels, 1)
        self.divisor = _int_at_least("divisor", divisor, 1)
        decisions: dict[str, tuple[Choice, ...]] = {"width": self.widths, "act": self.acts}
        for stage in range(self.num_stages):
            decisions[depth_key(stage)] = tuple(range(self.min_depth, self.max_depth + 1))
            for block in range(self.max_depth):
                decisions[kernel_key(stage, block)] = self.kernels
                decisions[expand_key(stage, block)] = self.expansions
                decisions[se_key(stage, block)] = self.se
        super().__init__(decisions)

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage_channels": list(self.stage_channels),
            "stage_strides": list(self.stage_strides),
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "kernels": list(self.kernels),
            "expansions": list(self.expansions),
            "widths": list(self.widths),
            "acts": list(self.acts),
            "se": list(self.se),
            "stem_channels": self.stem_channels,
            "stem_stride": self.stem_stride,
            "head_channels": self.head_channels,
            "divisor": self.divisor,
        }

    # -- structure -------------------------------------------------------------------------
    def channels(self, width: float) -> tuple[int, ...]:
        """``(stem, stage 0, stage 1, ...)`` output channels at width multiplier ``width``."""
        return tuple(
            make_divisible(c * width, self.divisor) for c in (self.stem_channels, *self.stage_channels)
        )

    def depths(self, arch: Architecture) -> tuple[int, ...]:
        """Number of active blocks of each stage."""
        return tuple(_as_int(arch[depth_key(s)]) for s in range(self.num_stages))

    def normalize(self, arch: Architecture) -> Architecture:
        """``arch`` with every inactive block set to the first choices (the same network)."""
        changes: dict[str, Choice] = {}
        for stage, depth in enumerate(self.depths(arch)):
            for block in range(depth, self.max_depth):
                changes[kernel_key(stage, block)] = self.kernels[0]
                changes[expand_key(stage, block)] = self.expansions[0]
                changes[se_key(stage, block)] = self.se[0]
        return arch.replace(**changes)

    def distinct_size(self) -> int:
        """Number of distinct networks (inactive blocks ignored, widths that round alike merged)."""
        per_block = len(self.kernels) * len(self.expansions) * len(self.se)
        per_stage = sum(per_block**d for d in range(self.min_depth, self.max_depth + 1))
        widths = len({self.channels(w) for w in self.widths})
        return widths * len(self.acts) * per_stage**self.num_stages

    def blocks(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> list[BlockSpec]:
        """The network of ``arch`` as its chain of blocks (stem, MBConvs, head) for the given input."""
        arch = self.validate(arch)
        channels_in, hw = _input_shape(input_shape)
        classes = _int_at_least("num_classes", num_classes, 1)
        act = str(arch["act"])
        stem, *stage_channels = self.channels(_as_float(arch["width"]))
        specs = [BlockSpec("stem", channels_in, stem, _stride(self.stem_stride, hw), 3, 1, False, act, hw)]
        hw, width = specs[0].out_hw, stem
        for stage, depth in enumerate(self.depths(arch)):
            for block in range(depth):
                stride = _stride(self.stage_strides[stage] if block == 0 else 1, hw)
                spec = BlockSpec(
                    "mbconv",
                    width,
                    stage_channels[stage],
                    stride,
                    _as_int(arch[kernel_key(stage, block)]),
                    _as_int(arch[expand_key(stage, block)]),
                    bool(arch[se_key(stage, block)]),
                    act,
                    hw,
                )
                specs.append(spec)
                hw, width = spec.out_hw, spec.out_channels
        specs.append(BlockSpec("head", width, self.head_channels, 1, 0, 1, False, act, hw, classes))
        return specs

    def block_choices(self, input_shape: Sequence[int], num_classes: int) -> list[BlockSpec]:
        """Every distinct block any architecture of the space can contain for this input, in order.

        Spatial sizes do not depend on the decisions (only a stage's first block strides), so the list
        is the product of widths, activations and per-position kernel / expansion / SE choices:
        732 blocks with the defaults on 1x8x8 or 3x32x32 inputs (some coincide across widths).
        """
        channels_in, input_hw = _input_shape(input_shape)
        classes = _int_at_least("num_classes", num_classes, 1)
        options = [(k, e, bool(se)) for k in self.kernels for e in self.expansions for se in self.se]
        seen: dict[BlockSpec, None] = {}  # an ordered set
        for width in self.widths:
            stem, *stage_channels = self.channels(width)
            for act in self.acts:
                spec = BlockSpec(
                    "stem", channels_in, stem, _stride(self.stem_stride, input_hw), 3, 1, False, act, input_hw
                )
                seen[spec] = None
                hw, previous = spec.out_hw, stem
                for stage, out in enumerate(stage_channels):
                    for block in range(self.max_depth):
                        stride = _stride(self.stage_strides[stage] if block == 0 else 1, hw)
                        in_channels = previous if block == 0 else out
                        for kernel, expand, se in options:
                            spec = BlockSpec("mbconv", in_channels, out, stride, kernel, expand, se, act, hw)
                            seen[spec] = None
                        hw = spec.out_hw  # the same for every kernel: padding keeps ceil(size / stride)
                    previous = out
                seen[BlockSpec("head", previous, self.head_channels, 1, 0, 1, False, act, hw, classes)] = None
        return list(seen)

    def build_block(self, spec: BlockSpec) -> nn.Module:
        """The module of one block (see :func:`nasflow.ops.mobile.build_block`)."""
        return build_block(spec)

    def canonical(self, arch: Architecture) -> str:
        """The resolved channels, activation and active blocks, e.g. ``8.8.12.16.24-relu|k3e4s0|...``.

        Inactive blocks are left out, and width multipliers that round to the same channels coincide.
        """
        arch = self.validate(arch)
        channels = ".".join(str(c) for c in self.channels(_as_float(arch["width"])))
        return f"{channels}-{arch['act']}|" + "|".join(self._stage_texts(self.normalize(arch)))

    # -- random operators ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """Uniform over decisions (so each stage depth is uniform), inactive blocks normalised."""
        return self.normalize(super().sample(rng))

    def neighbors(self, arch: Architecture) -> list[Architecture]:
        """One-decision changes that give a different network.

        Decisions of inactive blocks are not touched, nor widths that round to the same channels.
        """
        inactive = self._inactive_keys(arch)
        channels = self.channels(_as_float(arch["width"]))
        same_network = {w for w in self.widths if self.channels(w) == channels}
        result = []
        for key, choices in self.decisions().items():
            if key in inactive:
                continue
            for value in choices:
                if value == arch[key] or (key == "width" and value in same_network):
                    continue
                child = arch.replace(**{key: value})
                if self._check_constraints(child):
                    result.append(child)
        return result

    def _inactive_keys(self, arch: Architecture) -> set[str]:
        return {
            key
            for stage, depth in enumerate(self.depths(arch))
            for block in range(depth, self.max_depth)
            for key in (kernel_key(stage, block), expand_key(stage, block), se_key(stage, block))
        }

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A random neighbour (always a different network), inactive blocks normalised."""
        options = self.neighbors(arch)
        if options:
            return self.normalize(options[int(rng.integers(len(options)))])
        return super().mutate(arch, rng)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover of the decisions, inactive blocks normalised."""
        return self.normalize(super().crossover(a, b, rng))

    # -- encodings -------------------------------------------------------------------------
    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """``onehot`` (inactive blocks all zeros) or ``index`` (of the normalised architecture)."""
        arch = self.validate(arch)
        if kind != "onehot":
            return super().encode(self.normalize(arch), kind)
        inactive = self._inactive_keys(arch)
        parts = []
        for key, choices in self.decisions().items():
            part = np.zeros(len(choices))
            if key not in inactive:
                part[choices.index(arch[key])] = 1.0
            parts.append(part)
        return np.concatenate(parts)

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """E.g. ``w0.75-hswish|k3e4s0,k5e6s1|k7e3s0|k3e6s1|k5e3s0``.

        A header ``w<width>-<act>``, then one ``|``-separated group per stage listing its active blocks
        ``k<kernel>e<expand>s<se>``. Inactive blocks are omitted while they hold the first choices (as
        after :meth:`normalize`); otherwise they follow the active ones marked ``~`` so that
        :meth:`parse` gives back exactly the same architecture.
        """
        header = f"w{_width_text(_as_float(arch['width']))}-{arch['act']}"
        return "|".join([header, *self._stage_texts(arch)])

    def _stage_texts(self, arch: Architecture) -> list[str]:
        texts = []
        for stage, depth in enumerate(self.depths(arch)):
            tokens = [_block_text(arch, stage, block) for block in range(self.max_depth)]
            shown = depth
            default = _block_text(self.normalize(arch), stage, self.max_depth - 1)
            for block in range(depth, self.max_depth):
                if tokens[block] != default:
                    shown = block + 1
            texts.append(",".join(tokens[:depth] + [f"~{t}" for t in tokens[depth:shown]]))
        return texts

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; JSON and ``name=value`` forms of the base class work too."""
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"cannot parse {text!r}: not a string; {_FORM_HINT}")
        stripped = "".join(text.split())
        if stripped.startswith("{") or "=" in stripped:
            return super().parse(text)
        header, *stages = stripped.split("|")
        values = self._parse_header(text, header)
        if len(stages) != self.num_stages:
            raise InvalidArchitectureError(
                f"cannot parse {text!r}: found {len(stages)} stage(s) after the header, the space has "
                f"{self.num_stages}; {_FORM_HINT}"
            )
        for stage, stage_text in enumerate(stages):
            values.update(self._parse_stage(text, stage, stage_text))
        return self.validate(values)

    def _parse_header(self, text: str, header: str) -> dict[str, Choice]:
        width_text, sep, act = header.partition("-")
        by_text = {_width_text(w): w for w in self.widths}
        if not sep or not width_text.startswith("w") or width_text[1:] not in by_text:
            raise InvalidArchitectureError(
                f"cannot parse header {header!r} of {text!r}: expected 'w<width>-<act>' with width in "
                f"{list(by_text)}; {_FORM_HINT}"
            )
        if act not in self.acts:
            raise InvalidArchitectureError(
                f"cannot parse header {header!r} of {text!r}: activation {act!r} is not one of "
                f"{list(self.acts)}"
            )
        return {"width": by_text[width_text[1:]], "act": act}

    def _parse_stage(self, text: str, stage: int, stage_text: str) -> dict[str, Choice]:
        where = f"stage {stage} {stage_text!r} of {text!r}"
        tokens = stage_text.split(",") if stage_text else []
        matches = []
        for token in tokens:
            match = _BLOCK.match(token)
            if match is None:
                raise InvalidArchitectureError(f"cannot parse block {token!r} in {where}; {_FORM_HINT}")
            matches.append(match)
        depth = sum(1 for m in matches if not m["inactive"])
        if any(m["inactive"] for m in matches[:depth]):
            raise InvalidArchitectureError(f"cannot parse {where}: inactive '~' blocks must come last")
        if not self.min_depth <= depth <= self.max_depth or len(matches) > self.max_depth:
            raise InvalidArchitectureError(
                f"cannot parse {where}: a stage has {self.min_depth}..{self.max_depth} active blocks "
                f"(and at most {self.max_depth} in all), found {depth} active of {len(matches)}"
            )
        values: dict[str, Choice] = {depth_key(stage): depth}
        for block in range(self.max_depth):
            if block < len(matches):
                match = matches[block]
                values[kernel_key(stage, block)] = int(match["kernel"])
                values[expand_key(stage, block)] = int(match["expand"])
                values[se_key(stage, block)] = int(match["se"])
            else:
                values[kernel_key(stage, block)] = self.kernels[0]
                values[expand_key(stage, block)] = self.expansions[0]
                values[se_key(stage, block)] = self.se[0]
        return values

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> ChainNetwork:
        """The network of ``arch`` for ``task``'s input shape and classes (default 3x32x32, 10)."""
        input_shape, num_classes = DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES
        if task is not None:
            input_shape, num_classes = tuple(task.input_shape), int(task.num_classes)
        return self.build_network(arch, input_shape, num_classes)

    def build_network(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> ChainNetwork:
        """``ChainNetwork(nn.Sequential(*[build_block(s) for s in blocks(arch, ...)]))``."""
        return ChainNetwork.from_specs(self.blocks(arch, input_shape, num_classes))


def _as_int(value: Choice) -> int:
    assert isinstance(value, int), value  # validated decisions hold ints
    return int(value)


def _as_float(value: Choice) -> float:
    assert isinstance(value, (int, float)), value
    return float(value)


def _stride(stride: int, hw: tuple[int, int]) -> int:
    # striding a 1x1 map changes nothing; dropping it keeps block specs (and residuals) honest
    return 1 if hw == (1, 1) else stride


def _block_text(arch: Architecture, stage: int, block: int) -> str:
    return f"k{arch[kernel_key(stage, block)]}e{arch[expand_key(stage, block)]}s{arch[se_key(stage, block)]}"


def _width_text(width: float) -> str:
    return f"{width:g}"


def _input_shape(shape: Sequence[int]) -> tuple[int, tuple[int, int]]:
    values = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
    if len(values) != 3 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
    ):
        raise ConfigError(
            f"input_shape must be (channels, height, width) of positive integers, got {shape!r}"
        )
    return int(values[0]), (int(values[1]), int(values[2]))


def _int_at_least(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"chain {field} must be an integer >= {low}, got {json.dumps(value, default=str)}")
    return int(value)


def _int_list(
    field: str, values: object, low: int, allowed: Sequence[int] | None = None, dedupe: bool = True
) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"chain {field} must be a non-empty list of integers, got {values!r}")
    result = tuple(_int_at_least(f"{field} entry", v, low) for v in values)
    if allowed is not None and any(v not in allowed for v in result):
        raise ConfigError(f"chain {field} entries must be in {list(allowed)}, got {list(values)}")
    if dedupe and len(set(result)) != len(result):
        raise ConfigError(f"chain {field} lists a value twice: {list(values)}")
    return result


def _width_list(values: object) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"chain widths must be a non-empty list of positive numbers, got {values!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in values):
        raise ConfigError(f"chain widths must be positive numbers, got {list(values)}")
    widths = tuple(sorted(float(v) for v in values))
    if len({_width_text(w) for w in widths}) != len(widths):
        raise ConfigError(f"chain widths lists a value twice: {list(values)}")
    return widths


def _str_list(field: str, values: object, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(
            f"chain {field} must be a non-empty list drawn from {list(allowed)}, got {values!r}"
        )
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"chain {field} {unknown} are unknown; allowed: {list(allowed)}")
    return tuple(v for v in allowed if v in values)


__all__ = ["ChainSpace", "depth_key", "expand_key", "kernel_key", "se_key"]
