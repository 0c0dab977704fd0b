"""The Starlette application: routes, error handlers, and a lifespan that owns every resource.

    create_app(config) -> Starlette
        lifespan: Database (migrated) + blob store + URL signer -> app.state.services
                  bus (memory | redis) + presence + hub (fan-out; rung after every commit)
                  co-editing rooms (server/coedit/), saved on shutdown
                  background sweeper task, cancelled on shutdown
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.api import accounts as accounts_api
from server.api import changes as changes_api
from server.api import files as files_api
from server.api import history as history_api
from server.api import meta, web
from server.api import search as search_api
from server.api import shares as shares_api
from server.api.http import on_client_gone, on_http_error, on_satchel_error, on_unexpected
from server.auth.signing import UrlSigner
from server.bus import open_bus
from server.coedit.manager import Coedit
from server.config import Config
from server.core.errors import SatchelError
from server.presence import open_presence
from server.services import sweeper
from server.services.context import Services
from server.storage.blobs import open_blob_store
from server.storage.db import Database
from server.ws.endpoint import websocket_endpoint
from server.ws.hub import Hub

log = logging.getLogger("satchel")
PRESENCE_SLACK = 5.0  # s past two heartbeats before a member that stopped renewing is gone


GC_GEN0_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Keep the cyclic collector's pauses short for a server holding thousands of sockets.

    What start-up allocated (modules, SQLAlchemy metadata, routes) is frozen out of the
    collector's view, and young collections run every 50,000 allocations instead of 700: with
    1,000 connections, collections had stalled every push by 100-330 ms (800 ms at 5,000).
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def satchel_version() -> str:
    try:
        return version("satchel")
    except PackageNotFoundError:
        return "0.0.0"


@contextlib.asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """Database (migrated), blob store and signer, closed in reverse order on exit."""
    config = config.with_derived()
    db = Database(config.database_url)
    blobs = open_blob_store(config)
    try:
        await db.migrate()
        await blobs.start()
        yield Services(config=config, db=db, blobs=blobs, signer=UrlSigner(config.secret_key))
    finally:
        await blobs.close()
        await db.close()


def create_app(config: Config) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/health", meta.health, methods=["GET"]),
        *accounts_api.routes,
        *files_api.routes,
        *changes_api.routes,
        *shares_api.routes, *history_api.routes, *search_api.routes,
    ]
    routes.append(meta.openapi_route(routes, satchel_version()))
    routes.append(WebSocketRoute("/api/v1/ws", websocket_endpoint))
    routes.extend(web.routes)  # after openapi_route: the web app's files are not part of the API

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_services(config) as svc:
            bus = open_bus(svc.config.redis_url or "memory://")
            # Sessions renew their places every heartbeat: two missed ones (a node that died) and
            # its members are gone for everyone; 5 s of slack for a renewal late under load.
            presence = open_presence(svc.config.redis_url or "memory://", bus,
                                     2 * svc.config.ws_heartbeat + PRESENCE_SLACK)
            hub = Hub(svc.db, svc.blobs, bus)
            await bus.start()
            await presence.start()
            await hub.start()
            svc.db.after_commit = hub.committed
            app.state.services, app.state.hub, app.state.presence = svc, hub, presence
            app.state.node = svc.config.node_id
            coedit = Coedit(svc, hub, bus, svc.config.node_id)
            await coedit.start()
            app.state.coedit = coedit
            sweep = asyncio.create_task(sweeper.run(svc), name="sweeper")
            _tune_gc()
            log.info("satchel %s ready: database=%s blobs=%s", satchel_version(),
                     svc.db.engine.url.render_as_string(hide_password=True), type(svc.blobs).__name__)
            try:
                yield
            finally:
                svc.db.after_commit = None
                sweep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweep
                await coedit.close()  # saves open documents: before the database goes
                await hub.close()
                await presence.close()
                await bus.close()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SatchelError: on_satchel_error,
            HTTPException: on_http_error,
            ClientDisconnect: on_client_gone,
            Exception: on_unexpected,
        },
    )
