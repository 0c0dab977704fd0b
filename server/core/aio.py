"""Small asyncio helpers shared by the services and the stores."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_limited(limit: int, aws: Iterable[Awaitable[T]]) -> list[T]:
    """The results of *aws*, in order, at most *limit* running at once. Every one runs to its
    end even when another fails (a chunk's promotion must reach its verdict: a forged staged
    object is deleted by it); then the first failure, in order, is raised."""
    sem = asyncio.Semaphore(limit)

    async def run(aw: Awaitable[T]) -> T:
        try:
            async with sem:
                return await aw
        finally:
            if inspect.iscoroutine(aw):
                aw.close()  # a no-op once it ran; a caller cancelled before it started leaves no warning

    results = await asyncio.gather(*(run(aw) for aw in aws), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]
