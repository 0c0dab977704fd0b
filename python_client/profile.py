"""Where a device keeps its login: ``CONFIG_DIR/profile.json`` (mode 0600).

CONFIG_DIR is ``--config-dir``, else ``$SATCHEL_CONFIG_DIR``, else ``~/.config/satchel``; two config
dirs on one machine are two devices.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def config_dir(explicit: str | None = None) -> Path:
    raw = explicit or os.environ.get("SATCHEL_CONFIG_DIR") or "~/.config/satchel"
    return Path(raw).expanduser()


@dataclass
class Profile:
    server: str
    user: str
    token: str
    device_id: int
    device_name: str

    @classmethod
    def load(cls, directory: Path) -> Profile | None:
        try:
            data = json.loads((directory / "profile.json").read_text())
            return cls(**data)
        except FileNotFoundError:
            return None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / "profile.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, directory / "profile.json")

    @staticmethod
    def remove(directory: Path) -> None:
        (directory / "profile.json").unlink(missing_ok=True)
