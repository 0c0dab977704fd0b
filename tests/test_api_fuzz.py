"""Fuzzing every route of the app against one real server: never a 5xx, every 4xx a stable code.

The route table comes from ``create_app`` itself, so a new route is fuzzed without editing this file.
Bodies are random JSON values, random bytes, or a valid body with one field replaced by a random
value (how most bad input looks: almost right); path parameters are random strings and integers
mixed with ids that exist; query strings and headers are random too. SQLite + local chunks only:
the other stack's input handling is the same code, and test_bad_input.py covers both.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from server.app import create_app
from server.config import Config
from server.core.chunking import hash_bytes
from server.core.errors import STATUS, ErrorCode
from tests.conftest import PASSWORD
from tests.harness.server import ServerProcess

CASES = sorted(
    (r.path, m) for r in create_app(Config()).routes if isinstance(r, Route)
    for m in (r.methods or ()) if m != "HEAD" or r.path.endswith("/content")
)
JSON_ROUTES = {"/api/v1/files", "/api/v1/mkdir", "/api/v1/move", "/api/v1/delete", "/api/v1/auth/signup",
               "/api/v1/auth/login", "/api/v1/uploads/{upload_id}/patch"}
BODY_CASES = [c for c in CASES if c[0] in JSON_ROUTES]
OTHER_CASES = [c for c in CASES if c[0] not in JSON_ROUTES]
# ~150 requests in all, the routes that parse a body getting more of them.
BODY_EXAMPLES, OTHER_EXAMPLES = 12, max(3, (150 - 12 * len(BODY_CASES)) // len(OTHER_CASES))
PARAM = re.compile(r"{(\w+)}")
DATA = b"fuzz!"
DATA_HASH = hash_bytes(DATA).hex()
DROP = object()  # a mutation that removes the field

# Pieces that broke (or could break) input handling: NUL and other controls, lone surrogates (JSON
# carries them, UTF-8 cannot), dot segments, over-long names, non-ASCII digits, numbers past 32 and 64 bits.
NASTY = ["\x00", "\x01", "\x7f", "\n", "\ud800", "\udfff", "\u0085", "\u2603", "\u0661", "\\", "/", "//", ".",
         "..", "x" * 256, " ", "%00", "-1", "ab" * 32]
nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=4), min_size=1, max_size=5).map("".join)
nasty_ints = st.sampled_from([-1, 0, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**17, 10**20, -(2**63) - 1])
any_text = st.text(st.characters(exclude_categories=()), max_size=24)  # lone surrogates included
scalars = (st.none() | st.booleans() | st.integers() | nasty_ints | st.floats() | any_text | nasty_text
           | st.sampled_from(["/", "/fz", "/fz/d", DATA_HASH, ""]))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
query_keys = st.sampled_from(["path", "after", "limit", "offset", "rev", "sig", "exp", "o", "n", "u"]) | st.text(
    max_size=6)
query_values = (st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str) | nasty_ints.map(str)
                | st.sampled_from(["/", "/keep", "/keep/f.bin", "0", "-1", "1e3", "%00", "\x00", "..", "", "\u0661"]))
queries = st.dictionaries(query_keys, query_values, max_size=4)
ranges = st.none() | st.from_regex(r"bytes=[0-9]{0,22}-[0-9]{0,22}", fullmatch=True) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip)  # h11: no outer blanks


@dataclass
class Target:
    """The server under fuzz, with a user, a file, a folder and an open upload to aim at."""

    server: ServerProcess
    http: httpx.Client
    name: str
    token: str = ""
    device_id: int = 0
    file_id: int = 0
    dir_id: int = 0
    upload_id: str = ""

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, self.server.url + path,
                                 headers={"Authorization": f"Bearer {self.token}"}, **kw)

    def login(self) -> None:
        r = self.http.post(self.server.url + "/api/v1/auth/login",
                           json={"name": self.name, "password": PASSWORD, "device_name": "fuzzer"})
        assert r.status_code == 200, r.text
        self.token, self.device_id = r.json()["token"], r.json()["device_id"]

    def ensure_logged_in(self) -> None:
        if self.call("GET", "/api/v1/account").status_code == 401:  # a fuzzed logout hit our device
            self.login()


@pytest.fixture(scope="module")
def target(start_server: Callable[..., ServerProcess]) -> Iterator[Target]:
    srv = start_server("sqlite-local")
    with httpx.Client(timeout=30) as http:
        t = Target(srv, http, "fz" + secrets.token_hex(5))
        r = http.post(srv.url + "/api/v1/auth/signup", json={"name": t.name, "password": PASSWORD})
        assert r.status_code == 201, r.text
        t.login()
        info = t.call("POST", "/api/v1/files", json={"path": "/keep/f.bin", "size": len(DATA), "parent_rev": None,
                                                      "chunks": [[DATA_HASH, len(DATA)]]}).json()
        for m in info["missing"]:
            assert http.put(m["url"], content=DATA).status_code == 201
        t.file_id = t.call("POST", f"/api/v1/uploads/{info['upload_id']}/commit").json()["id"]
        t.dir_id = t.call("GET", "/api/v1/stat", params={"path": "/keep"}).json()["id"]
        t.upload_id = t.call("POST", "/api/v1/files", json={"path": "/keep/open.bin", "size": 3, "parent_rev": None,
                                                            "chunks": [["cd" * 32, 3]]}).json()["upload_id"]
        yield t


def valid_body(route: str, t: Target) -> dict[str, Any] | None:
    """A body the route accepts (or nearly): the starting point of a one-field mutation."""
    return {
        "/api/v1/files": {"path": "/fz/new.bin", "size": len(DATA), "parent_rev": None,
                          "chunks": [[DATA_HASH, len(DATA)]], "mtime": 1_700_000_000_000, "mime": "text/plain"},
        "/api/v1/mkdir": {"path": "/fz/d"},
        "/api/v1/move": {"from": "/fz/d", "to": "/fz/e"},
        "/api/v1/delete": {"path": "/fz/e"},
        "/api/v1/auth/signup": {"name": "fz" + secrets.token_hex(4), "password": "long enough password"},
        "/api/v1/auth/login": {"name": t.name, "password": PASSWORD, "device_name": "fz", "device_kind": "cli"},
    }.get(route)


def bodies(route: str, t: Target) -> st.SearchStrategy[bytes]:
    raw = st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64),
                    st.sampled_from([b"", b"[" * 100_000, b'{"a":' * 50_000, b"NaN", b'"\\ud800"']))
    base = valid_body(route, t)
    if base is None:
        return raw

    def mutate(change: tuple[str, object]) -> bytes:
        key, value = change
        body = {k: v for k, v in base.items() if k != key}
        if value is not DROP:
            body[key] = value
        return json.dumps(body).encode()

    mutations = st.tuples(st.sampled_from([*base, "extra"]), json_values | st.just(DROP)).map(mutate)
    return st.one_of(mutations, mutations, raw)  # mostly almost-right bodies


def path_params(t: Target) -> st.SearchStrategy[str]:
    known = [str(t.file_id), str(t.dir_id), t.upload_id, str(t.device_id), DATA_HASH, "0", "1", "2147483648"]
    return st.one_of(st.sampled_from(known), st.integers(-(2**40), 2**70).map(str), nasty_ints.map(str),
                     st.text(max_size=20), nasty_text.filter(lambda x: not any(0xD800 <= ord(c) < 0xE000 for c in x)))


def check(resp: httpx.Response, method: str) -> None:
    where = f"{method} {str(resp.request.url)[:300]} -> {resp.status_code} {resp.text[:300]}"
    assert resp.status_code < 500, where
    if resp.status_code >= 400:
        if resp.status_code == 401:
            assert resp.headers.get("www-authenticate", "").lower().startswith("bearer"), where
        if method == "HEAD":
            return
        body = resp.json()
        assert isinstance(body, dict) and body.get("error") in ErrorCode.__members__, where
        assert isinstance(body.get("message"), str), where
        assert STATUS[ErrorCode(body["error"])] == resp.status_code, where


def fuzz_once(t: Target, route: str, method: str, data: st.DataObject) -> None:
    path = PARAM.sub(lambda _m: quote(data.draw(path_params(t)), safe=""), route)
    auth = data.draw(st.sampled_from(["valid", "valid", "valid", "none", "garbage"]))
    headers = {} if auth == "none" else {"Authorization": f"Bearer {t.token if auth == 'valid' else 'sat_nope'}"}
    rng = data.draw(ranges)
    if rng is not None:
        headers["Range"] = rng
    resp = t.http.request(method, t.server.url + path, params=data.draw(queries),
                          content=data.draw(bodies(route, t)), headers=headers)
    check(resp, method)
    if route in ("/api/v1/auth/logout", "/api/v1/devices/{device_id}"):
        t.ensure_logged_in()


FUZZ_SETTINGS: dict[str, Any] = {"deadline": None, "database": None, "suppress_health_check": [
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much]}


@pytest.mark.parametrize(("route", "method"), BODY_CASES, ids=[f"{m} {p}" for p, m in BODY_CASES])
@settings(max_examples=BODY_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_json_route_never_fails_on_bad_input(target: Target, route: str, method: str, data: st.DataObject) -> None:
    fuzz_once(target, route, method, data)


@pytest.mark.parametrize(("route", "method"), OTHER_CASES, ids=[f"{m} {p}" for p, m in OTHER_CASES])
@settings(max_examples=OTHER_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_route_never_fails_on_bad_input(target: Target, route: str, method: str, data: st.DataObject) -> None:
    fuzz_once(target, route, method, data)


def test_server_is_healthy_after_the_fuzz(target: Target) -> None:
    t = target
    r = t.http.get(t.server.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    t.ensure_logged_in()
    assert t.call("GET", f"/api/v1/files/{t.file_id}/content").content == DATA
    log = t.server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
