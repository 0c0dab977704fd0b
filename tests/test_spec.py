"""protocol.md must say exactly what the code does: every error code with its status, every route."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route, WebSocketRoute

from server.app import create_app
from server.config import Config
from server.core.errors import STATUS, ErrorCode
from server.ws.protocol import CloseCode, MsgType

SPEC = (Path(__file__).parent.parent / "protocol.md").read_text()


def test_every_error_code_is_in_the_table_with_its_status():
    for code in ErrorCode:
        assert re.search(rf"\| `{code.value}` \| {STATUS[code]} \|", SPEC), f"protocol.md: add {code.value}"


def test_every_route_is_documented():
    def shape(path: str) -> str:  # placeholder names may differ: {id} in prose, {file_id} in code
        return re.sub(r"{\w+}", "{}", path)

    spec = shape(SPEC)
    for r in create_app(Config()).routes:
        if isinstance(r, Route | WebSocketRoute):
            assert f"`{shape(r.path)}" in spec, f"protocol.md: document {r.path}"


def test_every_message_type_and_close_code_is_documented():
    for t in MsgType:
        assert re.search(rf"\| {t.value} \| `{t.name}` \|", SPEC), f"protocol.md: message {t.name}"
    for c in CloseCode:
        assert re.search(rf"\| {c.value} \|", SPEC), f"protocol.md: close code {c.value}"
