"""Password hashing with argon2id (argon2-cffi's defaults: RFC 9106 low-memory profile).

Hashing takes tens of milliseconds on purpose, so it runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of "no such user" and
# "wrong password" the same, so login cannot be used to enumerate accounts. A literal (hashing it
# at import cost every server start 0.1 s); tests/test_core.py checks it has the hasher's parameters.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$y/K35QCo0+p57BhovbjWww$vtUNyP6nj2s7tR3mVJMghPu9QHd1lrOXVK3YZX2F0v0"


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError, UnicodeEncodeError):  # a lone surrogate matches nothing
            return False

    return await asyncio.to_thread(check)
