"""Accounts and devices: sign-up, log-in (one token per device), authentication, revocation."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, select, update

from server.auth.passwords import hash_password, verify_password
from server.auth.tokens import new_token, token_hash
from server.core.errors import ErrorCode, SatchelError
from server.services.access import load_mounts
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.db import now_ms
from server.storage.models import Device, Namespace, User

USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEVICE_KINDS = ("cli", "desktop", "browser", "mobile", "sdk")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
LAST_SEEN_RESOLUTION_MS = 60_000  # write last_seen at most once a minute per device


def check_user_name(name: object) -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise SatchelError(ErrorCode.invalid_name,
                           "user names are 1-64 characters: lowercase letters, digits, '.', '_', '-'")
    return name


def is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON can carry them, UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_password(password: object) -> str:
    if (not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD
            or not is_utf8(password)):
        raise SatchelError(ErrorCode.bad_request,
                           f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_device(name: object, kind: object) -> tuple[str, str]:
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable():
        raise SatchelError(ErrorCode.invalid_name, "a device name is 1-64 printable characters")
    if kind not in DEVICE_KINDS:
        raise SatchelError(ErrorCode.bad_request, f"device kind must be one of {', '.join(DEVICE_KINDS)}")
    return name, str(kind)


async def create_user(
    svc: Services, name: str, password: str, *, is_admin: bool = False, quota: int | None = None
) -> User:
    name, password = check_user_name(name), check_password(password)
    pw_hash = await hash_password(password)
    now = now_ms()
    try:
        async with svc.db.write() as s:
            user = User(name=name, password_hash=pw_hash, is_admin=is_admin, created_ms=now,
                        quota_bytes=svc.config.default_quota if quota is None else quota)
            s.add(user)
            await s.flush()
            ns = Namespace(owner_id=user.id, kind="root", seq=0, created_ms=now)
            s.add(ns)
            await s.flush()
            user.root_ns_id = ns.id
    except SatchelError as exc:
        if exc.code is ErrorCode.conflict:  # the unique index on users.name
            raise SatchelError(ErrorCode.user_exists, f"the user name {name!r} is taken") from exc
        raise
    return user


async def login(svc: Services, name: object, password: object, device_name: object,
                device_kind: object) -> dict[str, Any]:
    if not isinstance(name, str) or not isinstance(password, str):
        raise SatchelError(ErrorCode.bad_request, "name and password are required strings")
    dname, dkind = check_device(device_name, device_kind)
    user = None
    if USER_NAME.fullmatch(name):  # no other name can exist; a NUL would be a database error
        async with svc.db.read() as s:
            user = (await s.execute(select(User).where(User.name == name))).scalar_one_or_none()
    ok = await verify_password(user.password_hash if user else None, password)
    if not ok or user is None:
        raise SatchelError(ErrorCode.bad_credentials, "wrong user name or password")
    token = new_token()
    now = now_ms()
    expires = now + int(svc.config.token_ttl * 1000)
    async with svc.db.write() as s:
        device = Device(user_id=user.id, name=dname, kind=dkind, token_hash=token_hash(token),
                        created_ms=now, last_seen_ms=now, expires_ms=expires)
        s.add(device)
        await s.flush()
        device_id = device.id
    return {
        "token": token, "device_id": device_id, "expires_at": iso(expires),
        "user": {"id": user.id, "name": user.name},
    }


async def authenticate(svc: Services, token: str) -> Principal:
    return await _principal(svc, Device.token_hash == token_hash(token), "unknown token; log in again")


async def authenticate_device(svc: Services, device_id: int) -> Principal:
    """The principal of a device named by a signed URL: as if its token came along, so a device
    logged out (or expired) since the URL was made can no longer use it."""
    return await _principal(svc, Device.id == device_id, "unknown device; log in again")


async def _principal(svc: Services, which: ColumnElement[bool], unknown: str) -> Principal:
    now = now_ms()
    async with svc.db.read() as s:
        row = (await s.execute(select(Device, User).join(User, User.id == Device.user_id).where(which))).one_or_none()
        mounts = await load_mounts(s, row[1].id) if row is not None else ()
    if row is None:
        raise SatchelError(ErrorCode.unauthorized, unknown)
    device, user = row
    if device.revoked_ms is not None:
        raise SatchelError(ErrorCode.unauthorized, "this device was logged out; log in again")
    if device.expires_ms < now:
        raise SatchelError(ErrorCode.unauthorized, "the token has expired; log in again")
    if now - device.last_seen_ms > LAST_SEEN_RESOLUTION_MS:
        async with svc.db.write() as s:
            await s.execute(update(Device).where(Device.id == device.id).values(last_seen_ms=now))
    assert user.root_ns_id is not None
    return Principal(user.id, user.name, device.id, user.root_ns_id, user.is_admin, mounts)


def device_json(d: Device, current_id: int) -> dict[str, Any]:
    return {
        "id": d.id, "name": d.name, "kind": d.kind, "created_at": iso(d.created_ms),
        "last_seen_at": iso(d.last_seen_ms), "expires_at": iso(d.expires_ms),
        "current": d.id == current_id,
    }


async def list_devices(svc: Services, who: Principal) -> list[dict[str, Any]]:
    async with svc.db.read() as s:
        rows = (await s.execute(
            select(Device).where(Device.user_id == who.user_id, Device.revoked_ms.is_(None))
            .order_by(Device.id)
        )).scalars().all()
    return [device_json(d, who.device_id) for d in rows]


async def revoke_device(svc: Services, who: Principal, device_id: int) -> None:
    async with svc.db.write() as s:
        result = await s.execute(
            update(Device)
            .where(Device.id == device_id, Device.user_id == who.user_id, Device.revoked_ms.is_(None))
            .values(revoked_ms=now_ms())
        )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise SatchelError(ErrorCode.not_found, "no such device")


async def device_info(svc: Services, who: Principal) -> dict[str, str]:
    async with svc.db.read() as s:
        device = await s.get(Device, who.device_id)
    assert device is not None
    return {"name": device.name, "kind": device.kind}


async def account(svc: Services, who: Principal) -> dict[str, Any]:
    from server.services.tree import usage_bytes

    async with svc.db.read() as s:
        user = await s.get(User, who.user_id)
        assert user is not None
        used = await usage_bytes(s, who.user_id)
    return {
        "id": user.id, "name": user.name, "is_admin": user.is_admin, "device_id": who.device_id,
        "root_namespace": who.root_ns_id, "quota": {"used": used, "limit": user.quota_bytes},
    }
