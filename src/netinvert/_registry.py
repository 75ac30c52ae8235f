"""One small registry type shared by datasets, models, losses, generators, encodings and solvers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .exceptions import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping whose misses list the valid names.

    Registering a name twice is an error: silently replacing a loss or encoding would make two
    runs with the same config behave differently depending on import order.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"A {self.kind} named {name!r} is already registered.")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}. Valid names: {valid}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
