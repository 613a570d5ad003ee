"""Validation of git ref names without running git (the rules of ``git check-ref-format``).

Refs from users reach ``git fetch`` later; anything that could read as an option or escape
the ref namespace is refused here, at the API edge.
"""

from __future__ import annotations

import re

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")


def is_valid_branch(name: str) -> bool:
    if not name or len(name) > 255 or name.startswith("-") or name == "@":
        return False
    if _FORBIDDEN_CHARS.search(name) or ".." in name or "@{" in name or "//" in name:
        return False
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return False
    return all(not (part.startswith(".") or part.endswith(".lock")) for part in name.split("/"))


def is_valid_sha(sha: str) -> bool:
    return bool(SHA_PATTERN.match(sha))
