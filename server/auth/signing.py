"""HMAC-SHA256 signed URLs for chunk transfers when the blob store is the server itself.

A signature covers the method, the path and every query parameter except ``sig`` (sorted), and
an expiry time, so a URL is good for one chunk, one method, one user/upload, until it expires.
Comparison is constant-time. The key is ``SATCHEL_SECRET_KEY`` (the same on every node).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from server.core.errors import ErrorCode, SatchelError


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"satchel-url-v1:" + secret.encode()).digest()

    def _mac(self, method: str, path: str, params: Mapping[str, str]) -> str:
        canonical = "\n".join([method.upper(), path, urlencode(sorted(params.items()))])
        digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, method: str, path: str, params: Mapping[str, str | int], ttl: float) -> str:
        """Return ``path?query`` with ``exp`` and ``sig`` added."""
        full = {k: str(v) for k, v in params.items()}
        full["exp"] = str(int(time.time() + ttl))
        full["sig"] = self._mac(method, path, full)
        return f"{path}?{urlencode(full)}"

    def verify(self, method: str, path: str, query: Mapping[str, str]) -> dict[str, str]:
        """Check a signed request; return its parameters or raise bad_signature / url_expired."""
        params = dict(query)
        sig = params.pop("sig", "")
        if not sig or "exp" not in params:
            raise SatchelError(ErrorCode.bad_signature, "this URL is not signed")
        # Bytes, not str: compare_digest raises TypeError on non-ASCII strings (a 500 for '?sig=é').
        if not hmac.compare_digest(sig.encode("utf-8", "surrogatepass"), self._mac(method, path, params).encode()):
            raise SatchelError(ErrorCode.bad_signature, "the URL's signature does not match")
        try:
            expired = int(params["exp"]) < time.time()
        except ValueError as exc:
            raise SatchelError(ErrorCode.bad_signature, "the URL's expiry is not a number") from exc
        if expired:
            raise SatchelError(ErrorCode.url_expired, "this URL has expired; ask for a new one")
        return params
