"""Metadata schema (SQLAlchemy 2). Times are integer milliseconds since the epoch (UTC).

    users ─< devices                    one bearer token per device, stored as its SHA-256
    users ─< namespaces ─< nodes         a namespace is a tree; each user has a root namespace
    nodes ─< revisions ─< revision_chunks   immutable: ordered chunk list of one file version
    chunks (owner, hash)                 content-addressed, deduplicated per owner
    uploads ─< upload_chunks             an upload session until it commits or expires
    journal (ns, seq)                    one row per mutation, seq +1 per namespace, same transaction
    share_members (ns, user)             who may use a shared namespace, with which role, mounted where
    links (token_hash) -> ns, node       public link shares: hashed token, expiry, argon2 password

Schema changes go through Alembic (``server/storage/migrations``); never edit a shipped revision.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # 0 = unlimited
    root_ns_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Namespace(Base):
    __tablename__ = "namespaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # root | shared
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # last journal seq
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Node(Base):
    """A file or folder. ``id`` is stable across renames; ``deleted_ms`` set = in the trash."""

    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ns_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(4096))
    parent_path: Mapped[str] = mapped_column(String(4096))
    kind: Mapped[str] = mapped_column(String(8))  # file | dir
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mime: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mtime_ms: Mapped[int] = mapped_column(BigInteger)
    head_rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The node whose delete put this one in the trash (itself for the item the user deleted):
    # the trash lists those items, and restores or purges each with everything trashed with it.
    trash_root_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)

    __table_args__ = (
        # One live entry per path; trashed entries may share a path with a live one.
        Index(
            "uq_nodes_live_path", "ns_id", "path", unique=True,
            sqlite_where=text("deleted_ms IS NULL"), postgresql_where=text("deleted_ms IS NULL"),
        ),
        Index(
            "ix_nodes_live_parent", "ns_id", "parent_path",
            sqlite_where=text("deleted_ms IS NULL"), postgresql_where=text("deleted_ms IS NULL"),
        ),
    )


class Revision(Base):
    __tablename__ = "revisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    ns_id: Mapped[int] = mapped_column(Integer)
    parent_rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mtime_ms: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class RevisionChunk(Base):
    __tablename__ = "revision_chunks"
    rev_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)


class Chunk(Base):
    """A stored chunk. Rows exist only for bytes verified to hash to ``hash``."""

    __tablename__ = "chunks"
    owner_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    touched_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Upload(Base):
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ns_id: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(4096))
    parent_rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mtime_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    committed_rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Quota held for this session until it commits, is abandoned or expires: the bytes it adds.
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UploadChunk(Base):
    __tablename__ = "upload_chunks"
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    # Set when this session delivered the chunk's bytes (only recorded when the uploader is not the
    # namespace's owner: such a writer gets no dedup credit for chunks they have not proven).
    received: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class JournalEntry(Base):
    __tablename__ = "journal"
    ns_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    op: Mapped[str] = mapped_column(String(16))  # create | modify | delete | move | mkdir | purge
    kind: Mapped[str] = mapped_column(String(8))
    node_id: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(4096))
    old_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_rev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)  # member and mount entries


class ShareMember(Base):
    """A user's access to a shared namespace and where it is mounted in that user's tree.

    The owner has a row too (role ``owner``): the owner's own mount of the folder they shared."""

    __tablename__ = "share_members"
    ns_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))  # owner | editor | viewer
    can_reshare: Mapped[bool] = mapped_column(Boolean, default=False)
    mount_path: Mapped[str] = mapped_column(String(4096))
    added_by: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Link(Base):
    """A link share: anyone holding the token (and the password, if set) may use it until expiry."""

    __tablename__ = "links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    ns_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the namespace's root
    mode: Mapped[str] = mapped_column(String(16))  # download | upload (a file request)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CoeditDoc(Base):
    """A co-edited document's CRDT state (Yjs v1, compacted), kept across restarts and shared by
    the nodes. ``base_rev`` is the file revision the document last saved as or merged from, and
    ``base_state`` the CRDT state whose text is exactly that revision's: an external revision is
    merged as a diff against it (server/coedit/merge.py)."""

    __tablename__ = "coedit_docs"
    file_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    ns_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), index=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    base_rev: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_state: Mapped[bytes] = mapped_column(LargeBinary)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
