"""Helpers for the co-editing tests and benchmarks: files in and out as text, joined sessions."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from python_client.api import SatchelClient
from python_client.coedit import DocSession
from python_client.live import LiveSession


async def put_text(client: SatchelClient, remote: str, text: str | bytes) -> dict[str, object]:
    data = text.encode() if isinstance(text, str) else text
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / ("f" + secrets.token_hex(4))
        local.write_bytes(data)
        return await client.upload(local, remote)


async def get_text(client: SatchelClient, remote: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / "out"
        await client.download(remote, local)
        return local.read_text(encoding="utf-8")


@contextlib.asynccontextmanager
async def joined(url: str, token: str, path: str, ns: int | None = None) -> AsyncIterator[DocSession]:
    async with LiveSession.connect(url, token) as live:
        doc = await DocSession.join(live, path, ns)
        yield doc
