"""Satchel server: Starlette app, storage, sync protocol.

Sub-packages:
    core/      pure rules both ends share (paths, chunking, error codes, units); no I/O framework imports
    auth/      passwords, device tokens, signed URLs
    storage/   metadata database (SQLAlchemy) and blob stores (local, S3)
    services/  the operations (accounts, tree, uploads, downloads, sweeper) on top of storage
    api/       HTTP routes that translate requests to services
    ws/        WebSocket session and msgpack protocol
    presence/  who is where
"""
