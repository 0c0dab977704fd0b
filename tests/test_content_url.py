"""Signed content URLs (``GET /api/v1/files/{id}/content-url``): a revision's bytes without a token,
so a browser's download manager can stream a big file to disk and resume it with Range."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.conftest import PASSWORD, Device, ServerProcess, User, random_file

MakeUser = Callable[..., object]


async def _user(make_user: MakeUser, **kw: object) -> User:
    return await make_user(**kw)  # type: ignore[no-any-return, misc]


def _tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(q)).geturl()


async def test_signed_url_streams_the_pinned_revision_with_range(
        server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    alice = await _user(make_user)
    first = random_file(tmp_path / "a.bin", 300_000)
    entry = await alice.client.upload(first, "/a.bin")
    out = await alice.client.signed_content_url(entry["id"])
    assert (out["rev"], out["size"]) == (entry["rev"], 300_000) and out["expires_at"]
    url = out["url"]
    assert url.startswith(server.url + f"/api/v1/files/{entry['id']}/content?")

    whole = httpx.get(url, timeout=30)  # no Authorization header
    assert whole.status_code == 200 and whole.content == first.read_bytes()
    assert whole.headers["accept-ranges"] == "bytes" and "attachment" in whole.headers["content-disposition"]
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert part.status_code == 206 and part.content == first.read_bytes()[1000:2000]
    assert httpx.head(url, timeout=30).status_code == 200

    # A newer revision does not change what the URL serves: a resumed download stays consistent.
    second = tmp_path / "b.bin"
    second.write_bytes(b"new content")
    await alice.client.upload(second, "/a.bin", parent_rev=entry["rev"])
    assert httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=30).content == first.read_bytes()[:10]
    newest = await alice.client.signed_content_url(entry["id"])
    assert httpx.get(newest["url"], timeout=30).content == b"new content"


async def test_tampered_expired_logged_out_and_removed_member(
        start_server: Callable[..., ServerProcess], make_user: MakeUser, tmp_path: Path) -> None:
    srv = start_server("sqlite-local", SATCHEL_URL_TTL="2s")
    owner = await _user(make_user, srv=srv)
    friend = await _user(make_user, srv=srv)
    entry = await owner.client.upload(random_file(tmp_path / "p.bin", 5000), "/Team/p.bin")
    url = (await owner.client.signed_content_url(entry["id"]))["url"]

    def error(u: str) -> tuple[int, str]:
        r = httpx.get(u, timeout=30)
        return r.status_code, r.json()["error"]

    assert httpx.get(url, timeout=30).status_code == 200
    other = await owner.client.upload(random_file(tmp_path / "q.bin", 10), "/q.bin")
    assert error(_tampered(url, rev=str(other["rev"]))) == (403, "bad_signature")
    device = parse_qs(urlsplit(url).query)["d"][0]
    assert error(_tampered(url, d=str(int(device) + 1))) == (403, "bad_signature")  # another device
    assert error(_tampered(url, sig="x" * 43)) == (403, "bad_signature")
    assert error(url.replace(f"/files/{entry['id']}/", f"/files/{other['id']}/")) == (403, "bad_signature")
    assert error(url.split("?")[0] + "?sig=abc") == (403, "bad_signature")
    assert error(url.split("?")[0]) == (401, "unauthorized")  # neither token nor signature
    await asyncio.sleep(3.1)
    assert error(url) == (403, "url_expired")

    # A member's URL: dies with their membership, and with their device's log-out.
    await owner.client.share("/Team", friend.name, "viewer")
    mounted = {s["path"]: s for s in await friend.client.shares()}["/Team"]
    fid = (await friend.client.stat("/Team/p.bin"))["id"]
    member_url = (await friend.client.signed_content_url(fid))["url"]
    assert httpx.get(member_url, timeout=30).status_code == 200
    await owner.client.remove_member(mounted["ns"], (await friend.client.account())["id"])
    assert error(member_url) == (404, "not_found")
    mine = (await owner.client.signed_content_url(entry["id"]))["url"]
    await owner.client.logout()
    assert error(mine) == (401, "unauthorized")


def test_cli_prints_a_url_curl_can_fetch(server: ServerProcess, device_factory: Callable[[str], Device],
                                         tmp_path: Path) -> None:
    dev = device_factory("a")
    name = "c" + secrets.token_hex(4)
    dev.run("signup", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    dev.run("login", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    local = random_file(tmp_path / "f.bin", 70_000)
    dev.run("put", str(local), "/f.bin")
    url = dev.run("url", "/f.bin").stdout.strip()
    assert httpx.get(url, timeout=30).content == local.read_bytes()
