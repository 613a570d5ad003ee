"""Log line filters: RE2 patterns (linear time), refusals that name the field."""

from __future__ import annotations

import pytest

from shipyard.builds.errors import InvalidRequest
from shipyard.builds.log_filter import LineFilter, compile_pattern


def test_catastrophic_backtracking_pattern_matches_correctly() -> None:
    keep = LineFilter.parse(regex_includes=r"^(a+)+$")
    assert not keep("a" * 100_000 + "b")
    assert keep("a" * 100_000)


def test_text_and_regex_filters_combine() -> None:
    keep = LineFilter.parse(
        text_includes="step", text_not_includes="cached", regex_not_includes=r"\d{3}$"
    )
    assert keep.active
    assert keep("step 1")
    assert not keep("step 1 cached")
    assert not keep("step 100")
    assert not keep("other")
    assert not LineFilter.parse().active
    assert LineFilter.parse()("anything")


@pytest.mark.parametrize("pattern", ["(", r"(a)\1", "(?=a)", "(?<=a)b", "x{2000}", "a" * 257])
def test_refused_patterns_name_the_field(pattern: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        compile_pattern(pattern, "regexNotIncludes")
    assert raised.value.details == {"regexNotIncludes": raised.value.details["regexNotIncludes"]}
    assert "regexNotIncludes" in raised.value.message
