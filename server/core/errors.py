"""Stable error codes of the Satchel API (protocol.md, "Errors").

Every error a client can see has a code from ``ErrorCode`` and the HTTP status from ``STATUS``.
The tree is flat on purpose: one exception, ``SatchelError``, carrying a code, a message and
optional details (e.g. ``missing`` chunk hashes). Codes are never renamed or reused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    bad_request = "bad_request"  # malformed JSON, wrong types, missing fields
    invalid_path = "invalid_path"  # '..', NUL, control characters, empty segments, too long
    invalid_name = "invalid_name"  # user or device name rules
    unauthorized = "unauthorized"  # no, unknown, expired or revoked token
    bad_credentials = "bad_credentials"  # wrong user name or password
    forbidden = "forbidden"  # authenticated but not allowed
    signup_disabled = "signup_disabled"
    not_found = "not_found"
    user_exists = "user_exists"
    path_exists = "path_exists"  # target of mkdir/mv/put is taken by another kind of entry
    not_a_directory = "not_a_directory"
    is_a_directory = "is_a_directory"
    conflict = "conflict"  # parent revision is not the head
    upload_expired = "upload_expired"
    upload_committed = "upload_committed"
    missing_chunks = "missing_chunks"  # commit refers to chunks not (yet) stored
    hash_mismatch = "hash_mismatch"  # chunk bytes do not hash to the name they were sent under
    size_mismatch = "size_mismatch"
    bad_signature = "bad_signature"  # signed URL tampered with
    url_expired = "url_expired"  # signed URL past its expiry
    too_large = "too_large"  # file over the configured maximum, or body too large
    too_many_chunks = "too_many_chunks"
    quota_exceeded = "quota_exceeded"
    range_not_satisfiable = "range_not_satisfiable"
    method_not_allowed = "method_not_allowed"
    bad_cursor = "bad_cursor"  # not a cursor, or one of another namespace: start from a full listing
    cursor_expired = "cursor_expired"  # the journal no longer reaches back that far: full listing
    too_many_requests = "too_many_requests"  # in-flight or subscription limit of a connection
    password_required = "password_required"  # noqa: S105 -- a link share's password is missing or wrong
    nested_share = "nested_share"  # a shared folder inside another, or around a mount
    cross_namespace = "cross_namespace"  # a move into or out of a shared folder
    not_text = "not_text"  # co-editing a file that is not UTF-8 text
    unavailable = "unavailable"  # a backend (database, blob store) failed; retry later
    internal = "internal"


STATUS: dict[ErrorCode, int] = {
    ErrorCode.bad_request: 400,
    ErrorCode.invalid_path: 400,
    ErrorCode.invalid_name: 400,
    ErrorCode.hash_mismatch: 400,
    ErrorCode.size_mismatch: 400,
    ErrorCode.unauthorized: 401,
    ErrorCode.bad_credentials: 401,
    ErrorCode.forbidden: 403,
    ErrorCode.signup_disabled: 403,
    ErrorCode.bad_signature: 403,
    ErrorCode.url_expired: 403,
    ErrorCode.not_found: 404,
    ErrorCode.method_not_allowed: 405,
    ErrorCode.user_exists: 409,
    ErrorCode.path_exists: 409,
    ErrorCode.not_a_directory: 409,
    ErrorCode.is_a_directory: 409,
    ErrorCode.conflict: 409,
    ErrorCode.bad_cursor: 400,
    ErrorCode.cursor_expired: 410,
    ErrorCode.too_many_requests: 429,
    ErrorCode.missing_chunks: 409,
    ErrorCode.upload_committed: 409,
    ErrorCode.upload_expired: 410,
    ErrorCode.too_large: 413,
    ErrorCode.too_many_chunks: 413,
    ErrorCode.range_not_satisfiable: 416,
    ErrorCode.quota_exceeded: 507,
    ErrorCode.password_required: 401,
    ErrorCode.nested_share: 409,
    ErrorCode.cross_namespace: 409,
    ErrorCode.not_text: 415,
    ErrorCode.unavailable: 503,
    ErrorCode.internal: 500,
}


class SatchelError(Exception):
    """An error with a stable code; raised by services, rendered by the API, parsed by clients."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code.value, "message": self.message}
        body.update(self.details)
        return body

    def __repr__(self) -> str:
        return f"SatchelError({self.code.value!r}, {self.message!r})"
