"""The desktop sync engine: keeps a local folder identical to the account's tree.

    state.py      the local SQLite database: synced + remote trees, cursor, blocked paths
    scanner.py    the local tree, read from disk (size/mtime/inode, confirmed by chunk hashes)
    ignore.py     .satchelignore rules and selective sync
    remote.py     the remote tree, kept from the change journal
    planner.py    pure: three trees in, actions out
    conflicts.py  conflicted-copy names
    executor.py   runs actions against the disk and the server
    engine.py     one reconciliation round and the loop to quiescence
    watcher.py    watchdog events, debounced
    daemon.py     the long-lived `satchel sync` process
    status.py     `satchel status`: per-file state
"""
