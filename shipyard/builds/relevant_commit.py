"""Which commit to build when path rules or commit ignore flags are set (CONTRACT.md "Most
recent relevant commit").

Pure domain logic: the git walk that produces the commits lives in the pipeline. Rules use
gitignore syntax (``pathIgnoreRules``); ``isAllowList`` inverts them into "build only when one
of these paths changed". With ``ciIgnoreFlagsEnabled``, a commit whose message contains one of
``ciIgnoreFlags`` (a plain, case-sensitive substring; Northflank's default list when the list
is empty or absent) is not relevant either.

Rules come from API callers and become regular expressions. A rule like ``a*a*a*…b`` takes
a backtracking engine exponential time per path (minutes for one 40-character path), so the
rules are matched with pathspec's RE2 backend (linear time, no fallback to Python's ``re``),
and ``check_rules`` refuses oversized rule sets at the API: at most ``MAX_RULES`` rules of
``MAX_RULE_CHARS`` characters, each with at most ``MAX_STARS`` ``*`` (no real ignore rule
needs more; they bound the size of the compiled automaton).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pathspec

from shipyard.builds.errors import InvalidRequest

MAX_RULES = 256
MAX_RULE_CHARS = 1024
MAX_STARS = 16
FIELD = "buildConfiguration.pathIgnoreRules"
# Northflank's default ``ciIgnoreFlags``, as js-client 0.9.5's api-client.d.ts documents it
# ("Defaults to [...]" on every ``buildConfiguration.ciIgnoreFlags``).
DEFAULT_CI_IGNORE_FLAGS: tuple[str, ...] = (
    "[skip ci]",
    "[ci skip]",
    "[no ci]",
    "[skip nf]",
    "[nf skip]",
    "[northflank skip]",
    "[skip northflank]",
)
MAX_CI_FLAGS = 64
MAX_CI_FLAG_CHARS = 256


def check_rules(patterns: Sequence[str]) -> None:
    """Refuse rule sets beyond the limits above (``InvalidRequest`` naming the rule)."""
    if len(patterns) > MAX_RULES:
        raise InvalidRequest(f"{FIELD} has more than {MAX_RULES} rules", {FIELD: "too many"})
    for i, pattern in enumerate(patterns):
        where = f"{FIELD}.{i}"
        if len(pattern) > MAX_RULE_CHARS:
            raise InvalidRequest(
                f"{where} is longer than {MAX_RULE_CHARS} characters", {where: "too long"}
            )
        if pattern.count("*") > MAX_STARS:
            raise InvalidRequest(
                f"{where} has more than {MAX_STARS} '*' wildcards", {where: "too many wildcards"}
            )


def ci_ignore_flags(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The flags a stored ``buildConfiguration`` asks for: none unless
    ``ciIgnoreFlagsEnabled`` is true; then ``ciIgnoreFlags``, or the default list when it is
    empty or absent. Empty strings are dropped (they would be in every message)."""
    if config.get("ciIgnoreFlagsEnabled") is not True:
        return ()
    flags = tuple(f for f in config.get("ciIgnoreFlags") or () if isinstance(f, str) and f)
    return flags or DEFAULT_CI_IGNORE_FLAGS


@dataclass(frozen=True)
class PathRules:
    patterns: tuple[str, ...]
    allow_list: bool
    # Commit ignore flags (already resolved: see ``ci_ignore_flags``).
    ignore_flags: tuple[str, ...] = ()
    # Compiled once per rules object; excluded from equality so two rule sets with the same
    # patterns compare equal.
    _spec: pathspec.GitIgnoreSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen=True forbids normal assignment; this is the documented way to cache a
        # derived value on a frozen dataclass.
        # backend="re2": never the backtracking "simple" backend, even if re2 went missing.
        spec = pathspec.GitIgnoreSpec.from_lines(self.patterns, backend="re2")
        object.__setattr__(self, "_spec", spec)

    @classmethod
    def of(
        cls, patterns: Sequence[str], allow_list: bool, config: Mapping[str, Any]
    ) -> PathRules | None:
        """The rules of a service, or None when they select nothing (build the tip)."""
        rules = cls(tuple(patterns), allow_list, ci_ignore_flags(config))
        return rules if rules.needs_walk else None

    @property
    def has_patterns(self) -> bool:
        # Blank lines and comments do not count: a rule file of only comments filters nothing.
        return any(p.strip() and not p.lstrip().startswith("#") for p in self.patterns)

    @property
    def needs_walk(self) -> bool:
        """Whether picking the commit needs the branch's history (paths or messages)."""
        return self.has_patterns or any(self.ignore_flags)

    def is_flagged(self, message: str) -> bool:
        """Whether ``message`` carries one of the commit ignore flags."""
        return any(flag and flag in message for flag in self.ignore_flags)

    def is_relevant(self, changed_paths: Iterable[str], message: str = "") -> bool:
        """Whether a commit touching ``changed_paths`` with ``message`` should trigger a build.

        A flagged message makes it irrelevant whatever it changed. A commit that changes no
        file (an empty commit) is only relevant when there are no path rules: with rules,
        nothing it changed can pass them.
        """
        if self.is_flagged(message):
            return False
        if not self.has_patterns:
            return True
        if self.allow_list:
            return any(self._spec.match_file(path) for path in changed_paths)
        return any(not self._spec.match_file(path) for path in changed_paths)


def most_recent_relevant(
    commits: Iterable[tuple[str, Sequence[str], str]], rules: PathRules
) -> str | None:
    """The first relevant sha of ``commits`` (sha, changed paths, message; newest first), or
    None if none is.

    Consumes ``commits`` lazily so a caller can stream a long history and stop early.
    """
    for sha, changed_paths, message in commits:
        if rules.is_relevant(changed_paths, message):
            return sha
    return None
