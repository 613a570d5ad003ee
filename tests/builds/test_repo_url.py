"""Repository credentials are split off the URL."""

from __future__ import annotations

import pytest

from shipyard.builds.repo_url import join_credentials, split_credentials


@pytest.mark.parametrize(
    ("url", "public", "secret"),
    [
        ("https://user:tok@example.com/r.git", "https://example.com/r.git", "user:tok"),
        ("https://ghp_token@github.com/o/r.git", "https://github.com/o/r.git", "ghp_token"),
        ("http://u:p@127.0.0.1:8080/r", "http://127.0.0.1:8080/r", "u:p"),
        ("ssh://git@example.com/r.git", "ssh://git@example.com/r.git", None),
        ("ssh://git:pw@example.com/r.git", "ssh://example.com/r.git", "git:pw"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None),
        ("file:///srv/r.git", "file:///srv/r.git", None),
        ("https://example.com/r.git", "https://example.com/r.git", None),
    ],
)
def test_split_and_join(url: str, public: str, secret: str | None) -> None:
    assert split_credentials(url) == (public, secret)
    assert join_credentials(public, secret) == url
