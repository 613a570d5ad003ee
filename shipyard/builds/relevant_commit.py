"""Which commit to build when path rules are set (CONTRACT.md "Most recent relevant commit").

Pure domain logic: the git walk that produces the commits lives in the pipeline. Rules use
gitignore syntax (``pathIgnoreRules``); ``isAllowList`` inverts them into "build only when one
of these paths changed".

Rules come from API callers and become regular expressions. A rule like ``a*a*a*…b`` takes
a backtracking engine exponential time per path (minutes for one 40-character path), so the
rules are matched with pathspec's RE2 backend (linear time, no fallback to Python's ``re``),
and ``check_rules`` refuses oversized rule sets at the API: at most ``MAX_RULES`` rules of
``MAX_RULE_CHARS`` characters, each with at most ``MAX_STARS`` ``*`` (no real ignore rule
needs more; they bound the size of the compiled automaton).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pathspec

from shipyard.builds.errors import InvalidRequest

MAX_RULES = 256
MAX_RULE_CHARS = 1024
MAX_STARS = 16
FIELD = "buildConfiguration.pathIgnoreRules"


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


@dataclass(frozen=True)
class PathRules:
    patterns: tuple[str, ...]
    allow_list: bool
    # Compiled once per rules object; excluded from equality so two rule sets with the same
    # patterns compare equal.
    _spec: pathspec.GitIgnoreSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen=True forbids normal assignment; this is the documented way to cache a
        # derived value on a frozen dataclass.
        # backend="re2": never the backtracking "simple" backend, even if re2 went missing.
        spec = pathspec.GitIgnoreSpec.from_lines(self.patterns, backend="re2")
        object.__setattr__(self, "_spec", spec)

    @property
    def has_patterns(self) -> bool:
        # Blank lines and comments do not count: a rule file of only comments filters nothing.
        return any(p.strip() and not p.lstrip().startswith("#") for p in self.patterns)

    def is_relevant(self, changed_paths: Iterable[str]) -> bool:
        """Whether a commit touching ``changed_paths`` should trigger a build.

        A commit that changes no file (an empty commit) is only relevant when there are no
        rules at all: with rules, nothing it changed can pass them.
        """
        if not self.has_patterns:
            return True
        if self.allow_list:
            return any(self._spec.match_file(path) for path in changed_paths)
        return any(not self._spec.match_file(path) for path in changed_paths)


def most_recent_relevant(
    commits: Iterable[tuple[str, Sequence[str]]], rules: PathRules
) -> str | None:
    """The first relevant sha of ``commits`` (given newest first), or None if none is.

    Consumes ``commits`` lazily so a caller can stream a long history and stop early.
    """
    for sha, changed_paths in commits:
        if rules.is_relevant(changed_paths):
            return sha
    return None
