"""Which services and jobs a push or pull request builds, and why not (Northflank's build
rules, ``docs/webhooks.md``).

Pure: the caller gives the workload's settings, the event, and a way to get the push's net
diff and head commit message (read from the mirror only when a rule needs them).

Glob semantics of ``branchRestrictions`` / ``prRestrictions`` (Northflank: "each commit
belonging to a branch that matches one of the provided build rules will be built"): a rule
is a branch name in which ``*`` matches any run of characters, ``/`` included
(``feature/*`` matches ``feature/a/b``), and ``?`` one character; everything else is
literal. An empty or absent list builds nothing automatically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shipyard.builds.relevant_commit import PathRules, ci_ignore_flags
from shipyard.webhooks.events import PullRequest, Push

MAX_LISTED_RULES = 5


@lru_cache(maxsize=1024)
def _compiled(rule: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in rule]
    return re.compile("".join(parts), re.DOTALL)


def glob_matches(rule: str, name: str) -> bool:
    return bool(rule) and _compiled(rule).fullmatch(name) is not None


def _shown(rules: Sequence[str]) -> str:
    listed = ", ".join(rules[:MAX_LISTED_RULES])
    return listed + (", …" if len(rules) > MAX_LISTED_RULES else "")


@dataclass(frozen=True)
class Candidate:
    """What the rules need of a service or job."""

    entity: str  # service | job
    slug: str
    kind: str  # combined | build | manual | cron
    branch: str | None  # vcsData.projectBranch
    spec: Mapping[str, Any]
    path_ignore_rules: Sequence[str]
    is_allow_list: bool

    @property
    def noun(self) -> str:
        return "job" if self.entity == "job" else "service"

    @property
    def config(self) -> Mapping[str, Any]:
        value = self.spec.get("buildConfiguration")
        return value if isinstance(value, dict) else {}

    def restrictions(self, key: str) -> list[str]:
        value = self.config.get(key)
        return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


@dataclass(frozen=True)
class Diff:
    paths: tuple[str, ...] | None  # None: unknown, every path counts as changed
    head_message: str | None
    basis: str


@dataclass(frozen=True)
class Decision:
    build: bool
    reason: str | None = None  # why not (skipped), in the user's words

    @classmethod
    def skip(cls, reason: str) -> Decision:
        return cls(False, reason)


BUILD = Decision(True)


def decide_ref(candidate: Candidate, event: Push | PullRequest) -> Decision:
    """The rules that need no git: CI switch, kind, branch and PR restrictions."""
    if candidate.spec.get("disabledCI") is True:
        return Decision.skip(f"CI disabled for this {candidate.noun}")
    if isinstance(event, PullRequest):
        if candidate.kind != "build":
            return Decision.skip(
                f"pull requests build only build services (this is a {candidate.kind} "
                f"{candidate.noun})"
            )
        rules = candidate.restrictions("prRestrictions")
        if not any(glob_matches(rule, event.head_branch) for rule in rules):
            return Decision.skip(
                f"pull request #{event.number} from {event.head_branch or '(unknown branch)'} "
                f"matches no prRestrictions ({_shown(rules) or 'none set'})"
            )
        return BUILD
    if event.deleted:
        return Decision.skip(f"{event.ref} was deleted")
    branch = event.branch
    if branch is None:
        return Decision.skip(f"{event.ref} is not a branch (tags do not build)")
    if candidate.kind != "build":
        if branch != candidate.branch:
            return Decision.skip(
                f"branch {branch} is not the {candidate.noun}'s branch "
                f"({candidate.branch or 'none set'})"
            )
        return BUILD
    rules = candidate.restrictions("branchRestrictions")
    if not any(glob_matches(rule, branch) for rule in rules):
        return Decision.skip(
            f"branch {branch} matches no branchRestrictions ({_shown(rules) or 'none set'})"
        )
    return BUILD


def decide_content(candidate: Candidate, diff: Callable[[], Diff]) -> Decision:
    """``pathIgnoreRules`` / ``isAllowList`` on the push's net diff, ``ciIgnoreFlags`` on
    its head commit's message (``ciIgnoreFlagsEnabled``)."""
    rules = PathRules(
        tuple(candidate.path_ignore_rules),
        candidate.is_allow_list,
        ci_ignore_flags(candidate.config),
    )
    if not rules.needs_walk:
        return BUILD
    got = diff()
    message = got.head_message or ""
    for flag in rules.ignore_flags:
        if flag and flag in message:
            return Decision.skip(f"commit message has {flag}")
    if not rules.has_patterns or got.paths is None:
        return BUILD
    if rules.is_relevant(got.paths):
        return BUILD
    patterns = [p for p in rules.patterns if p.strip() and not p.lstrip().startswith("#")]
    if not got.paths:
        return Decision.skip("no file changed")
    if candidate.is_allow_list:
        return Decision.skip(
            f"no changed path matches the allow list: {_shown(patterns)} ({len(got.paths)} changed)"
        )
    return Decision.skip(
        f"only ignored paths changed: {_shown(patterns)} ({len(got.paths)} changed)"
    )
