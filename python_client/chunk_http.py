"""Chunk bytes over aiohttp; JSON API calls stay on httpx.

Thousands of chunk requests per file make per-request client cost matter: httpx measured ~3.1 ms
of CPU per chunk PUT here (pool bookkeeping, anyio locks), aiohttp a fraction of that. aiohttp is
already a dependency (aioboto3), well kept, and speaks HTTPS and proxies like httpx does.
Failures surface as ``httpx.TransportError`` subclasses so the engines' retry logic is one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from yarl import URL


def _transport_error(exc: BaseException) -> httpx.TransportError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(f"timed out: {exc}")
    return httpx.ReadError(f"{type(exc).__name__}: {exc}")


class ChunkHttp:
    def __init__(self, parallel: int) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=parallel * 2, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        await self.session.close()

    async def put(self, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """PUT *data*; return (status, body). The URL is sent exactly as given (signatures)."""
        try:
            async with self.session.put(URL(url, encoded=True), data=data, headers=headers) as resp:
                return resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc) from exc

    async def put_stream(self, url: str, body: AsyncIterator[bytes | memoryview], headers: dict[str, str]
                         ) -> tuple[int, bytes]:
        """PUT a body produced piece by piece (chunked transfer encoding); return (status, body)."""
        try:
            async with self.session.put(URL(url, encoded=True), data=body, headers=headers) as resp:
                return resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc) from exc

    @contextlib.asynccontextmanager
    async def get(self, url: str, headers: dict[str, str] | None = None
                  ) -> AsyncIterator[tuple[int, AsyncIterator[bytes], dict[str, Any]]]:
        """GET *url*; yield (status, body pieces as the socket delivered them, response headers)."""
        try:
            async with self.session.get(URL(url, encoded=True), headers=headers or {}) as resp:
                yield resp.status, self._pieces(resp), dict(resp.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc) from exc

    @staticmethod
    async def _pieces(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        # As received (a few hundred KiB at most): asking for pieces of a fixed size made aiohttp
        # join its buffered reads into each, copying every downloaded byte once more.
        try:
            async for piece, _end_of_http_chunk in resp.content.iter_chunks():
                if piece:
                    yield piece
                elif resp.content.at_eof():  # a body-less answer's shared empty reader never says EOF
                    return
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc) from exc
