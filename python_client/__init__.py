"""Satchel's Python client: the async SDK (``api.SatchelClient``), a sync wrapper
(``sync.Client``), transfer engines (``transfer``) and the ``satchel`` command line (``cli``)."""

from python_client.api import SatchelClient
from server.core.errors import ErrorCode, SatchelError

__all__ = ["ErrorCode", "SatchelClient", "SatchelError"]
