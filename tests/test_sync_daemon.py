"""`satchel sync` and `satchel status` as a user runs them: real daemons (one config dir and one
folder per device) against a real server, changes travelling by watchdog events and WebSocket
pushes; offline periods, a server restart, a client killed mid-download; blocked uploads."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from python_client.api import SatchelClient
from python_client.sync.engine import Engine
from python_client.sync.status import BLOCKED, UP_TO_DATE, folder_status
from tests.conftest import PASSWORD, Device, random_file
from tests.harness.server import VENV_BIN, ServerProcess, terminate
from tests.sync_helpers import snapshot


@pytest.fixture(scope="module")
def daemon_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local")


BIG = 200 * 1024 * 1024  # the "a 200 MB file"


class SyncDevice(Device):
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "SATCHEL_CONFIG_DIR": str(self.config_dir)}
        log = open(self.config_dir / "daemon.out", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([str(VENV_BIN / "satchel"), "sync", str(self.folder)], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def output(self) -> str:
        return (self.config_dir / "daemon.out").read_text(errors="replace")


@pytest.fixture
def pair(daemon_server: ServerProcess, tmp_path: Path) -> Iterator[tuple[SyncDevice, SyncDevice]]:
    user = "d" + secrets.token_hex(5)
    devs = []
    for name in ("laptop", "desktop"):
        d = SyncDevice(tmp_path / f"config-{name}")
        d.folder = tmp_path / f"Satchel-{name}"
        if not devs:
            d.run("signup", daemon_server.url, user, "--password-stdin", stdin=PASSWORD + "\n")
        d.run("login", daemon_server.url, user, "--password-stdin", "--device", name, stdin=PASSWORD + "\n")
        devs.append(d)
    yield devs[0], devs[1]
    for d in devs:
        d.stop()


def wait_for(check: Callable[[], bool], timeout: float = 20, what: str = "") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def same(a: SyncDevice, b: SyncDevice) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return snapshot(a.folder) == snapshot(b.folder)
        except OSError:  # a file renamed or replaced while we read the folders: look again
            return False

    return check


def test_two_daemons_stay_identical(pair: tuple[SyncDevice, SyncDevice]) -> None:
    a, b = pair
    a.start()
    b.start()
    (a.folder / "hello.txt").parent.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)  # both daemons up and subscribed
    (a.folder / "hello.txt").write_bytes(b"hello from the laptop")
    took = wait_for(lambda: (b.folder / "hello.txt").exists()
                    and (b.folder / "hello.txt").read_bytes() == b"hello from the laptop", what="push")
    assert took < 5, f"a small file took {took:.2f}s to arrive"
    (b.folder / "docs").mkdir()
    for i in range(50):
        (b.folder / "docs" / f"{i}.txt").write_text(str(i))
    (b.folder / "empty").write_bytes(b"")
    wait_for(same(a, b), what="50 small files")
    # Same bytes on disk is not yet "synced": the laptop records its downloads just after. Renaming
    # before that is a rename of files it never synced (sent as new files, which the test is not about).
    wait_for(lambda: not json.loads(a.run("status", str(a.folder), "--json").stdout)["paths"],
             what="the laptop to record its downloads")
    (a.folder / "docs").rename(a.folder / "papers")
    (a.folder / "hello.txt").unlink()
    wait_for(same(a, b), what="rename + delete")
    assert (b.folder / "papers" / "49.txt").read_text() == "49"
    assert list((b.folder / ".satchel" / "trash").rglob("hello.txt"))
    assert "→ move remote /docs -> /papers" in a.output(), "sent as a move, not re-uploaded"
    assert "→ move local /docs -> /papers" in b.output(), "renamed on disk, not downloaded again"


def test_status_per_file(pair: tuple[SyncDevice, SyncDevice], daemon_server: ServerProcess) -> None:
    a, b = pair
    b.folder.mkdir()
    (b.folder / "same.txt").write_text("same")
    (b.folder / "both.txt").write_text("v0")
    (b.folder / "theirs.txt").write_text("v0")
    b.run("sync", str(b.folder), "--once", "-q")
    a.run("sync", str(a.folder), "--once", "-q")
    (a.folder / "theirs.txt").write_text("v1 from the laptop")
    (a.folder / "both.txt").write_text("laptop's version")
    a.run("sync", str(a.folder), "--once", "-q")
    (b.folder / "both.txt").write_text("desktop's version")
    (b.folder / "mine.txt").write_text("new on the desktop")
    out = json.loads(b.run("status", str(b.folder), "--json", "--all").stdout)
    states = {p["path"]: p["state"] for p in out["paths"]}
    assert states == {"/same.txt": "up to date", "/theirs.txt": "waiting to download",
                      "/mine.txt": "waiting to upload", "/both.txt": "conflict"}
    (b.folder / "sub").mkdir()
    text = b.run("status", str(b.folder / "sub")).stdout  # found from a folder inside
    lines = {(line[21:].split("  (")[0], line[:20].strip()) for line in text.splitlines()[:-1]}
    assert ("/theirs.txt", "waiting to download") in lines and ("/sub/", "waiting to upload") in lines
    b.run("sync", str(b.folder), "--once", "-q")
    a.run("sync", str(a.folder), "--once", "-q")
    assert snapshot(a.folder) == snapshot(b.folder)
    out = json.loads(b.run("status", str(b.folder), "--json").stdout)
    assert out["paths"] == [] and set(out["counts"]) == {"up to date"}


def test_offline_edits_and_server_restart(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    srv = start_server("sqlite-local")
    user = "o" + secrets.token_hex(5)
    a, b = SyncDevice(tmp_path / "ca"), SyncDevice(tmp_path / "cb")
    a.folder, b.folder = tmp_path / "A", tmp_path / "B"
    a.run("signup", srv.url, user, "--password-stdin", stdin=PASSWORD + "\n")
    for d, n in ((a, "a"), (b, "b")):
        d.run("login", srv.url, user, "--password-stdin", "--device", n, stdin=PASSWORD + "\n")
    try:
        a.start()
        b.start()
        a.folder.mkdir(exist_ok=True)
        (a.folder / "before.txt").write_text("before")
        wait_for(same(a, b), what="first file")
        srv.stop()
        (a.folder / "while-down.txt").write_text("written while the server was down")
        (b.folder / "before.txt").write_text("edited offline on b")
        time.sleep(1.0)
        srv.start()
        wait_for(lambda: (b.folder / "while-down.txt").exists()
                 and (a.folder / "before.txt").read_text() == "edited offline on b", timeout=40,
                 what="reconciliation after the server came back")
        wait_for(same(a, b), what="convergence")
    finally:
        a.stop()
        b.stop()
        srv.stop()


def test_client_killed_mid_download_never_leaves_a_half_file(pair: tuple[SyncDevice, SyncDevice]) -> None:
    a, b = pair
    a.folder.mkdir()
    random_file(a.folder / "big.bin", BIG, seed=4)
    a.run("sync", str(a.folder), "--once", "-q")
    b.folder.mkdir()
    (b.folder / "big.bin").write_bytes(b"an older local version")
    b.start()
    wait_for(lambda: any(b.folder.glob("*.satchel-part")), timeout=30, what="the download to start")
    b.kill()
    # the target is either the old local bytes (kept as a conflicted copy, or untouched) or complete
    target = b.folder / "big.bin"
    assert not target.exists() or target.stat().st_size in (22, BIG)
    b.start()
    wait_for(lambda: target.exists() and target.stat().st_size == BIG
             and not any(b.folder.glob("*.satchel-part")), timeout=60, what="resume")
    b.stop()
    assert (b.folder / "big.bin").read_bytes() == (a.folder / "big.bin").read_bytes()
    assert [p.read_bytes() for p in b.folder.glob("big (conflicted copy*")] == [b"an older local version"]


async def test_quota_blocks_without_spinning(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    srv = start_server("sqlite-local", SATCHEL_DEFAULT_QUOTA="100000")
    user = "q" + secrets.token_hex(4)
    client = SatchelClient(srv.url)
    await client.signup(user, PASSWORD)
    await client.login(user, PASSWORD, "laptop")
    root = tmp_path / "Q"
    engine = Engine(client, root, device="laptop")
    try:
        (root / "small.txt").write_bytes(b"fits")
        (root / "big.bin").write_bytes(secrets.token_bytes(200_000))
        await engine.until_quiet()
        assert engine.state.blocked["/big.bin"].code == "quota_exceeded"
        r = await engine.round()
        assert r.actions == [], "a blocked upload is not retried in a loop"
        st = await folder_status(client, root)
        got = {p.path: p.state for p in st.paths}
        assert got == {"/small.txt": UP_TO_DATE, "/big.bin": BLOCKED}
        (root / "big.bin").write_bytes(b"smaller now")  # the file changed: try again at once
        await engine.until_quiet()
        assert not engine.state.blocked
        assert (await client.stat("/big.bin"))["size"] == 11
    finally:
        await engine.aclose()
        await client.aclose()
