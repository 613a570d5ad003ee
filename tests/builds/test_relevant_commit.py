from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from shipyard.builds.errors import InvalidRequest
from shipyard.builds.relevant_commit import (
    DEFAULT_CI_IGNORE_FLAGS,
    MAX_RULE_CHARS,
    MAX_RULES,
    MAX_STARS,
    PathRules,
    check_rules,
    ci_ignore_flags,
    most_recent_relevant,
)

IGNORE_DOCS = PathRules(patterns=("docs/", "*.md"), allow_list=False)
ONLY_SRC = PathRules(patterns=("src/", "Dockerfile"), allow_list=True)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["docs/index.md"], False),
        (["README.md", "docs/a/b.png"], False),
        (["README.md", "app.py"], True),
        (["nested/docs/x.txt"], False),  # "docs/" has no leading slash: matches at any depth
        (["docsite/x.txt"], True),
        ([], False),
    ],
)
def test_ignore_rules_relevant_when_any_file_is_not_ignored(
    paths: list[str], expected: bool
) -> None:
    assert IGNORE_DOCS.is_relevant(paths) is expected


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["src/main.py"], True),
        (["README.md", "Dockerfile"], True),
        (["README.md"], False),
        (["lib/src/x.py"], True),
        (["srcs/x.py"], False),
        ([], False),
    ],
)
def test_allow_list_relevant_when_any_file_is_listed(paths: list[str], expected: bool) -> None:
    assert ONLY_SRC.is_relevant(paths) is expected


def test_negation_follows_gitignore_last_match_wins() -> None:
    rules = PathRules(patterns=("docs/**", "!docs/api/**"), allow_list=False)
    assert not rules.is_relevant(["docs/guide.md"])
    assert rules.is_relevant(["docs/api/spec.yaml"])


def test_anchored_pattern_only_matches_at_root() -> None:
    rules = PathRules(patterns=("/build",), allow_list=False)
    assert not rules.is_relevant(["build/out.txt"])
    assert rules.is_relevant(["src/build/out.txt"])


@pytest.mark.parametrize("allow_list", [False, True])
@pytest.mark.parametrize("patterns", [(), ("",), ("# only a comment", "   ")])
def test_no_patterns_means_every_commit_is_relevant(
    patterns: tuple[str, ...], allow_list: bool
) -> None:
    rules = PathRules(patterns=patterns, allow_list=allow_list)
    assert rules.is_relevant(["anything"])
    assert rules.is_relevant([])


def test_rules_compare_by_value() -> None:
    assert PathRules(("a",), False) == PathRules(("a",), False)
    assert PathRules(("a",), False) != PathRules(("a",), True)


def test_most_recent_relevant_walks_newest_first() -> None:
    commits: list[tuple[str, Sequence[str], str]] = [
        ("c5", ["docs/new.md"], "c5"),
        ("c4", ["README.md"], "c4"),
        ("c3", ["app.py", "docs/x.md"], "c3"),
        ("c2", ["app.py"], "c2"),
    ]
    assert most_recent_relevant(commits, IGNORE_DOCS) == "c3"
    assert most_recent_relevant(commits, ONLY_SRC) is None
    assert most_recent_relevant(commits, PathRules((), False)) == "c5"
    assert most_recent_relevant([], IGNORE_DOCS) is None


def test_most_recent_relevant_stops_consuming_at_the_answer() -> None:
    consumed: list[str] = []

    def history() -> Iterator[tuple[str, Sequence[str], str]]:
        for sha, paths in [("c3", ["docs/a"]), ("c2", ["app.py"]), ("c1", ["boom"])]:
            consumed.append(sha)
            yield sha, paths, ""

    assert most_recent_relevant(history(), IGNORE_DOCS) == "c2"
    assert consumed == ["c3", "c2"]


def test_pathological_wildcards_match_in_linear_time() -> None:
    # 16 stars, the most a rule may have: a backtracking engine takes minutes on this path.
    rules = PathRules(patterns=("a*" * MAX_STARS + "b",), allow_list=False)
    assert rules.is_relevant(["a" * 5000])  # not ignored: no "b"
    assert not rules.is_relevant(["a" * 5000 + "b"])
    assert rules.is_relevant(["src/" + "a" * 5000, "a" * 40 + "b"])


