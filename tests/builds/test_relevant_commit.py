from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from shipyard.builds.errors import InvalidRequest
from shipyard.builds.relevant_commit import (
    MAX_RULE_CHARS,
    MAX_RULES,
    MAX_STARS,
    PathRules,
    check_rules,
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
    commits: list[tuple[str, Sequence[str]]] = [
        ("c5", ["docs/new.md"]),
        ("c4", ["README.md"]),
        ("c3", ["app.py", "docs/x.md"]),
        ("c2", ["app.py"]),
    ]
    assert most_recent_relevant(commits, IGNORE_DOCS) == "c3"
    assert most_recent_relevant(commits, ONLY_SRC) is None
    assert most_recent_relevant(commits, PathRules((), False)) == "c5"
    assert most_recent_relevant([], IGNORE_DOCS) is None


def test_most_recent_relevant_stops_consuming_at_the_answer() -> None:
    consumed: list[str] = []

    def history() -> Iterator[tuple[str, Sequence[str]]]:
        for sha, paths in [("c3", ["docs/a"]), ("c2", ["app.py"]), ("c1", ["boom"])]:
            consumed.append(sha)
            yield sha, paths

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
