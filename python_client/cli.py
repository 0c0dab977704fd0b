"""The ``satchel`` command.

Exit codes: 0 done; 1 the server refused (the message says why, e.g. not_found, conflict), or a
local file could not be read or written; 2 bad usage; 3 cannot reach the server; 4 not logged in
or the login expired.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from python_client.api import SatchelClient
from python_client.chunk_cache import ChunkCache
from python_client.profile import Profile, config_dir
from python_client.progress import TransferBar
from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.core.units import format_size, parse_size

EXIT_REFUSED, EXIT_USAGE, EXIT_NETWORK, EXIT_AUTH = 1, 2, 3, 4

if TYPE_CHECKING:
    from python_client.folder_put import FolderResult


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = code


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def _read_password(args: argparse.Namespace, confirm: bool = False) -> str:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    pw = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != pw:
        raise CliError("the passwords differ", EXIT_USAGE)
    return pw


def _client(args: argparse.Namespace) -> tuple[SatchelClient, Profile]:
    directory = config_dir(args.config_dir)
    profile = Profile.load(directory)
    if profile is None:
        raise CliError("not logged in: run `satchel login URL NAME` first", EXIT_AUTH)
    return SatchelClient(profile.server, profile.token, chunk_cache=ChunkCache(directory)), profile


def _remote(path: str) -> str:
    return paths.normalize(path)


# ---------------------------------------------------------------- server-side commands

def _server_config(args: argparse.Namespace) -> Any:
    from server.config import Config

    return Config.from_env(data_dir=args.data_dir, host=getattr(args, "host", None),
                           port=getattr(args, "port", None), database_url=args.database_url,
                           blob_url=args.blob_url, log_level=args.log_level,
                           signup=False if getattr(args, "no_signup", False) else None)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    config = _server_config(args)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("aiosqlite", "botocore", "aiobotocore", "urllib3"):  # debug: a line per statement or request
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLevelName(config.log_level.upper())))
    # uvicorn at debug would log every WebSocket frame (its websockets protocol logs through
    # uvicorn.error): our debug is Satchel's own loggers.
    uvicorn_level = "info" if config.log_level.lower() == "debug" else config.log_level
    from server.ws.protocol import MAX_FRAME

    # websockets-sansio: the leanest uvicorn WebSocket stack measured here (design.md, section 4);
    # no permessage-deflate (triples memory per connection; chunk data does not compress) and no
    # protocol-level pings (the Satchel protocol has its own heartbeat).
    uvicorn.run(create_app(config), host=config.host, port=config.port, loop="uvloop", http="httptools",
                ws="websockets-sansio", ws_max_size=MAX_FRAME, ws_per_message_deflate=False,
                ws_ping_interval=None, log_level=uvicorn_level, access_log=args.access_log,
                lifespan="on", timeout_graceful_shutdown=10)
    return 0


async def cmd_admin_add_user(args: argparse.Namespace) -> int:
    from server.app import open_services
    from server.services.accounts import create_user

    password = _read_password(args, confirm=not args.password_stdin)
    quota = parse_size(args.quota) if args.quota else None
    async with open_services(_server_config(args)) as svc:
        user = await create_user(svc, args.name, password, is_admin=args.admin, quota=quota)
    print(f"created user {user.name} (id {user.id})")
    return 0


async def cmd_admin_set_quota(args: argparse.Namespace) -> int:
    from server.app import open_services
    from server.services.quota import set_quota

    async with open_services(_server_config(args)) as svc:
        out = await set_quota(svc, args.name, parse_size(args.size))
    limit = format_size(out["limit"]) if out["limit"] else "unlimited"
    print(f"{out['name']}: limit {limit}, using {format_size(out['used'])}")
    return 0


async def cmd_admin_gc(args: argparse.Namespace) -> int:
    from server.app import open_services
    from server.services import sweeper

    async with open_services(_server_config(args)) as svc:
        if args.dry_run:
            out = await sweeper.collect(svc, dry_run=True)
        else:
            out = await sweeper.sweep_once(svc)
    verb = "would free" if args.dry_run else "freed"
    _out(args, out, f"{verb}: {out['versions']} old versions, {out['trash_items']} trash items, "
                    f"{out['chunks']} chunks ({format_size(out['bytes'])})")
    return 0


# ---------------------------------------------------------------- client commands

async def cmd_signup(args: argparse.Namespace) -> int:
    async with SatchelClient(args.url) as c:
        await c.signup(args.name, _read_password(args, confirm=not args.password_stdin))
    print(f"created account {args.name} on {args.url}; now run: satchel login {args.url} {args.name}")
    return 0


async def cmd_login(args: argparse.Namespace) -> int:
    password = _read_password(args)
    async with SatchelClient(args.url) as c:
        out = await c.login(args.name, password, args.device, args.kind)
    Profile(server=args.url.rstrip("/"), user=args.name, token=out["token"], device_id=out["device_id"],
            device_name=args.device or os.uname().nodename).save(config_dir(args.config_dir))
    print(f"logged in to {args.url} as {args.name} (device {out['device_id']})")
    return 0


async def cmd_logout(args: argparse.Namespace) -> int:
    client, _profile = _client(args)
    async with client:
        try:
            await client.logout()
        except SatchelError as exc:
            if exc.code is not ErrorCode.unauthorized:
                raise
    Profile.remove(config_dir(args.config_dir))
    print("logged out")
    return 0


async def cmd_devices(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        if args.revoke is not None:
            await client.revoke_device(args.revoke)
            print(f"device {args.revoke} logged out")
            return 0
        devs = await client.devices()
    lines = [f"{d['id']:>5}  {d['kind']:<8} {d['name']:<24} last seen {d['last_seen_at']}"
             f"{'  (this device)' if d['current'] else ''}" for d in devs]
    _out(args, devs, "\n".join(lines))
    return 0


async def cmd_ls(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        entries = await client.list(_remote(args.path))
    lines = []
    for e in entries:
        if e["kind"] == "dir":
            shared = f"  (shared, {e['share']['role']})" if 'share' in e else ''
            lines.append(f"{'':>10}  {(e['modified_at'] or ''):<19.19}  {e['name']}/{shared}")
        else:
            lines.append(f"{format_size(e['size']):>10}  {e['mtime'][:19]}  {e['name']}")
    _out(args, entries, "\n".join(lines))
    return 0


async def cmd_info(args: argparse.Namespace) -> int:
    client, profile = _client(args)
    async with client:
        if args.path:
            meta = await client.stat(_remote(args.path))
            _out(args, meta, "\n".join(f"{k}: {v}" for k, v in meta.items()))
        else:
            acct = await client.account()
            q = acct["quota"]
            limit = format_size(q["limit"]) if q["limit"] else "unlimited"
            _out(args, acct | {"server": profile.server},
                 f"server: {profile.server}\nuser: {acct['name']}\ndevice: {acct['device_id']}\n"
                 f"used: {format_size(q['used'])} of {limit}")
    return 0


async def cmd_mkdir(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        await client.mkdir(_remote(args.path))
    return 0


async def cmd_mv(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    src, dst = _remote(args.src), _remote(args.dst)
    async with client:
        target = await client.stat_or_none(dst)
        if target is not None and target["kind"] == "dir":
            dst = paths.join(dst, paths.name(src))
        await client.move(src, dst)
    return 0


async def cmd_rm(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        for p in args.paths:
            await client.delete(_remote(p))
    return 0


async def _put_one(client: SatchelClient, local: Path, remote: str, quiet: bool) -> None:
    with TransferBar(f"↑ {local.name}", enabled=None if not quiet else False) as bar:
        await client.upload(local, remote, progress=bar)


async def _folder(verb: str, label: str, quiet: bool, run: Callable[[TransferBar], Awaitable[FolderResult]]) -> int:
    """A folder put or get under one progress bar; its summary, and each refused file on stderr."""
    with TransferBar(label, enabled=None if not quiet else False) as bar:
        result = await run(bar)
    for line in result.refused:
        print(f"satchel: {line}", file=sys.stderr)
    if not quiet:
        print(f"{result.transferred} {verb}, {result.unchanged} unchanged"
              + (f", {len(result.refused)} failed" if result.refused else ""))
    return EXIT_REFUSED if result.refused else 0


async def _put_folder(client: SatchelClient, local: Path, remote: str, quiet: bool) -> int:
    from python_client.folder_put import put_folder

    return await _folder("uploaded", f"↑ {local.name}", quiet, lambda bar: put_folder(client, local, remote, bar))


async def _get_folder(client: SatchelClient, remote: str, local: Path, quiet: bool) -> int:
    from python_client.folder_get import get_folder

    return await _folder("downloaded", f"↓ {local.name}", quiet, lambda bar: get_folder(client, remote, local, bar))


async def cmd_put(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    local = Path(args.local)
    if not local.exists():
        raise CliError(f"{local}: no such file or folder", EXIT_USAGE)
    async with client:
        remote = _remote(args.remote)
        target = await client.stat_or_none(remote)
        if args.remote.endswith("/") or (target is not None and target["kind"] == "dir"):
            remote = paths.join(remote, local.name)
        if local.is_dir():
            return await _put_folder(client, local, remote, args.quiet)
        await _put_one(client, local, remote, args.quiet)
    return 0


async def cmd_get(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        remote = _remote(args.remote)
        meta = await client.stat(remote)
        local = Path(args.local)
        if meta["kind"] == "dir":
            if args.revision is not None:
                raise CliError("--revision takes a file; for a folder as it was, see `satchel rewind`", EXIT_USAGE)
            # the name the user asked for, not the one the server answers with (it could say "../x")
            return await _get_folder(client, remote, local / paths.name(remote) if local.is_dir() else local,
                                     args.quiet)
        with TransferBar(f"↓ {meta['name']}", enabled=None if not args.quiet else False) as bar:
            out = await client.download(remote, local, progress=bar, rev=args.revision)
    if not args.quiet:
        print(out["local_path"])
    return 0


async def _member_id(client: SatchelClient, ns: int, user: str) -> int:
    for m in (await client.members(ns))["members"]:
        if m["user"] == user:
            return int(m["user_id"])
    raise CliError(f"{user} is not a member of this share")


async def cmd_share(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        out = await client.share(_remote(args.path), args.user, args.role, args.can_reshare)
    _out(args, out, f"{args.path} shared with {args.user} as {args.role}")
    return 0


async def cmd_unshare(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        ns = (await client.share_of(_remote(args.path)))["ns"]
        await client.remove_member(ns, await _member_id(client, ns, args.user))
    print(f"{args.user} removed from {args.path}")
    return 0


async def cmd_members(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        if args.path is None:
            mine = await client.shares()
            _out(args, mine, "\n".join(f"{m['role']:<7} {m['path']}" + ("  (file)" if m.get("kind") == "file" else "")
                                        for m in mine))
            return 0
        out = await client.members((await client.share_of(_remote(args.path)))["ns"])
    lines = [f"{m['role']:<7} {m['user']}" + ("  (can reshare)" if m["can_reshare"] and m["role"] != "owner"
                                               else "") for m in out["members"]]
    _out(args, out, "\n".join(lines))
    return 0


async def cmd_leave(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        await client.leave((await client.share_of(_remote(args.path)))["ns"])
    print(f"left {args.path} (the local copy stays, no longer synced)")
    return 0


async def cmd_link(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        link = await client.create_link(_remote(args.path), mode="upload" if args.upload else "download",
                                        expires=args.expires, password=args.password)
    _out(args, link, link["url"])
    return 0


async def cmd_url(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        meta = await client.stat(_remote(args.path))
        out = await client.signed_content_url(meta["id"], args.rev)
    _out(args, out, out["url"])
    return 0


async def cmd_links(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        rows = await client.links()
    _out(args, rows, "\n".join(
        f"{r['id']:>5}  {r['mode']:<8} {r['path']}  expires {r['expires_at'] or 'never'}"
        f"{'  (password)' if r['has_password'] else ''}" for r in rows))
    return 0


async def cmd_revoke_link(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        await client.revoke_link(args.id)
    print(f"link {args.id} revoked")
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    from python_client.live import CursorStore, watch_changes

    client, _ = _client(args)
    store = CursorStore(config_dir(args.config_dir) / "watch-cursors.json" if args.resume else None)
    async with client:
        async for change in watch_changes(client, store):
            if args.json:
                print(json.dumps({k: v for k, v in change.items() if k != "delta"}), flush=True)
                continue
            where = f"{change['old_path']} -> {change['path']}" if change.get("old_path") else change["path"]
            size = f"  {format_size(change['size'])}" if change.get("size") is not None and change["kind"] == "file" \
                and change["op"] != "delete" else ""
            print(f"{change['at'][:19]}  {change['op']:<7} {where}{size}", flush=True)
    return 0


async def cmd_versions(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        revs = await client.revisions(_remote(args.path))
    lines = [f"{r['rev']:>8}  {r['created_at'][:19]}  {format_size(r['size']):>10}  {r['user'] or r['user_id']}"
             f"@{r['device'] or r['device_id']}{'  (current)' if r['current'] else ''}" for r in revs]
    _out(args, revs, "\n".join(lines))
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        entry = await client.restore(_remote(args.path), args.revision)
    print(f"{entry['path']}: revision {args.revision} restored as revision {entry['rev']}")
    return 0


async def cmd_trash(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        items = await client.trash(_remote(args.path))
    lines = [f"{i['id']:>8}  {i['deleted_at'][:19]}  {format_size(i['total_size']):>10}  "
             f"{i['path']}{'/' if i['kind'] == 'dir' else ''}" for i in items]
    _out(args, items, "\n".join(lines))
    return 0


async def cmd_undelete(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        out = await client.undelete(_remote(args.path), args.id)
    print(f"restored {out['path']} ({out['restored']} entries)")
    return 0


async def cmd_purge(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        out = await client.purge(_remote(args.path), args.id)
    print(f"purged {out['path']} ({out['purged']} entries)")
    return 0


async def cmd_rewind(args: argparse.Namespace) -> int:
    from server.core.units import parse_time

    when = parse_time(args.to)
    client, _ = _client(args)
    async with client:
        out = await client.rewind(_remote(args.path), int(when.timestamp() * 1000), args.dry_run)
    lines = [f"{s['action']:<8} {s['path']}" + (f"  (revision {s['rev']})" if s.get("rev") else "")
             for s in out["steps"]]
    lines += [f"lost     {u['path']}  (revision {u['rev']} is no longer kept)" for u in out["unavailable"]]
    if not out["steps"]:
        lines.append(f"{out['path']} is already as it was at {out['to']}")
    elif args.dry_run:
        lines.append("(dry run: nothing changed)")
    _out(args, out, "\n".join(lines))
    return 0


async def cmd_quota(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    async with client:
        q = await client.quota()
    limit = format_size(q["limit"]) if q["limit"] else "unlimited"
    text = f"used {format_size(q['used'])} of {limit}"
    if q["reserved"]:
        text += f" ({format_size(q['reserved'])} reserved by uploads in progress)"
    _out(args, q, text)
    return 0


async def cmd_search(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    found: list[dict[str, Any]] = []
    async with client:
        offset: int | None = 0
        while offset is not None and len(found) < args.limit:
            page = await client.search(" ".join(args.words), _remote(args.path),
                                       min(100, args.limit - len(found)), offset)
            found.extend(page["entries"])
            offset = page["next"]
    _out(args, found, "\n".join(e["path"] + ("/" if e["kind"] == "dir" else "") for e in found))
    return 0


async def cmd_sync(args: argparse.Namespace) -> int:
    from python_client.sync.daemon import Daemon
    from python_client.sync.engine import Engine, FolderInUse
    from python_client.sync.model import Action, Op

    client, profile = _client(args)
    root = Path(args.folder).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise CliError(f"{root} is not a folder", EXIT_USAGE)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".satchel").mkdir(exist_ok=True)
    handler = logging.FileHandler(root / ".satchel" / "sync.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    level = (args.log_level or os.environ.get("SATCHEL_LOG_LEVEL") or "info").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise CliError(f"unknown log level {level.lower()!r} (debug, info, warning, error)", EXIT_USAGE)
    logging.getLogger().setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("python_client").setLevel(level)  # debug: ours only (watchdog's would log its own log's writes)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the log
    arrows = {Op.upload: "↑", Op.mkdir_remote: "↑", Op.download: "↓", Op.mkdir_local: "↓", Op.move_remote: "→",
              Op.move_local: "→", Op.delete_remote: "✗", Op.trash_local: "✗", Op.conflict_rename: "!"}

    def show(a: Action) -> None:
        if not args.quiet and a.op in arrows:
            print(f"{arrows[a.op]} {a.op.name.replace('_', ' ')} {a.path}" + (f" -> {a.dest}" if a.dest else ""),
                  flush=True)

    excludes = args.exclude or None
    async with client:
        try:
            if args.once:
                engine = Engine(client, root, device=profile.device_name, excludes=excludes, on_action=show)
                try:
                    engine.bind(profile.server, profile.user)
                    await engine.until_quiet()
                finally:
                    await engine.aclose()
                return 0
            daemon = Daemon(client, root, device=profile.device_name, device_id=profile.device_id,
                            server=profile.server, user=profile.user, excludes=excludes, on_action=show)
        except FolderInUse as exc:
            raise CliError(str(exc)) from exc
        task = asyncio.ensure_future(daemon.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        if not args.quiet:
            print(f"syncing {root} with {profile.server} as {profile.user} (Ctrl-C to stop)", flush=True)
        try:
            await task
        except asyncio.CancelledError:
            if not args.quiet:
                print("stopped", flush=True)
    return 0


def _synced_folder(start: str | None) -> Path:
    here = Path(start or ".").expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / ".satchel" / "state.db").exists():
            return folder
    raise CliError(f"{here} is not inside a synced folder (run `satchel sync FOLDER` first)", EXIT_USAGE)


async def cmd_status(args: argparse.Namespace) -> int:
    from python_client.sync.status import UP_TO_DATE, folder_status

    client, _ = _client(args)
    root = _synced_folder(args.folder)
    async with client:
        st = await folder_status(client, root)
    shown = [p for p in st.paths if args.all or p.state != UP_TO_DATE]
    counts = st.counts()
    if args.json:
        print(json.dumps({"folder": str(root), "online": st.online, "counts": counts,
                          "paths": [vars(p) for p in shown]}, indent=2))
        return 0
    for p in shown:
        name = p.path + ("/" if p.kind == "dir" else "")
        print(f"{p.state:<20} {name}" + (f"  ({p.detail})" if p.detail else ""))
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    print(f"{root}: {summary}" + ("" if st.online else " (server unreachable: as of the last sync)"))
    return 0


# ---------------------------------------------------------------- argument parsing

def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="data folder (env SATCHEL_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (env DATABASE_URL)")
    p.add_argument("--blob-url", help="chunk store URL (env SATCHEL_BLOB_URL)")
    p.add_argument("--log-level", help="debug, info, warning, error (env SATCHEL_LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="satchel", description="Satchel file sync: server and client.")
    p.add_argument("--config-dir", help="client config folder (env SATCHEL_CONFIG_DIR; one per device)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the server")
    _server_flags(s)
    s.add_argument("--host", help="address to listen on (env SATCHEL_HOST)")
    s.add_argument("--port", type=int, help="port (env SATCHEL_PORT)")
    s.add_argument("--no-signup", action="store_true", help="turn sign-up off (env SATCHEL_SIGNUP=false)")
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.set_defaults(func=cmd_serve, sync=True)

    admin = sub.add_parser("admin", help="server administration (runs against the data folder)")
    asub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    au = asub.add_parser("add-user", help="create a user")
    _server_flags(au)
    au.add_argument("name")
    au.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    au.add_argument("--quota", help="storage quota, e.g. 10GiB (default: server default)")
    au.add_argument("--admin", action="store_true", help="make the user an administrator")
    au.set_defaults(func=cmd_admin_add_user)
    sq = asub.add_parser("set-quota", help="set a user's storage limit (0 = unlimited)")
    _server_flags(sq)
    sq.add_argument("name")
    sq.add_argument("size", help="e.g. 5MB, 10GiB, 0")
    sq.set_defaults(func=cmd_admin_set_quota)
    gc = asub.add_parser("gc", help="collect garbage now: old versions, old trash, unreferenced chunks")
    _server_flags(gc)
    gc.add_argument("--dry-run", action="store_true", help="only count what would be freed")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_admin_gc)

    su = sub.add_parser("signup", help="create an account on a server that allows sign-up")
    su.add_argument("url")
    su.add_argument("name")
    su.add_argument("--password-stdin", action="store_true")
    su.set_defaults(func=cmd_signup)

    li = sub.add_parser("login", help="log this device in")
    li.add_argument("url")
    li.add_argument("name")
    li.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    li.add_argument("--device", help="device name (default: host name)")
    li.add_argument("--kind", default="cli", choices=["cli", "desktop", "sdk"], help=argparse.SUPPRESS)
    li.set_defaults(func=cmd_login)

    sub.add_parser("logout", help="log this device out").set_defaults(func=cmd_logout)

    dv = sub.add_parser("devices", help="list logged-in devices")
    dv.add_argument("--revoke", type=int, metavar="ID", help="log device ID out")
    dv.add_argument("--json", action="store_true")
    dv.set_defaults(func=cmd_devices)

    ls = sub.add_parser("ls", help="list a folder")
    ls.add_argument("path", nargs="?", default="/")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    inf = sub.add_parser("info", help="account information, or metadata of PATH")
    inf.add_argument("path", nargs="?")
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=cmd_info)

    mk = sub.add_parser("mkdir", help="create a folder (and its parents)")
    mk.add_argument("path")
    mk.set_defaults(func=cmd_mkdir)

    mv = sub.add_parser("mv", help="rename or move")
    mv.add_argument("src")
    mv.add_argument("dst")
    mv.set_defaults(func=cmd_mv)

    rm = sub.add_parser("rm", help="move files or folders to the trash")
    rm.add_argument("paths", nargs="+")
    rm.set_defaults(func=cmd_rm)

    put = sub.add_parser("put", help="upload a file or folder (re-run to resume)")
    put.add_argument("local")
    put.add_argument("remote")
    put.add_argument("-q", "--quiet", action="store_true")
    put.set_defaults(func=cmd_put)

    wa = sub.add_parser("watch", help="print changes as they happen (Ctrl-C to stop)")
    wa.add_argument("--json", action="store_true", help="one JSON object per line")
    wa.add_argument("--resume", action="store_true",
                    help="start where the last `watch --resume` stopped instead of now")
    wa.set_defaults(func=cmd_watch)

    sh = sub.add_parser("share", help="share a folder or a file with a user (again: change their role)")
    sh.add_argument("path")
    sh.add_argument("user")
    sh.add_argument("--role", choices=("viewer", "editor"), default="viewer")
    sh.add_argument("--can-reshare", action="store_true", help="let them add members too")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_share)
    us = sub.add_parser("unshare", help="remove a user from a shared folder or file")
    us.add_argument("path")
    us.add_argument("user")
    us.set_defaults(func=cmd_unshare)
    mb = sub.add_parser("members", help="members of a shared folder or file (no PATH: your shares)")
    mb.add_argument("path", nargs="?")
    mb.add_argument("--json", action="store_true")
    mb.set_defaults(func=cmd_members)
    lv = sub.add_parser("leave", help="leave a folder or file someone shared with you")
    lv.add_argument("path")
    lv.set_defaults(func=cmd_leave)
    lk = sub.add_parser("link", help="make a link share and print its URL")
    lk.add_argument("path")
    lk.add_argument("--expires", help="3d, 1h, or an ISO 8601 time (default: never)")
    lk.add_argument("--password", help="a password the link holder must give")
    lk.add_argument("--upload", action="store_true", help="a file request: holders can only add files")
    lk.add_argument("--json", action="store_true")
    lk.set_defaults(func=cmd_link)
    ur = sub.add_parser("url", help="print a short-lived URL of a file's bytes that needs no token "
                        "(for curl or a browser; SATCHEL_URL_TTL; dies with this device's log-out)")
    ur.add_argument("path")
    ur.add_argument("--rev", type=int, help="a revision (default: the newest)")
    ur.add_argument("--json", action="store_true")
    ur.set_defaults(func=cmd_url)
    lks = sub.add_parser("links", help="list your live link shares")
    lks.add_argument("--json", action="store_true")
    lks.set_defaults(func=cmd_links)
    rl = sub.add_parser("revoke-link", help="revoke a link share")
    rl.add_argument("id", type=int)
    rl.set_defaults(func=cmd_revoke_link)

    get = sub.add_parser("get", help="download a file or folder (re-run to resume)")
    get.add_argument("remote")
    get.add_argument("local", nargs="?", default=".", help="file or folder to write (default: here)")
    get.add_argument("--revision", type=int, metavar="R", help="an older revision (see `satchel versions`)")
    get.add_argument("-q", "--quiet", action="store_true")
    get.set_defaults(func=cmd_get)
    _history_commands(sub)

    sy = sub.add_parser("sync", help="keep FOLDER identical to the account's files (runs until stopped)")
    sy.add_argument("folder")
    sy.add_argument("--exclude", action="append", metavar="PATH",
                    help="selective sync: a server folder this device does not sync (repeatable; "
                         "replaces the folder's stored list)")
    sy.add_argument("--once", action="store_true", help="sync until nothing is left to do, then exit")
    sy.add_argument("-q", "--quiet", action="store_true")
    sy.add_argument("--log-level", help="of the folder's .satchel/sync.log: debug (with each transfer's phase "
                                        "timings), info, warning, error (env SATCHEL_LOG_LEVEL)")
    sy.set_defaults(func=cmd_sync)

    st = sub.add_parser("status", help="per file: up to date, waiting to upload or download, conflict, blocked")
    st.add_argument("folder", nargs="?", help="a synced folder (default: the one around the current directory)")
    st.add_argument("--all", action="store_true", help="also list files that are up to date")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    return p


def _history_commands(sub: Any) -> None:
    ve = sub.add_parser("versions", help="list the revisions of a file")
    ve.add_argument("path")
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=cmd_versions)

    rs = sub.add_parser("restore", help="make an old revision of a file current again (a new revision)")
    rs.add_argument("path")
    rs.add_argument("--revision", type=int, metavar="R", required=True)
    rs.set_defaults(func=cmd_restore)

    tr = sub.add_parser("trash", help="list deleted files and folders (at or below PATH)")
    tr.add_argument("path", nargs="?", default="/")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_trash)

    for name, helptext, func in (("undelete", "restore a deleted file or folder from the trash", cmd_undelete),
                                 ("purge", "erase a deleted file or folder from the trash for good", cmd_purge)):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("path")
        c.add_argument("--id", type=int, help="the trash item (from `satchel trash`) when PATH has several")
        c.set_defaults(func=func)

    rw = sub.add_parser("rewind", help="bring a folder back to how it was at TIME, as new changes")
    rw.add_argument("path")
    rw.add_argument("--to", required=True, metavar="TIME", help="ISO 8601 (UTC without offset) or ago: 2h, 3d")
    rw.add_argument("--dry-run", action="store_true", help="only list what would change")
    rw.add_argument("--json", action="store_true")
    rw.set_defaults(func=cmd_rewind)

    qu = sub.add_parser("quota", help="storage used and the limit")
    qu.add_argument("--json", action="store_true")
    qu.set_defaults(func=cmd_quota)

    se = sub.add_parser("search", help="find files and folders by name, path and text")
    se.add_argument("words", nargs="+")
    se.add_argument("--path", default="/", help="search below this folder only")
    se.add_argument("--limit", type=int, default=50, help="at most this many results")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], Any] = args.func
    try:
        if getattr(args, "sync", False):
            return int(func(args))
        coro: Awaitable[int] = func(args)
        return int(asyncio.run(coro))  # type: ignore[arg-type]
    except CliError as exc:
        print(f"satchel: {exc}", file=sys.stderr)
        return exc.exit_code
    except SatchelError as exc:
        print(f"satchel: {exc.message} [{exc.code.value}]", file=sys.stderr)
        return EXIT_AUTH if exc.code is ErrorCode.unauthorized else EXIT_REFUSED
    except httpx.TransportError as exc:
        print(f"satchel: cannot reach the server: {exc}", file=sys.stderr)
        return EXIT_NETWORK
    except OSError as exc:
        if exc.filename is None:  # a socket's (the chunk transfers' HTTP client raises these)
            print(f"satchel: cannot reach the server: {exc}", file=sys.stderr)
            return EXIT_NETWORK
        print(f"satchel: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as exc:
        print(f"satchel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("satchel: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
