"""Shared fixtures: real servers (``satchel serve`` processes) on both storage stacks.

    stack "sqlite-local": the embedded default (SQLite file + local chunk folder)
    stack "pg-s3":        PostgreSQL (a fresh database) + S3 (rclone serve s3, SigV4 enforced)

Every test that takes ``server`` runs once per stack. Each test gets fresh users, so tests share a
server process without seeing each other's files. Nothing is mocked; a missing PostgreSQL or
rclone makes these tests fail, never skip.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from python_client.api import SatchelClient
from server.core.chunking import chunk_bytes
from tests.harness import logs, postgres
from tests.harness.s3 import RcloneS3
from tests.harness.server import VENV_BIN, ServerProcess

STACKS = ["sqlite-local", "pg-s3"]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def s3() -> Iterator[RcloneS3]:
    server = RcloneS3.start()
    try:
        yield server
    finally:
        server.stop()


def stack_env(stack: str, s3: RcloneS3 | None, prefix: str) -> dict[str, str]:
    if stack == "sqlite-local":
        return {}
    assert s3 is not None
    return {
        "DATABASE_URL": postgres.create_database(),
        "SATCHEL_BLOB_URL": f"s3://{s3.bucket}/{prefix}",
        "SATCHEL_S3_ENDPOINT": s3.endpoint,
        "SATCHEL_S3_ACCESS_KEY": s3.access_key,
        "SATCHEL_S3_SECRET_KEY": s3.secret_key,
        # No browser uses these servers (tests/web sets its origin): skip the CORS set-up and check.
        "SATCHEL_S3_CORS_ORIGINS": "none",
    }


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for extra servers with their own settings (stopped at session end)."""
    started: list[tuple[ServerProcess, str | None]] = []

    def start(stack: str = "sqlite-local", *, s3: RcloneS3 | None = None, port: int | None = None,
              **env: str) -> ServerProcess:
        """*s3*: another S3 server than the session's; *port*: a port picked beforehand."""
        if stack == "pg-s3" and s3 is None:
            s3 = request.getfixturevalue("s3")
        full = stack_env(stack, s3, "p" + secrets.token_hex(4)) | env
        srv = ServerProcess(tmp_path_factory.mktemp(stack), full, port=port).start()
        started.append((srv, full.get("DATABASE_URL")))
        return srv

    yield start
    for srv, db in started:
        srv.stop()
        if db:
            postgres.drop_database(db)


@pytest.fixture(scope="session", params=STACKS)
def server(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(request.param)


@dataclass
class User:
    name: str
    password: str
    client: SatchelClient


@pytest.fixture
async def make_user(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., object]]:
    """``await make_user(device, name=None, srv=None)``: a logged-in user (on ``server`` unless *srv*).

    Asking for the same *name* again logs another device of that user in.
    """
    clients: list[SatchelClient] = []

    async def make(device: str = "dev1", name: str | None = None, srv: ServerProcess | None = None) -> User:
        srv = srv or request.getfixturevalue("server")
        name = name or "u" + secrets.token_hex(5)
        c = SatchelClient(srv.url)
        clients.append(c)
        try:
            await c.signup(name, PASSWORD)
        except Exception as exc:  # the same name again = another device of the same user
            if "user_exists" not in repr(exc):
                raise
        await c.login(name, PASSWORD, device)
        return User(name, PASSWORD, c)

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def alice(make_user: Callable[..., object], server: ServerProcess) -> User:
    return await make_user(srv=server)  # type: ignore[no-any-return, misc]


@dataclass
class Device:
    """A CLI 'device': its own config dir, running the real ``satchel`` command."""

    config_dir: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SATCHEL_CONFIG_DIR": str(self.config_dir)}
        proc = subprocess.run([str(VENV_BIN / "satchel"), *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"satchel {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def device_factory(tmp_path: Path) -> Callable[[str], Device]:
    def make(name: str) -> Device:
        return Device(tmp_path / f"config-{name}")

    return make


def api(server: ServerProcess, method: str, path: str, token: str | None = None, **kw: object) -> httpx.Response:
    """One raw HTTP request, for tests of exact status codes and bodies."""
    headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def several_chunks(size: int, at_least: int = 3) -> bytes:
    """Random bytes that cut into at least *at_least* chunks: a few hundred KB of random data is
    one chunk now and then (no cut point came up), and a test about chunk ranges needs several."""
    while True:
        data = secrets.token_bytes(size)
        if sum(1 for _ in chunk_bytes(data)) >= at_least:
            return data


def random_file(path: Path, size: int, seed: int | None = None) -> Path:
    """Write *size* pseudo-random bytes in 1 MiB pieces (never the whole file in memory)."""
    import random

    rng = random.Random(seed if seed is not None else secrets.randbits(32))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


assert sys.version_info >= (3, 11)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Soak runs take as long as they take: only default-suite tests get the 5-minute hang guard."""
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(pytest.mark.timeout(0))


_LOG_MARK = pytest.StashKey[dict[Path, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_MARK] = logs.sizes()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report carries what the server processes logged while it ran."""
    report = yield
    if report.failed and _LOG_MARK in item.stash:
        for name, text in logs.written_since(item.stash[_LOG_MARK]):
            report.sections.append((name, text))
    return report
