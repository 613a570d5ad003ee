"""Where the CLI finds its server and token: flags, then SHIPYARD_URL / SHIPYARD_TOKEN, then
the file ``shipyard login`` wrote (``$XDG_CONFIG_HOME/shipyard/config.json``, mode 0600)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipyard" / "config.json"


def _saved() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def resolve(url: str | None, token: str | None) -> ClientConfig:
    saved = _saved()
    return ClientConfig(
        url=(url or os.environ.get("SHIPYARD_URL") or saved.get("url") or DEFAULT_URL).rstrip("/"),
        token=token or os.environ.get("SHIPYARD_TOKEN") or saved.get("token"),
    )


def save(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url.rstrip("/"), "token": token}, out)
    return path
