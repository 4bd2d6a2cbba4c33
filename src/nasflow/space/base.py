"""Search spaces of named categorical decisions.

:class:`DecisionSpace` is both the public way for users to define a space and the base class of every
built-in space. Strategies only use the methods defined here, so any strategy works on any space.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from nasflow.errors import InvalidArchitectureError, NasflowError, SpaceError
from nasflow.space.architecture import Architecture, Choice

IsValid = Callable[[Architecture], bool]
Canonicaliser = Callable[[Architecture], Any]

#: how many random draws ``sample``/``mutate`` try before concluding that a space is over-constrained
MAX_TRIES = 1000
_FORMAT_RESERVED = (",", "=")


class DecisionSpace:
    """A space of architectures made of named categorical decisions.

    Args:
        decisions: ``name -> sequence of allowed values`` (str, int, float, bool or None).
        is_valid: optional predicate; architectures for which it returns False are never sampled,
            mutated into or accepted.
        canonical: optional function mapping an architecture to a key (an Architecture, string or
            JSON-able value); architectures with equal keys are treated as the same network.
        name: the space's name, recorded in studies.
    """

    name: str = "custom"

    def __init__(
        self,
        decisions: Mapping[str, Sequence[Choice]],
        is_valid: IsValid | None = None,
        canonical: Canonicaliser | None = None,
        name: str | None = None,
    ) -> None:
        if not decisions:
            raise SpaceError("a DecisionSpace needs at least one decision")
        self._decisions: dict[str, tuple[Choice, ...]] = {}
        for key, values in decisions.items():
            if not isinstance(key, str) or not key:
                raise SpaceError(f"decision names must be non-empty strings, got {key!r}")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise SpaceError(f"decision {key!r} needs a list of choices, got {values!r}")
            choices = tuple(values)
            if not choices:
                raise SpaceError(f"decision {key!r} has no choices")
            if len(set(map(json.dumps, choices))) != len(choices):
                raise SpaceError(f"decision {key!r} lists a choice twice: {list(choices)}")
            for choice in choices:
                Architecture({key: choice})  # type check of the value
            self._decisions[key] = choices
        self._user_is_valid = is_valid
        self._user_canonical = canonical
        if name is not None:
            self.name = name
        self._index = {k: {json.dumps(v): i for i, v in enumerate(c)} for k, c in self._decisions.items()}
        self._text_format = all(
            len({str(v) for v in c}) == len(c)
            and not any(r in str(v) or r in k for v in c for r in _FORMAT_RESERVED)
            for k, c in self._decisions.items()
        )

    # -- structure -------------------------------------------------------------------------
    def decisions(self) -> dict[str, tuple[Choice, ...]]:
        """``name -> allowed values``, in the space's order."""
        return dict(self._decisions)

    def size(self) -> int:
        """Number of combinations of choices (before ``is_valid`` filtering)."""
        return int(np.prod([len(c) for c in self._decisions.values()], dtype=object))

    def enumerate(self) -> Iterator[Architecture]:
        """Every valid architecture, in lexicographic order of choice indices."""
        keys = list(self._decisions)
        for combo in itertools.product(*self._decisions.values()):
            arch = Architecture(dict(zip(keys, combo)))
            if self.is_valid(arch):
                yield arch

    # -- membership ------------------------------------------------------------------------
    def is_valid(self, arch: Mapping[str, Choice]) -> bool:
        """True when ``arch`` sets every decision to an allowed value and passes ``is_valid``."""
        try:
            self.validate(arch)
        except InvalidArchitectureError:
            return False
        return True

    def validate(self, arch: Mapping[str, Choice]) -> Architecture:
        """Return ``arch`` as an :class:`Architecture` or raise :class:`InvalidArchitectureError`."""
        if not isinstance(arch, Mapping):
            raise InvalidArchitectureError(f"an architecture is a mapping of decisions, got {arch!r}")
        missing = [k for k in self._decisions if k not in arch]
        extra = [k for k in arch if k not in self._decisions]
        if missing or extra:
            raise InvalidArchitectureError(
                f"architecture does not match space {self.name!r}: missing decisions {missing}, "
                f"unknown decisions {extra}; expected {list(self._decisions)}"
            )
        for key, choices in self._decisions.items():
            if json.dumps(arch[key]) not in self._index[key]:
                raise InvalidArchitectureError(
                    f"decision {key!r} cannot be {arch[key]!r}; allowed: {list(choices)}"
                )
        result = arch if isinstance(arch, Architecture) else Architecture(arch)
        result = Architecture({k: result[k] for k in self._decisions})  # the space's decision order
        if not self._check_constraints(result):
            raise InvalidArchitectureError(f"architecture {self.format(result)} is rejected by is_valid")
        return result

    def _check_constraints(self, arch: Architecture) -> bool:
        """Space-specific validity beyond allowed values; subclasses may extend."""
        return self._user_is_valid is None or bool(self._user_is_valid(arch))

    def canonical(self, arch: Architecture) -> str:
        """A string key shared by all architectures that describe the same network."""
        if self._user_canonical is None:
            return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))
        key = self._user_canonical(arch)
        if isinstance(key, str):
            return key
        if isinstance(key, Mapping):
            return json.dumps(dict(key), sort_keys=True, separators=(",", ":"))
        return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)

    # -- random operators ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random valid architecture (rejection sampling)."""
        keys = list(self._decisions)
        for _ in range(MAX_TRIES):
            arch = Architecture(
                {k: self._decisions[k][int(rng.integers(len(self._decisions[k])))] for k in keys}
            )
            if self._check_constraints(arch):
                return arch
        raise SpaceError(
            f"could not sample a valid architecture from space {self.name!r} in {MAX_TRIES} tries; "
            "is_valid rejects (almost) every combination"
        )

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A valid architecture that differs from ``arch`` in one decision.

        Falls back to a fresh sample when ``arch`` has no valid single-decision neighbour.
        """
        mutable = [k for k, c in self._decisions.items() if len(c) > 1]
        if not mutable:
            return arch
        for _ in range(MAX_TRIES // 10):
            key = mutable[int(rng.integers(len(mutable)))]
            current = self._index[key][json.dumps(arch[key])]
            offset = int(rng.integers(1, len(self._decisions[key])))
            value = self._decisions[key][(current + offset) % len(self._decisions[key])]
            child = arch.replace(**{key: value})
            if self._check_constraints(child):
                return child
        options = self.neighbors(arch)
        if options:
            return options[int(rng.integers(len(options)))]
        return self.sample(rng)

    def neighbors(self, arch: Architecture) -> list[Architecture]:
        """All valid architectures that differ from ``arch`` in exactly one decision."""
        result = []
        for key, choices in self._decisions.items():
            for value in choices:
                if json.dumps(value) == json.dumps(arch[key]):
                    continue
                child = arch.replace(**{key: value})
                if self._check_constraints(child):
                    result.append(child)
        return result

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover of two parents; returns a valid child (``a`` if none is found)."""
        for _ in range(MAX_TRIES // 10):
            mask = rng.random(len(self._decisions)) < 0.5
            child = Architecture({k: (a[k] if m else b[k]) for k, m in zip(self._decisions, mask)})
            if self._check_constraints(child):
                return child
        return a

    # -- encodings -------------------------------------------------------------------------
    def encodings(self) -> tuple[str, ...]:
        """Names accepted by :meth:`encode`."""
        return ("onehot", "index")

    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """A numeric vector for predictors: ``onehot`` (concatenated) or ``index`` (choice indices)."""
        if kind == "onehot":
            parts = []
            for key, choices in self._decisions.items():
                part = np.zeros(len(choices))
                part[self._index[key][json.dumps(arch[key])]] = 1.0
                parts.append(part)
            return np.concatenate(parts)
        if kind == "index":
            return np.array([self._index[k][json.dumps(arch[k])] for k in self._decisions], dtype=float)
        raise SpaceError(f"space {self.name!r} has no encoding {kind!r}; allowed: {list(self.encodings())}")

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """A compact human-readable string, ``name=value,...`` (JSON when values contain , or =)."""
        if self._text_format:
            return ",".join(f"{k}={arch[k]}" for k in self._decisions)
        return json.dumps({k: arch[k] for k in self._decisions}, separators=(",", ":"))

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; raises :class:`InvalidArchitectureError` on bad input."""
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidArchitectureError(f"cannot parse architecture {text!r}: {exc}") from None
            return self.validate(data)
        values: dict[str, Choice] = {}
        for part in filter(None, text.split(",")):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in self._decisions:
                raise InvalidArchitectureError(
                    f"cannot parse {part!r} in {text!r}: expected name=value with name in "
                    f"{list(self._decisions)}"
                )
            by_text = {str(v): v for v in self._decisions[key]}
            if raw.strip() not in by_text:
                raise InvalidArchitectureError(
                    f"decision {key!r} cannot be {raw.strip()!r}; allowed: {list(by_text)}"
                )
            values[key] = by_text[raw.strip()]
        return self.validate(values)

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> Any:
        """Build a ``torch.nn.Module`` for ``arch`` shaped for ``task`` (input shape, classes)."""
        raise NasflowError(
            f"space {self.name!r} cannot build networks; evaluate it with a FunctionEvaluator or a "
            "tabular benchmark, or use a space that builds (e.g. 'nb201')"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able settings that recreate this space from the registry (recorded in studies)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, decisions={len(self._decisions)})"


SearchSpace = DecisionSpace
