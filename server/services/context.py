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
class Principal:
    """An authenticated caller: a user acting through one device."""

    user_id: int
    user_name: str
    device_id: int
    root_ns_id: int
    is_admin: bool
