"""Storage quotas: usage is the bytes of the current files an owner's namespaces hold.

Versions and trash do not count. An upload *reserves* the bytes it adds when it starts (held by its
session row until it commits, is abandoned or expires) so that uploads running at the same time
cannot pass the limit together; the commit settles it (the session stops counting, the file's new
size counts). Checks lock the owner's row, so two checks for one owner run one after the other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import ErrorCode, SatchelError
from server.services import tree
from server.services.accounts import check_user_name
from server.services.context import Principal, Services
from server.storage.db import now_ms
from server.storage.models import Upload, User


async def reserved_bytes(s: AsyncSession, owner_id: int, now: int) -> int:
    """Bytes held by the owner's open (uncommitted, unexpired) upload sessions."""
    total = (await s.execute(
        select(func.coalesce(func.sum(Upload.reserved_bytes), 0)).where(
            Upload.owner_id == owner_id, Upload.committed_rev_id.is_(None), Upload.expires_ms > now)
    )).scalar_one()
    return int(total)


async def charge(s: AsyncSession, owner_id: int, added: int) -> None:
    """Refuse with ``quota_exceeded`` if adding *added* bytes would pass the owner's limit.
    Call inside the write transaction that then records the bytes (a session or a revision)."""
    if added <= 0:  # replacing a file by a smaller one, or no growth, is always allowed
        return
    user = (await s.execute(select(User).where(User.id == owner_id).with_for_update())).scalar_one_or_none()
    if user is None or user.quota_bytes <= 0:
        return
    used = await tree.usage_bytes(s, owner_id)
    held = await reserved_bytes(s, owner_id, now_ms())
    if used + held + added > user.quota_bytes:
        raise SatchelError(ErrorCode.quota_exceeded, "this would go over the storage quota",
                           used=used, limit=user.quota_bytes, reserved=held, size=added)


async def status(svc: Services, who: Principal) -> dict[str, Any]:
    async with svc.db.read() as s:
        user = await s.get(User, who.user_id)
        assert user is not None
        used = await tree.usage_bytes(s, who.user_id)
        held = await reserved_bytes(s, who.user_id, now_ms())
    limit = user.quota_bytes
    return {"used": used, "reserved": held, "limit": limit,
            "available": max(0, limit - used - held) if limit > 0 else None}


async def set_quota(svc: Services, name: str, limit: int) -> dict[str, Any]:
    """Admin: set a user's limit (0 = unlimited). Lowering it below usage refuses new growth only."""
    if limit < 0:
        raise SatchelError(ErrorCode.bad_request, "a quota is a size >= 0", field="quota")
    check_user_name(name)
    async with svc.db.write() as s:
        user = (await s.execute(select(User).where(User.name == name))).scalar_one_or_none()
        if user is None:
            raise SatchelError(ErrorCode.not_found, f"no user named {name!r}")
        user.quota_bytes = limit
        used = await tree.usage_bytes(s, user.id)
    return {"name": name, "limit": limit, "used": used}
