"""Secrets are redacted from every log line before it is stored (DESIGN.md rule 5)."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[REDACTED]"
_MIN_LEN = 4  # shorter values would mask ordinary words in every line


class Redactor:
    def __init__(self, secrets: Iterable[bytes | str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
            for candidate in (text, *text.splitlines()):
                candidate = candidate.strip()
                if len(candidate) >= _MIN_LEN:
                    values.add(candidate)
        # Longest first so a secret containing another is masked whole.
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for value in self._values:
            if value in line:
                line = line.replace(value, MASK)
        return line
