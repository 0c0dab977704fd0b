"""A real Satchel server process (``satchel serve``) on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness import logs

VENV_BIN = Path(sys.executable).parent


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM, wait up to *timeout*, then SIGKILL: every test and bench process stops this way."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = {**os.environ, "SATCHEL_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        logs.watch(self.log_path, f"satchel serve :{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "satchel"), "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as http:  # one client: each new one loads the CA store (~30 ms)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"satchel serve exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if http.get(self.url + "/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"satchel serve did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash case (no shutdown hooks run)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
