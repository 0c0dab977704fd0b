"""Satchel's Python client: the async SDK (``api.SatchelClient``), a sync wrapper
(``sync.Client``), transfer engines (``transfer``) and the ``satchel`` command line (``cli``)."""

import sys

# httpx's own command-line tool (httpx._main), which `import httpx` loads whenever click, pygments
# and rich are installed (they are: uvicorn and our progress bars), costs ~45 ms of every `satchel`
# command's start-up; Satchel never uses it. None in sys.modules makes httpx skip it.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from python_client.api import SatchelClient
from server.core.errors import ErrorCode, SatchelError

__all__ = ["ErrorCode", "SatchelClient", "SatchelError"]
