"""Persistence: the metadata database (``db``, ``models``, ``migrations``) and blob stores (``blobs``)."""
