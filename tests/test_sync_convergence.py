"""Randomized convergence: several devices of one account perform random operations (create,
edit, rename, move, delete, folders, concurrent edits while one is offline), then go quiet.

Invariants after quiescence:
- every folder equals the server's tree;
- no write is lost: every content a device wrote (and did not itself overwrite or delete later)
  is a revision on the server (a head, a conflicted copy, or a version of a file in the trash);
- no file is a mix of two writes: every file holds exactly one content some device wrote.

A failing run prints its seed; replay it with ``SATCHEL_SYNC_SEED=<seed> ./dev test
tests/test_sync_convergence.py``. The default suite runs 200 seeds (one account, its tree emptied
between runs; every tenth with a fresh account and a server restart in the middle); ``-m soak``
runs 2,000 longer ones, each with a fresh account and a server restart in the middle.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from server.core.chunking import chunk_bytes, content_hash
from tests.harness.server import ServerProcess
from tests.sync_helpers import Dev, close_dev, make_dev, server_tree, snapshot

DEFAULT_SEEDS = 200  # one account reused across runs; 100 took 62 s in one process on an idle 2-core machine
SOAK_SEEDS = 2000  # ~3.2 s each (120 steps, a fresh server and account): about an hour on 2 cores


@pytest.fixture(scope="module")
def conv_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local")


def _files(dev: Dev) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(dev.root):
        dirnames[:] = [d for d in dirnames if d != ".satchel"]
        out += [Path(dirpath, f) for f in filenames]
    return sorted(out)


def _dirs(dev: Dev) -> list[Path]:
    out = []
    for dirpath, dirnames, _ in os.walk(dev.root):
        dirnames[:] = [d for d in dirnames if d != ".satchel"]
        out += [Path(dirpath, d) for d in dirnames]
    return sorted(out)


class Driver:
    def __init__(self, seed: int, devs: list[Dev]) -> None:
        self.rng = random.Random(seed)
        self.seed, self.devs = seed, devs
        self.offline: set[str] = set()
        self.written: set[bytes] = set()
        self.must_survive: set[tuple[str, bytes]] = set()
        self.log: list[str] = []
        self.n = 0

    def content(self) -> bytes:
        self.n += 1
        body = f"seed {self.seed} write {self.n}\n".encode()
        # mostly small files; now and then one of several chunks (delta uploads, reuse)
        size = self.rng.choice([0, 10, 100, 5000, 200_000]) if self.rng.random() < 0.9 else 700_000
        data = body + self.rng.randbytes(size)
        self.written.add(data)
        return data

    def _destroy(self, dev: Dev, path: Path) -> None:
        """The device itself overwrites or deletes *path*: what it held may legitimately go."""
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            self.must_survive.discard((dev.name, f.read_bytes()))

    def name(self) -> str:
        return self.rng.choice(["a", "b", "c", "notes", "x y", "é"]) + self.rng.choice(["", ".txt", ".bin"])

    def folder(self, dev: Dev) -> Path:
        dirs = _dirs(dev)
        return self.rng.choice([dev.root, *dirs]) if dirs and self.rng.random() < 0.6 else dev.root

    def step(self, dev: Dev) -> None:
        files, dirs = _files(dev), _dirs(dev)
        op = self.rng.choices(["create", "edit", "rename", "delete", "mkdir", "mvdir", "rmdir"],
                              [5, 5, 2, 2, 2, 1, 1])[0]
        if op in ("edit", "rename", "delete") and not files:
            op = "create"
        if op in ("mvdir", "rmdir") and not dirs:
            op = "mkdir"
        if op == "create":
            target = self.folder(dev) / self.name()
            if target.exists():
                return
            data = self.content()
            target.write_bytes(data)
            self.must_survive.add((dev.name, data))
        elif op == "edit":
            target = self.rng.choice(files)
            self._destroy(dev, target)
            data = self.content()
            target.write_bytes(data)
            self.must_survive.add((dev.name, data))
        elif op == "rename":
            src = self.rng.choice(files)
            dst = self.folder(dev) / self.name()
            if dst.exists():
                return
            src.rename(dst)
            target = dst
        elif op == "delete":
            target = self.rng.choice(files)
            self._destroy(dev, target)
            target.unlink()
        elif op == "mkdir":
            target = self.folder(dev) / ("d" + self.name())
            if target.exists():
                return
            target.mkdir()
        elif op == "mvdir":
            src = self.rng.choice(dirs)
            dst = self.folder(dev) / ("m" + self.name())
            if dst.exists() or dst.is_relative_to(src):
                return
            src.rename(dst)
            target = dst
        else:
            target = self.rng.choice(dirs)
            self._destroy(dev, target)
            shutil.rmtree(target)
        self.log.append(f"{dev.name}: {op} {target.relative_to(dev.root)}")

    async def run(self, steps: int, restart: Callable[[], None] | None = None) -> None:
        for i in range(steps):
            dev = self.rng.choice(self.devs)
            roll = self.rng.random()
            if roll < 0.55:
                self.step(dev)
            elif roll < 0.9:
                if dev.name not in self.offline:
                    self.log.append(f"{dev.name}: sync")
                    try:
                        await dev.engine.round() if self.rng.random() < 0.5 else await dev.sync()
                    except httpx.TransportError:  # the server restarting: a daemon backs off and retries
                        self.log.append(f"{dev.name}: sync failed (server down)")
            elif dev.name in self.offline:
                self.offline.discard(dev.name)
                self.log.append(f"{dev.name}: online")
            else:
                self.offline.add(dev.name)
                self.log.append(f"{dev.name}: offline")
            if restart and i == steps // 2:
                self.log.append("server restart")
                restart()

    async def quiesce(self) -> None:
        self.offline.clear()
        for _ in range(8):
            busy = False
            for dev in self.devs:
                r = await dev.engine.round()
                busy = busy or bool(r.actions)
            if not busy:
                return
        raise AssertionError("no quiescence after 8 passes")


def _server_contents(srv: ServerProcess) -> set[str]:
    db = sqlite3.connect(srv.data_dir / "satchel.db")
    try:
        return {row[0] for row in db.execute("SELECT content_hash FROM revisions")}
    finally:
        db.close()


_ACCOUNTS: dict[str, tuple[str, list[str]]] = {}  # server URL -> (user, three device tokens)


async def _devices(srv: ServerProcess, base: Path, fresh: bool) -> list[Dev]:
    """Three devices of one account with an empty tree. Unless *fresh*, the account and its
    device logins are reused from the previous run on this server (its tree moved to the trash
    first): signing up and logging in (argon2) was half of a run's cost."""
    if fresh or srv.url not in _ACCOUNTS:
        user = "c" + secrets.token_hex(5)
        devs = [await make_dev(srv.url, user, "d0", base, signup=True)]
        devs += [await make_dev(srv.url, user, f"d{i}", base) for i in (1, 2)]
        _ACCOUNTS[srv.url] = (user, [d.client.token or "" for d in devs])
        return devs
    user, tokens = _ACCOUNTS[srv.url]
    devs = [await make_dev(srv.url, user, f"d{i}", base, token=t) for i, t in enumerate(tokens)]
    for e in await devs[0].client.list("/"):
        await devs[0].client.delete(e["path"])
    return devs


