"""Runs the JavaScript library's `node --test` suites as part of the Python suite.

Unit tests (frames and chunker against the shared vectors) run once; the library's tests against a
real server run on both stacks (with S3, chunk PUTs go to presigned URLs of the object store).
"""

from __future__ import annotations

import os
import re
import subprocess

from tests.harness.server import ServerProcess
from tests.web.conftest import ROOT, node_bin

CLIENT = ROOT / "client_js"


def run_node(*files: str, env: dict[str, str] | None = None) -> None:
    if not (CLIENT / "node_modules").is_dir():
        raise AssertionError("client_js/node_modules is missing: run ./dev setup (npm ci in client_js/)")
    proc = subprocess.run([node_bin(), "--test", "--test-reporter=tap", *files], cwd=CLIENT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"node --test failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    passed = re.search(r"^# pass (\d+)$", proc.stdout, re.M)
    assert passed and int(passed.group(1)) > 0 and "\n# fail 0\n" in proc.stdout, proc.stdout[-2000:]


def test_js_unit_suites() -> None:
    run_node("test/frames.test.js", "test/chunker.test.js")


def test_js_library_against_the_server(server: ServerProcess) -> None:
    run_node("test/server.test.js", env={"SATCHEL_TEST_SERVER": server.url})


def test_js_coedit_provider_against_the_server(server: ServerProcess) -> None:
    run_node("test/coedit.test.js", env={"SATCHEL_TEST_SERVER": server.url})


def test_js_types_check() -> None:
    tsc = CLIENT / "node_modules" / ".bin" / "tsc"
    proc = subprocess.run([node_bin(), str(tsc), "-p", "jsconfig.json"], cwd=CLIENT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"tsc --checkJs found problems:\n{proc.stdout}{proc.stderr}"