def test_check_rules_limits() -> None:
    check_rules(["a*" * MAX_STARS + "b"] * MAX_RULES)
    with pytest.raises(InvalidRequest, match=r"pathIgnoreRules\.1 has more than 16"):
        check_rules(["docs/", "a*" * (MAX_STARS + 1)])
    with pytest.raises(InvalidRequest, match="more than 256 rules"):
        check_rules(["x"] * (MAX_RULES + 1))
    with pytest.raises(InvalidRequest, match="longer than 1024"):
        check_rules(["x" * (MAX_RULE_CHARS + 1)])


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, ()),
        ({"ciIgnoreFlags": ["[x]"]}, ()),  # not enabled
        ({"ciIgnoreFlagsEnabled": False, "ciIgnoreFlags": ["[x]"]}, ()),
        ({"ciIgnoreFlagsEnabled": True}, DEFAULT_CI_IGNORE_FLAGS),
        ({"ciIgnoreFlagsEnabled": True, "ciIgnoreFlags": []}, DEFAULT_CI_IGNORE_FLAGS),
        ({"ciIgnoreFlagsEnabled": True, "ciIgnoreFlags": None}, DEFAULT_CI_IGNORE_FLAGS),
        ({"ciIgnoreFlagsEnabled": True, "ciIgnoreFlags": [""]}, DEFAULT_CI_IGNORE_FLAGS),
        ({"ciIgnoreFlagsEnabled": True, "ciIgnoreFlags": ["[x]", ""]}, ("[x]",)),
        ({"ciIgnoreFlagsEnabled": "true", "ciIgnoreFlags": ["[x]"]}, ()),  # only a real bool
    ],
)
def test_ci_ignore_flags_of_a_build_configuration(
    config: dict[str, object], expected: tuple[str, ...]
) -> None:
    assert ci_ignore_flags(config) == expected


def test_default_flags_are_northflanks() -> None:
    # js-client 0.9.5 api-client.d.ts, buildConfiguration.ciIgnoreFlags: "Defaults to [...]".
    assert DEFAULT_CI_IGNORE_FLAGS == (
        "[skip ci]",
        "[ci skip]",
        "[no ci]",
        "[skip nf]",
        "[nf skip]",
        "[northflank skip]",
        "[skip northflank]",
    )


def test_flagged_message_is_not_relevant_whatever_it_changed() -> None:
    rules = PathRules((), False, DEFAULT_CI_IGNORE_FLAGS)
    assert rules.needs_walk
    assert not rules.is_relevant(["app.py"], "fix: x\n\nbody [skip ci]\n")
    assert not rules.is_relevant([], "[northflank skip] docs/a/b")
    assert rules.is_relevant(["app.py"], "fix: x [skip  ci] [SKIP CI] skip ci")  # exact only
    assert rules.is_relevant([], "no rules: an empty commit is relevant")
    with_paths = PathRules(("docs/",), False, ("[wip]",))
    assert not with_paths.is_relevant(["app.py"], "[wip] app")
    assert not with_paths.is_relevant(["docs/a"], "docs")
    assert with_paths.is_relevant(["app.py"], "app")


def test_rules_of_a_service() -> None:
    assert PathRules.of([], False, {}) is None
    assert PathRules.of(["# comment"], False, {"ciIgnoreFlagsEnabled": False}) is None
    flags_only = PathRules.of([], False, {"ciIgnoreFlagsEnabled": True})
    assert flags_only == PathRules((), False, DEFAULT_CI_IGNORE_FLAGS)
    assert PathRules.of(["docs/"], True, {}) == PathRules(("docs/",), True)


def test_most_recent_relevant_skips_flagged_commits() -> None:
    commits: list[tuple[str, Sequence[str], str]] = [
        ("c3", ["app.py"], "wip [skip nf]"),
        ("c2", ["docs/a.md"], "docs"),
        ("c1", ["app.py"], "feat"),
    ]
    flags = PathRules((), False, DEFAULT_CI_IGNORE_FLAGS)
    assert most_recent_relevant(commits, flags) == "c2"
    both = PathRules(("docs/",), False, DEFAULT_CI_IGNORE_FLAGS)
    assert most_recent_relevant(commits, both) == "c1"
