"""Search by name, folder path and text content, ranked, within what the caller may read.

Each query word matches as a prefix ('rep' finds 'report'); every word must match somewhere (name,
folder path or content). Ranking weighs a name match above a path match above a content match:
SQLite FTS5 ``bm25`` with column weights, PostgreSQL ``ts_rank`` over the weighted ``tsv``.
Only live nodes of the caller's readable namespaces are returned (``changes.readable_namespaces``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, text

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import tree
from server.services.access import Perm
from server.services.changes import readable_namespaces
from server.services.context import Principal, Services
from server.services.search_index import words
from server.storage.models import Node

MAX_WORDS = 16
MAX_QUERY = 1000
PAGE = 100

SQLITE = text(
    "SELECT search_fts.rowid AS id, bm25(search_fts, 0.0, 10.0, 4.0, 1.0) AS score FROM search_fts "
    "JOIN nodes ON nodes.id = search_fts.rowid "
    "WHERE search_fts MATCH :q AND nodes.ns_id IN :ns AND nodes.deleted_ms IS NULL "
    "AND (:folder = '/' OR nodes.path = :folder OR (nodes.path >= :lo AND nodes.path < :hi)) "
    "ORDER BY score, nodes.id LIMIT :limit OFFSET :offset"
).bindparams(bindparam("ns", expanding=True))
POSTGRES = text(
    "SELECT d.node_id AS id, ts_rank(d.tsv, q) AS score FROM search_docs d "
    "JOIN nodes ON nodes.id = d.node_id, to_tsquery('simple', :q) q "
    "WHERE d.tsv @@ q AND nodes.ns_id IN :ns AND nodes.deleted_ms IS NULL "
    "AND (:folder = '/' OR nodes.path = :folder "
    "OR (nodes.path COLLATE \"C\" >= :lo AND nodes.path COLLATE \"C\" < :hi)) "
    "ORDER BY score DESC, nodes.id LIMIT :limit OFFSET :offset"
).bindparams(bindparam("ns", expanding=True))


def _terms(query: object) -> list[str]:
    if not isinstance(query, str) or len(query) > MAX_QUERY:
        raise SatchelError(ErrorCode.bad_request, f"'query' is a string of at most {MAX_QUERY} characters",
                           field="query")
    terms = words(query).split()[:MAX_WORDS]
    if not terms:
        raise SatchelError(ErrorCode.bad_request, "'query' needs at least one word", field="query")
    return terms


async def search(svc: Services, who: Principal, query: object, path: object, offset: object,
                 limit: object) -> dict[str, Any]:
    terms = _terms(query)
    for name, val, top in (("offset", offset, 10_000), ("limit", limit, PAGE)):
        if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val <= top:
            raise SatchelError(ErrorCode.bad_request, f"'{name}' must be an integer 0-{top}", field=name)
    assert isinstance(offset, int) and isinstance(limit, int)
    loc = tree.locate(who, path if path is not None else paths.ROOT, need=Perm.READ)
    lo, hi = paths.descendant_range(loc.path)
    # From the top of one's own tree, the shared folders mounted in it are searched too.
    everywhere = loc.ns_id == who.root_ns_id and loc.path == paths.ROOT
    ns = [n for n in readable_namespaces(who) if everywhere or n == loc.ns_id]
    if svc.db.dialect == "sqlite":
        stmt, q = SQLITE, " AND ".join(f'"{t}"*' for t in terms)  # words are [^\W_]+: nothing to escape
    else:
        stmt, q = POSTGRES, " & ".join(f"{t}:*" for t in terms)
    params = {"q": q, "ns": ns, "folder": loc.path, "lo": lo, "hi": hi, "limit": limit + 1, "offset": offset}
    async with svc.db.read() as s:
        hits = (await s.execute(stmt, params)).all() if ns and limit else []
        nodes = {n.id: n for n in (await s.execute(
            select(Node).where(Node.id.in_([h.id for h in hits])))).scalars()} if hits else {}
    more = len(hits) > limit
    entries = [tree.shown(who, nodes[h.id]) | {"score": round(abs(float(h.score)), 6)}
               for h in hits[:limit] if h.id in nodes]
    return {"entries": entries, "next": offset + limit if more else None}
