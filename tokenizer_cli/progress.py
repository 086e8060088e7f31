"""How library functions report progress on slow work, without printing anything themselves.

A function that takes `progress` calls `progress(description, total)` and uses the context manager it returns,
whose value has `advance(n=1, **stats)`. The CLI passes its rich progress bars; the default shows nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator, Protocol


class Advance(Protocol):
    def advance(self, n: int = 1, **stats: Any) -> None: ...


Progress = Callable[[str, "int | None"], AbstractContextManager[Advance]]


class _Silent:
    def advance(self, n: int = 1, **stats: Any) -> None:
        pass


@contextmanager
def no_progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """The default `progress`: counts nothing, shows nothing."""
    yield _Silent()
