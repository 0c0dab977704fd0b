"""Helpers for sync tests: devices (one account, several folders) and tree snapshots."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_client.api import SatchelClient
from python_client.sync.engine import Engine
from tests.conftest import PASSWORD


@dataclass
class Dev:
    name: str
    root: Path
    client: SatchelClient
    engine: Engine

    async def sync(self) -> int:
        return await self.engine.until_quiet()

    def write(self, rel: str, data: bytes) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


async def make_dev(url: str, user: str, name: str, base: Path, *, signup: bool = False, token: str | None = None,
                   **kw: Any) -> Dev:
    """A device of *user* syncing ``base/name``; with *token*, a device already logged in (no
    password hashing: the convergence test makes hundreds of devices)."""
    client = SatchelClient(url, token)
    if signup:
        await client.signup(user, PASSWORD)
    if token is None:
        await client.login(user, PASSWORD, name)
    root = base / name
    engine = Engine(client, root, device=name, **kw)
    engine.bind(url, user)
    return Dev(name, root, client, engine)


async def close_dev(dev: Dev) -> None:
    await dev.engine.aclose()
    await dev.client.aclose()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) below *root*, without ``.satchel``."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != ".satchel"]
        else:
            out["/" + rel] = None
        for f in filenames:
            key = "/" + os.path.normpath(os.path.join(rel, f))
            out[key] = Path(dirpath, f).read_bytes()
    return out


async def server_tree(client: SatchelClient) -> dict[str, bytes | None]:
    """The server's tree with file contents (small files only)."""
    out: dict[str, bytes | None] = {}
    folders = ["/"]
    while folders:
        for e in await client.list(folders.pop()):
            if e["kind"] == "dir":
                out[e["path"]] = None
                folders.append(e["path"])
            else:
                r = await client.http.get(client.content_url(e["id"]), headers=client._headers())
                out[e["path"]] = r.content
    return out


Factory = Callable[..., Any]
