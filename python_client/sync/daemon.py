"""The long-lived ``satchel sync DIR``: rounds whenever the disk (watchdog) or the server (a push
on the WebSocket) says something changed, a periodic rescan as a safety net, capped exponential
backoff with jitter while the server is unreachable (local changes wait on disk meanwhile and are
reconciled on reconnect), and a clean stop on SIGINT/SIGTERM (state is committed per action, and
transfers resume, so stopping at any point is safe)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from pathlib import Path

import httpx

from python_client.api import SatchelClient
from python_client.live import CursorStore, watch_changes
from python_client.sync.engine import Engine
from python_client.sync.executor import purge_trash
from python_client.sync.model import Action
from python_client.sync.watcher import Watcher
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)
RESCAN_EVERY = 60.0   # seconds between rounds when nothing rings (sleep/resume, missed events)
DEBOUNCE = 0.03       # quiet time after a local event before a round (a burst makes one)
DEBOUNCE_MAX = 2.0
MAX_BACKOFF = 10.0
REPLAN_PAUSE = 0.5


class Daemon:
    def __init__(self, client: SatchelClient, root: Path, *, device: str, device_id: int, server: str, user: str,
                 excludes: list[str] | None, settle: float = 0.3,
                 on_action: Callable[[Action], None] | None = None) -> None:
        self.client, self.root, self.device_id = client, root, device_id
        self.engine = Engine(client, root, device=device, excludes=excludes, settle=settle, on_action=on_action)
        self.engine.bind(server, user)
        self.remote_bell = asyncio.Event()
        self.settle = settle

    async def _doorbell(self) -> None:
        """Ring on every change another device makes (the round pulls the journal itself)."""
        async for change in watch_changes(self.client, CursorStore(), from_now=True):
            if change.get("device_id") != self.device_id:
                self.remote_bell.set()

    async def run(self) -> None:
        purge_trash(self.root)
        watcher = Watcher(self.root, asyncio.get_running_loop())
        watcher.start()
        self.engine.finished = watcher.finished_since
        bell = asyncio.create_task(self._doorbell())
        attempt = 0
        try:
            while True:
                if bell.done():
                    bell.result()  # the live channel gave up (logged out): stop with its error
                self.remote_bell.clear()
                try:
                    r = await self.engine.round()
                    attempt = 0
                except (httpx.TransportError, OSError) as exc:
                    attempt += 1
                    log.warning("server unreachable (%s); retrying", exc)
                    await self._wait(watcher, min(MAX_BACKOFF, 0.5 * 2**attempt) * (0.5 + random.random()))
                    continue
                except SatchelError as exc:
                    if exc.code is ErrorCode.unauthorized:
                        raise
                    attempt += 1
                    log.warning("round failed: %s [%s]; retrying", exc.message, exc.code.value)
                    await self._wait(watcher, min(MAX_BACKOFF, 0.5 * 2**attempt) * (0.5 + random.random()))
                    continue
                if r.actions and r.outcome.done:
                    continue  # more may follow (conflicts settle in two rounds)
                if r.actions and r.outcome.replan:
                    await self._wait(watcher, REPLAN_PAUSE)  # the disk or server moved on: look again soon
                    continue
                await self._wait(watcher, self.settle if r.busy else RESCAN_EVERY)
        finally:
            bell.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await bell
            watcher.stop()
            await self.engine.aclose()

    async def _wait(self, watcher: Watcher, timeout: float) -> None:
        local = asyncio.ensure_future(watcher.event.wait())
        remote = asyncio.ensure_future(self.remote_bell.wait())
        try:
            await asyncio.wait({local, remote}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            local.cancel()
            remote.cancel()
        if watcher.event.is_set():
            await watcher.settled(DEBOUNCE, DEBOUNCE_MAX)