async def one_run(seed: int, srv: ServerProcess, base: Path, steps: int, restart: bool = False) -> None:
    devs = await _devices(srv, base, fresh=restart)
    driver = Driver(seed, devs)

    def restart_server() -> None:
        srv.stop()
        srv.start()

    try:
        await driver.run(steps, restart_server if restart else None)
        await driver.quiesce()
        want = await server_tree(devs[0].client)
        for d in devs:
            assert snapshot(d.root) == want, f"{d.name} differs from the server"
        stored = _server_contents(srv)
        for dev_name, data in driver.must_survive:
            assert content_hash(r.digest for r in chunk_bytes(data)) in stored, \
                f"lost a write of {dev_name}: {data[:30]!r}"
        for path, data in want.items():
            assert data is None or data in driver.written, f"{path} holds bytes nobody wrote"
    except BaseException:
        print(f"\nconvergence seed {seed} failed; operations:\n  " + "\n  ".join(driver.log))
        raise
    finally:
        for d in devs:
            await close_dev(d)


def _seeds(n: int) -> list[int]:
    env = os.environ.get("SATCHEL_SYNC_SEED")
    return [int(env)] if env else list(range(n))


@pytest.mark.parametrize("seed", _seeds(DEFAULT_SEEDS))
async def test_random_operations_converge(seed: int, conv_server: ServerProcess, tmp_path: Path) -> None:
    # Every tenth run restarts the server halfway through (devices mid-sync see it go away).
    await one_run(seed, conv_server, tmp_path, steps=30, restart=seed % 10 == 9)


@pytest.mark.soak
@pytest.mark.parametrize("seed", _seeds(SOAK_SEEDS))
async def test_random_operations_converge_soak(seed: int, start_server: Callable[..., ServerProcess],
                                               tmp_path: Path) -> None:
    srv = start_server("sqlite-local")
    try:
        await one_run(10_000 + seed, srv, tmp_path, steps=120, restart=True)
    finally:
        srv.stop()
