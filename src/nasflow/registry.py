"""Named registries of components (spaces, strategies, evaluators, benchmarks).

A registry maps a name to a factory. Factories may be given as ``"module:attribute"`` strings so that
listing names never imports heavy modules (torch, optuna) before they are needed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nasflow.errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    name: str
    target: Callable[..., Any] | str
    summary: str

    def load(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        module_name, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


class Registry(Generic[T]):
    """A name -> factory map for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Callable[..., T] | str, summary: str = "") -> None:
        """Register ``target`` (a callable or ``"module:attribute"``) under ``name``."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, summary)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        for name in self.names():
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}; allowed: {allowed}") from None

    def create(self, name: str, **options: Any) -> T:
        """Build the component registered as ``name`` with keyword ``options``."""
        factory = self.entry(name).load()
        signature = inspect.signature(factory)
        try:
            signature.bind(**options)
        except TypeError as exc:
            allowed = ", ".join(p for p in signature.parameters if p not in ("self", "args", "kwargs"))
            raise ConfigError(
                f"bad options for {self.kind} {name!r}: {exc}; allowed options: {allowed or 'none'}"
            ) from None
        return factory(**options)
