"""The immutable, hashable architecture value object."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

Choice = str | int | float | bool | None
_SCALARS = (str, int, float, bool, type(None))


class Architecture(Mapping[str, Choice]):
    """An immutable mapping ``decision name -> chosen value``.

    Two architectures are equal when they make the same choices; order of the decisions does not
    matter for equality or hashing. JSON round-trips exactly (``to_json`` / ``from_json``).
    """

    __slots__ = ("_values", "_hash")

    def __init__(self, values: Mapping[str, Choice] | None = None, /, **choices: Choice) -> None:
        merged = dict(values or {}, **choices)
        for key, value in merged.items():
            if not isinstance(key, str):
                raise TypeError(f"decision names must be strings, got {key!r}")
            if not isinstance(value, _SCALARS):
                raise TypeError(
                    f"decision {key!r} has value {value!r} of type {type(value).__name__}; "
                    "allowed: str, int, float, bool, None"
                )
        self._values: dict[str, Choice] = merged
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Choice:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._values.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Architecture):
            return self._values == other._values
        if isinstance(other, Mapping):
            return self._values == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Architecture({inner})"

    def replace(self, **changes: Choice) -> Architecture:
        """A copy with some decisions changed."""
        return Architecture({**self._values, **changes})

    def to_dict(self) -> dict[str, Choice]:
        return dict(self._values)

    def to_json(self) -> str:
        return json.dumps(self._values, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | Mapping[str, Any]) -> Architecture:
        data = text if isinstance(text, Mapping) else json.loads(text)
        return cls(data)
