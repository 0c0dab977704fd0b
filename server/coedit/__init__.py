"""Live co-editing of text files (protocol.md, "Co-editing").

    text.py       position units (pycrdt: UTF-8 bytes) and applying a text diff as Y.Text ops
    awareness.py  the y-protocols awareness encoding and the per-document table of states
    merge.py      an external revision merged into a document as a diff against its base
    store.py      the CRDT state in the database, and saving the text as a file revision
    room.py       one document on one node: its Y.Doc, its local sessions, saving, relaying
    manager.py    every room of a node, the bus channel per document, the periodic repairs
"""
