"""Device bearer tokens: 256 random bits, shown once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "sat_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    # A fast hash is right here: the token has 256 bits of entropy, so nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_id(nbytes: int = 16) -> str:
    """An unguessable identifier (upload sessions)."""
    return secrets.token_urlsafe(nbytes)
