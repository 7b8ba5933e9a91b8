"""Build-once values for the composition root: each outside party is built on first use, once per process,
even when the threads of `rotate --concurrency` ask for it at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built = False

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        """A Lazy that already holds ``value`` (one built earlier, handed over)."""
        lazy = cls(lambda: value)
        lazy.get()
        return lazy

    def get(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._build()
                    self._built = True
        return self._value  # type: ignore[return-value]  # set above; T may itself be Optional

    @property
    def built(self) -> bool:
        return self._built


class PerKey(Generic[T]):
    """A Lazy per key (an account, a region), each built once."""

    def __init__(self, build: Callable[[str], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._values: dict[str, T] = {}

    def get(self, key: str) -> T:
        with self._lock:
            if key not in self._values:
                self._values[key] = self._build(key)
            return self._values[key]

    def built(self) -> dict[str, T]:
        with self._lock:
            return dict(self._values)
