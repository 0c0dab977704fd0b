"""The shared resources every service uses, owned by the app's lifespan, and the caller identity."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.signing import UrlSigner
from server.config import Config
from server.storage.blobs.base import BlobStore
from server.storage.db import Database


@dataclass(frozen=True)
class Services:
    config: Config
    db: Database
    blobs: BlobStore
    signer: UrlSigner


@dataclass(frozen=True)
class Mount:
    """A shared namespace as one user sees it: mounted at ``path`` in their tree, with a role."""

    ns_id: int
    owner_id: int
    path: str
    role: str  # owner | editor | viewer
    can_reshare: bool
    file: str | None = None  # a shared file: its path inside the namespace (mounted at ``path``)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user acting through one device, with the shares they belong to
    (loaded with the token on every request, so a revoked share counts from the next request)."""

    user_id: int
    user_name: str
    device_id: int
    root_ns_id: int
    is_admin: bool
    mounts: tuple[Mount, ...] = ()
