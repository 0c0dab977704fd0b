"""Two headless Syncthing instances (the Debian package) sharing one folder over loopback, driven
through their REST API: the reference for bench/sync.py's initial-sync and edit workloads.

Each instance gets its own home (``syncthing generate``), a fixed API key, a GUI/REST port and a
listen port on 127.0.0.1; discovery, relays, NAT traversal and usage reporting are off. The two
know each other by device id and address, and share folder ``bench``. After a change on A the
benchmark asks A to rescan at once (``POST /rest/db/scan``), so Syncthing's file-watcher delay
(10 s by default) is not counted against it: its figure is transfer and apply time, best case.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness.server import free_port, terminate

FOLDER = "bench"


def available() -> bool:
    return shutil.which("syncthing") is not None


class Instance:
    def __init__(self, work: Path, name: str) -> None:
        self.name = name
        self.home = work / f"syncthing-{name}"
        self.folder = work / f"Syncthing-{name}"
        self.gui_port, self.listen_port = free_port(), free_port()
        self.key = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.device_id = ""
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.gui_port}", headers={"X-API-Key": self.key},
                                 timeout=30)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["syncthing", "generate", f"--home={self.home}", "--no-default-folder"], check=True,
                       capture_output=True)
        self.device_id = subprocess.run(["syncthing", "serve", f"--home={self.home}", "--device-id"], check=True,
                                        capture_output=True, text=True).stdout.strip()
        env = {**os.environ, "STNODEFAULTFOLDER": "1", "STNOUPGRADE": "1", "STNORESTART": "1"}
        self.proc = subprocess.Popen(
            ["syncthing", "serve", f"--home={self.home}", "--no-browser", "--no-restart", "--no-upgrade",
             "--no-default-folder", "--skip-port-probing", f"--gui-address=127.0.0.1:{self.gui_port}",
             f"--gui-apikey={self.key}", f"--logfile={self.home / 'syncthing.log'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.get("/rest/system/ping").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"syncthing {self.name} did not start")
        options = self.http.get("/rest/config/options").json()
        options.update({"listenAddresses": [f"tcp://127.0.0.1:{self.listen_port}"], "globalAnnounceEnabled": False,
                        "localAnnounceEnabled": False, "relaysEnabled": False, "natEnabled": False,
                        "urAccepted": -1, "crashReportingEnabled": False, "startBrowser": False})
        self.http.put("/rest/config/options", json=options).raise_for_status()

    def share_with(self, other: Instance) -> None:
        self.http.post("/rest/config/devices", json={
            "deviceID": other.device_id, "name": other.name,
            "addresses": [f"tcp://127.0.0.1:{other.listen_port}"]}).raise_for_status()
        self.http.post("/rest/config/folders", json={
            "id": FOLDER, "label": FOLDER, "path": str(self.folder), "type": "sendreceive",
            "devices": [{"deviceID": self.device_id}, {"deviceID": other.device_id}],
            "rescanIntervalS": 3600, "fsWatcherEnabled": True, "fsWatcherDelayS": 1}).raise_for_status()

    def connected(self, other: Instance) -> bool:
        conns: dict[str, Any] = self.http.get("/rest/system/connections").json()["connections"]
        return bool(conns.get(other.device_id, {}).get("connected"))

    def scan(self) -> None:
        self.http.post("/rest/db/scan", params={"folder": FOLDER}).raise_for_status()

    def stop(self) -> None:
        with contextlib.suppress(httpx.TransportError):
            self.http.post("/rest/system/shutdown")
        terminate(self.proc)
        self.http.close()


class Pair:
    """Syncthing A and B sharing folder ``bench``; ``a.folder`` and ``b.folder`` are the two copies."""

    def __init__(self, work: Path) -> None:
        self.a, self.b = Instance(work, "A"), Instance(work, "B")

    def start(self) -> Pair:
        for i in (self.a, self.b):
            i.start()
        self.a.share_with(self.b)
        self.b.share_with(self.a)
        deadline = time.monotonic() + 60
        while not (self.a.connected(self.b) and self.b.connected(self.a)):
            if time.monotonic() > deadline:
                raise RuntimeError("the two syncthing instances did not connect")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        for i in (self.a, self.b):
            i.stop()
