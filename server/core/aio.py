"""Small asyncio helpers shared by the services and the stores."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_limited(limit: int, aws: Iterable[Awaitable[T]]) -> list[T]:
    """The results of *aws*, in order, at most *limit* running at once. The first failure is
    the answer: the rest are cancelled (those not started yet are closed, never awaited)."""
    sem = asyncio.Semaphore(limit)

    async def run(aw: Awaitable[T]) -> T:
        try:
            async with sem:
                return await aw
        finally:
            if inspect.iscoroutine(aw):
                aw.close()  # a no-op once it ran; spares a never-awaited warning if it did not

    tasks = [asyncio.ensure_future(run(aw)) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
