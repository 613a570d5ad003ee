"""Log line filters (``textIncludes``, ``regexIncludes``, … of the logs endpoints).

Patterns come from API callers, so they are compiled with RE2: matching is linear in the
line's length whatever the pattern (``^(a+)+$`` against ``aaaa…b`` takes Python's ``re``
exponential time while it holds the GIL, which froze every other client). RE2 refuses what
it cannot run in linear time (backreferences, lookaround); those patterns are a 400 naming
the field, like a pattern that does not parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from shipyard.builds.errors import InvalidRequest

MAX_PATTERN_CHARS = 256
# RE2 builds its automaton within this budget and refuses larger patterns; far above what a
# 256-character pattern needs, far below anything that hurts the server.
_MAX_MEM = 8 * 1024 * 1024


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the caller's error, not a server log line
    options.never_capture = True  # we only ask "does it match": no group bookkeeping
    options.max_mem = _MAX_MEM
    return options


def compile_pattern(pattern: str, field: str) -> Any:
    """``pattern`` compiled with RE2, or ``InvalidRequest`` naming ``field``."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidRequest(
            f"{field} is longer than {MAX_PATTERN_CHARS} characters", {field: "too long"}
        )
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidRequest(
            f"{field} is not a supported regular expression (RE2 syntax: no backreferences "
            f"or lookaround): {reason}",
            {field: "invalid"},
        ) from None


@dataclass(frozen=True)
class LineFilter:
    text_includes: str | None = None
    text_not_includes: str | None = None
    regex_includes: Any = None  # compiled RE2 pattern (the module ships no type stubs)
    regex_not_includes: Any = None

    @classmethod
    def parse(
        cls,
        *,
        text_includes: str | None = None,
        text_not_includes: str | None = None,
        regex_includes: str | None = None,
        regex_not_includes: str | None = None,
    ) -> LineFilter:
        """Validate the query parameters (raises ``InvalidRequest`` naming the bad one)."""
        return cls(
            text_includes=text_includes,
            text_not_includes=text_not_includes,
            regex_includes=None
            if regex_includes is None
            else compile_pattern(regex_includes, "regexIncludes"),
            regex_not_includes=None
            if regex_not_includes is None
            else compile_pattern(regex_not_includes, "regexNotIncludes"),
        )

    @property
    def active(self) -> bool:
        return any(
            x is not None
            for x in (
                self.text_includes,
                self.text_not_includes,
                self.regex_includes,
                self.regex_not_includes,
            )
        )

    def __call__(self, line: str) -> bool:
        """Whether ``line`` passes every given filter."""
        if self.text_includes is not None and self.text_includes not in line:
            return False
        if self.text_not_includes is not None and self.text_not_includes in line:
            return False
        if self.regex_includes is not None and self.regex_includes.search(line) is None:
            return False
        return self.regex_not_includes is None or self.regex_not_includes.search(line) is None
