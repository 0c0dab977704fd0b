"""Server settings: every knob in one table, read from env vars, overridable by CLI flags.

``SETTINGS`` is the single source of truth; README.md's configuration table mirrors it and
``tests/test_config.py`` checks that every entry is documented there.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from server.core.units import parse_duration, parse_size


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str
    kind: str = "str"  # str | int | bool | size | duration


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "SATCHEL_DATA_DIR", "./satchel-data",
            "Folder for the SQLite file, chunk store and secret key."),
    Setting("host", "SATCHEL_HOST", "127.0.0.1", "Address to listen on."),
    Setting("port", "SATCHEL_PORT", "8080", "Port to listen on.", "int"),
    Setting("database_url", "DATABASE_URL", "", "SQLAlchemy URL; empty = sqlite+aiosqlite in data_dir. "
            "PostgreSQL: postgresql+asyncpg://user@host/db."),
    Setting("blob_url", "SATCHEL_BLOB_URL", "", "Chunk store: empty = file://DATA_DIR/chunks; "
            "s3://BUCKET[/PREFIX] uses S3 (see the S3 settings)."),
    Setting("s3_endpoint", "SATCHEL_S3_ENDPOINT", "", "S3 endpoint URL (empty = AWS)."),
    Setting("s3_region", "SATCHEL_S3_REGION", "us-east-1", "S3 region."),
    Setting("s3_access_key", "SATCHEL_S3_ACCESS_KEY", "", "S3 access key id (never logged)."),
    Setting("s3_secret_key", "SATCHEL_S3_SECRET_KEY", "", "S3 secret key (never logged)."),
    Setting("s3_cors_origins", "SATCHEL_S3_CORS_ORIGINS", "", "Browser origins allowed to PUT/GET chunks "
            "at presigned S3 URLs (comma-separated; written into the bucket's CORS configuration at "
            "start-up and checked); empty = the server's own origin; none = leave CORS alone."),
    Setting("redis_url", "SATCHEL_REDIS_URL", "", "Redis for change fan-out and presence across nodes "
            "(redis://host:6379/0); empty = in-process (one node)."),
    Setting("node_id", "SATCHEL_NODE_ID", "", "This node's name in presence keys and logs; empty = random."),
    Setting("ws_heartbeat", "SATCHEL_WS_HEARTBEAT", "15s", "WebSocket heartbeat: the server pings this often, "
            "closes a connection silent for 3 heartbeats, and re-checks its token; presence of a vanished session "
            "or node expires after 2 and 5 s.", "duration"),
    Setting("public_url", "SATCHEL_PUBLIC_URL", "", "Base URL clients reach this server at, used in "
            "signed URLs; empty = taken from each request."),
    Setting("secret_key", "SATCHEL_SECRET_KEY", "", "HMAC key for signed URLs; empty = generated once "
            "into DATA_DIR/secret.key. Every node of a cluster needs the same one. Never logged."),
    Setting("signup", "SATCHEL_SIGNUP", "true", "Allow anyone to create an account.", "bool"),
    Setting("token_ttl", "SATCHEL_TOKEN_TTL", "90d", "Lifetime of a device token.", "duration"),
    Setting("url_ttl", "SATCHEL_URL_TTL", "1h", "Lifetime of a signed chunk URL.", "duration"),
    Setting("member_url_ttl", "SATCHEL_MEMBER_URL_TTL", "5m", "Lifetime of an S3 presigned chunk URL "
            "issued to a share member (S3 cannot recall one: a removed member's URL lasts this long).",
            "duration"),
    Setting("upload_ttl", "SATCHEL_UPLOAD_TTL", "24h", "Lifetime of an uncommitted upload session.", "duration"),
    Setting("orphan_grace", "SATCHEL_ORPHAN_GRACE", "1h", "How long a chunk no revision or live "
            "upload refers to is kept before it is collected.", "duration"),
    Setting("sweep_interval", "SATCHEL_SWEEP_INTERVAL", "10m", "How often expired uploads and orphan "
            "chunks are swept.", "duration"),
    Setting("retention", "SATCHEL_RETENTION", "30d", "How long old versions and trashed entries are kept "
            "before garbage collection frees them.", "duration"),
    Setting("search_text_max", "SATCHEL_SEARCH_TEXT_MAX", "256KiB", "Text files up to this size are "
            "indexed for full-text search (larger files by name and path only).", "size"),
    Setting("max_file_size", "SATCHEL_MAX_FILE_SIZE", "64GiB", "Largest file accepted.", "size"),
    Setting("max_chunks", "SATCHEL_MAX_CHUNKS", "200000", "Most chunks one file may have.", "int"),
    Setting("default_quota", "SATCHEL_DEFAULT_QUOTA", "0", "Storage quota of a new user (0 = unlimited).", "size"),
    Setting("coedit_max_bytes", "SATCHEL_COEDIT_MAX_BYTES", "5MiB", "Largest text file that can be co-edited "
            "live (larger ones are refused with too_large).", "size"),
    Setting("coedit_save_delay", "SATCHEL_COEDIT_SAVE_DELAY", "2s", "A co-edited document is saved as a new "
            "revision after this long without edits (and when its last editor leaves).", "duration"),
    Setting("coedit_awareness_timeout", "SATCHEL_COEDIT_AWARENESS_TIMEOUT", "30s", "A co-editor's cursor and "
            "name not renewed for this long is dropped (clients renew every 15 s; y-protocols' timeout).",
            "duration"),
    Setting("log_level", "SATCHEL_LOG_LEVEL", "info", "debug, info, warning or error."),
    Setting("web_dir", "SATCHEL_WEB_DIR", "", "Folder of the built web app (index.html, assets/); "
            "empty = client_js/dist of this checkout."),
)


def _convert(setting: Setting, raw: str) -> Any:
    if setting.kind == "int":
        return int(raw)
    if setting.kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if setting.kind == "size":
        return parse_size(raw)
    if setting.kind == "duration":
        return parse_duration(raw)
    return raw


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./satchel-data")
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    blob_url: str = ""
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_cors_origins: str = ""
    redis_url: str = field(default="", repr=False)
    node_id: str = ""
    ws_heartbeat: float = 15.0
    public_url: str = ""
    secret_key: str = field(default="", repr=False)
    signup: bool = True
    token_ttl: float = 90 * 86400
    url_ttl: float = 3600
    member_url_ttl: float = 300
    upload_ttl: float = 86400
    orphan_grace: float = 3600
    sweep_interval: float = 600
    retention: float = 30 * 86400
    search_text_max: int = 256 * 1024
    max_file_size: int = 64 * 1024**3
    max_chunks: int = 200_000
    default_quota: int = 0
    coedit_max_bytes: int = 5 * 1024 * 1024
    coedit_save_delay: float = 2.0
    coedit_awareness_timeout: float = 30.0
    log_level: str = "info"
    web_dir: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then env vars, then *overrides* (CLI flags; None means 'not given')."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for s in SETTINGS:
            raw = env.get(s.env, s.default)
            values[s.name] = _convert(s, raw)
        for key, val in overrides.items():
            if val is not None:
                values[key] = val
        values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        return cls(**values)

    def with_derived(self) -> Config:
        """Fill in what depends on data_dir: database URL, blob URL, and the persisted secret key."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        db = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'satchel.db'}"
        blobs = self.blob_url or f"file://{self.data_dir / 'chunks'}"
        return replace(self, database_url=db, blob_url=blobs, node_id=self.node_id or secrets.token_hex(4),
                       secret_key=self.secret_key or _load_secret(self.data_dir))


def _load_secret(data_dir: Path) -> str:
    path = data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


assert {s.name for s in SETTINGS} == {f.name for f in fields(Config)}, "SETTINGS and Config disagree"
