"""CORS for an S3 chunk store, so the web app can PUT and GET chunks straight at presigned URLs.

A browser only sends a cross-origin PUT after a preflight that the object store answers with the
page's origin. At start-up the server (1) sets its own rule in the bucket's CORS configuration
(PutBucketCors, keeping every rule of other applications) and (2) checks with a real preflight that
the endpoint now allows the origins. Stores without bucket CORS (``rclone serve s3`` takes
``--allow-origin`` instead) or credentials without the permission only get a warning: the Python
client and the CLI do not need CORS, and an operator may have configured it outside Satchel.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

RULE_ID = "satchel-direct-transfers"
CHECK_TIMEOUT = 10.0
# What presigned transfers need: PUT into staging/, GET and HEAD of chunks with Range; the ETag and
# range headers are readable by the page.
_RULE: dict[str, Any] = {
    "ID": RULE_ID,
    "AllowedMethods": ["PUT", "GET", "HEAD"],
    "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag", "Content-Length", "Content-Range", "Accept-Ranges"],
    "MaxAgeSeconds": 3600,
}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of *url*; ValueError if it is not an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"an origin has no path, query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def parse_origins(value: str, public_url: str, host: str, port: int) -> tuple[str, ...]:
    """The ``SATCHEL_S3_CORS_ORIGINS`` setting: ``none``, a comma-separated list, or empty for the
    server's own origin (``SATCHEL_PUBLIC_URL``, else the address it listens on)."""
    value = value.strip()
    if value.lower() == "none":
        return ()
    if value:
        return tuple(dict.fromkeys(origin_of(v) for v in value.split(",") if v.strip()))
    if public_url:
        return (origin_of(public_url),)
    if host in ("", "0.0.0.0", "::"):  # noqa: S104  (any address: the origin browsers use is unknown)
        return ()
    name = f"[{host}]" if ":" in host else host
    origins = [f"http://{name}:{port}"]
    if host in ("127.0.0.1", "::1"):
        origins.append(f"http://localhost:{port}")
    return tuple(origins)


def merged_rules(current: list[dict[str, Any]], origins: tuple[str, ...]) -> list[dict[str, Any]]:
    """The bucket's CORS rules with Satchel's rule replaced (others kept, in their order)."""
    return [r for r in current if r.get("ID") != RULE_ID] + [{**_RULE, "AllowedOrigins": list(origins)}]


async def apply_bucket_cors(s3: Any, bucket: str, origins: tuple[str, ...]) -> bool:
    """Write Satchel's rule into the bucket's CORS configuration; False if the store refused."""
    try:
        try:
            current = (await s3.get_bucket_cors(Bucket=bucket)).get("CORSRules", [])
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) != "NoSuchCORSConfiguration":
                raise
            current = []
        await s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": merged_rules(current, origins)})
    except (ClientError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
        log.info("could not set the CORS configuration of S3 bucket %s (%s)", bucket, exc)
        return False
    log.info("S3 bucket %s: CORS rule %s allows %s", bucket, RULE_ID, ", ".join(origins))
    return True


async def preflight_allows(url: str, origin: str) -> bool:
    """Does *url* answer a browser's preflight for a PUT from *origin*?"""
    headers = {"Origin": origin, "Access-Control-Request-Method": "PUT"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT)) as http, \
                http.options(url, headers=headers) as resp:
            allowed = resp.headers.get("Access-Control-Allow-Origin", "")
            methods = resp.headers.get("Access-Control-Allow-Methods", "PUT")
            return resp.status < 300 and allowed in (origin, "*") and "PUT" in methods.upper()
    except (aiohttp.ClientError, OSError) as exc:
        log.info("CORS preflight to %s failed: %s", url, exc)
        return False


async def ensure_cors(s3: Any, bucket: str, probe_url: str, origins: tuple[str, ...]) -> bool:
    """Apply the rule, then check every origin with a preflight; warn about those refused."""
    if not origins:
        return True
    await apply_bucket_cors(s3, bucket, origins)
    refused = [o for o in origins if not await preflight_allows(probe_url, o)]
    if refused:
        log.warning("the S3 endpoint does not allow cross-origin requests from %s: the web app cannot "
                    "upload there. Allow these origins in the bucket's CORS configuration (or e.g. "
                    "`rclone serve s3 --allow-origin ORIGIN`), or set SATCHEL_S3_CORS_ORIGINS",
                    ", ".join(refused))
        return False
    log.info("S3 endpoint allows browser transfers from %s", ", ".join(origins))
    return True
