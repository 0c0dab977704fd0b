"""Accounts and devices end to end: sign-up, log-in per device, revocation, admin command."""

from __future__ import annotations

import subprocess

from tests.conftest import PASSWORD, api
from tests.harness.server import VENV_BIN


async def test_login_per_device_and_revocation(server, make_user):
    laptop = await make_user("laptop")
    phone = await make_user("phone", name=laptop.name)
    devices = await laptop.client.devices()
    assert {d["name"] for d in devices} == {"laptop", "phone"}
    assert [d["current"] for d in devices if d["name"] == "laptop"] == [True]
    acct = await phone.client.account()
    assert acct["name"] == laptop.name and acct["quota"] == {"used": 0, "limit": 0}
    phone_id = next(d["id"] for d in devices if d["name"] == "phone")
    phone_token = phone.client.token
    await laptop.client.revoke_device(phone_id)
    r = api(server, "GET", "/api/v1/account", phone_token)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert [d["name"] for d in await laptop.client.devices()] == ["laptop"]
    token = laptop.client.token
    await laptop.client.logout()
    assert api(server, "GET", "/api/v1/account", token).status_code == 401


async def test_tokens_are_not_stored_in_clear_and_expire(start_server, make_user):
    srv = start_server(SATCHEL_TOKEN_TTL="2s")
    user = await make_user(srv=srv)
    assert (await user.client.account())["name"] == user.name
    db = (srv.data_dir / "satchel.db").read_bytes()
    assert user.client.token.encode() not in db and PASSWORD.encode() not in db
    import asyncio

    await asyncio.sleep(2.5)
    r = api(srv, "GET", "/api/v1/account", user.client.token)
    assert r.status_code == 401 and "expired" in r.json()["message"]


def test_admin_add_user_and_signup_disabled(start_server, tmp_path):
    srv = start_server(SATCHEL_SIGNUP="false")
    r = api(srv, "POST", "/api/v1/auth/signup", json={"name": "eve", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["error"] == "signup_disabled"
    add = subprocess.run([str(VENV_BIN / "satchel"), "admin", "add-user", "bob", "--password-stdin",
                          "--quota", "10MiB", "--data-dir", str(srv.data_dir)],
                         input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    login = api(srv, "POST", "/api/v1/auth/login",
                json={"name": "bob", "password": PASSWORD, "device_name": "cli", "device_kind": "cli"})
    assert login.status_code == 200, login.text
    acct = api(srv, "GET", "/api/v1/account", login.json()["token"]).json()
    assert acct["quota"]["limit"] == 10 * 1024**2
    again = subprocess.run([str(VENV_BIN / "satchel"), "admin", "add-user", "bob", "--password-stdin",
                            "--data-dir", str(srv.data_dir)], input=PASSWORD + "\n", capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 1 and "user_exists" in again.stderr


def test_cli_login_errors(server, device_factory):
    dev = device_factory("x")
    out = dev.run("ls", check=False)
    assert out.returncode == 4 and "not logged in" in out.stderr
    bad = dev.run("login", server.url, "nobody", "--password-stdin", stdin="wrong-password\n", check=False)
    assert bad.returncode == 1 and "bad_credentials" in bad.stderr
    down = dev.run("login", "http://127.0.0.1:9", "nobody", "--password-stdin", stdin="x\n", check=False)
    assert down.returncode == 3 and "cannot reach" in down.stderr
