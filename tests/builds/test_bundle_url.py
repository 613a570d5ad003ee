"""bundleUrl secrets (userinfo, any query or fragment) never shown."""

from __future__ import annotations

import pytest

from shipyard.builds.bundle_url import redact, secret_parts


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://example.com/a.tar.gz", "https://example.com/a.tar.gz"),
        ("https://user:pass@example.com/a.tar", "https://***@example.com/a.tar"),
        ("https://tok@example.com:8443/a.tar", "https://***@example.com:8443/a.tar"),
        (
            "https://b.s3.amazonaws.com/a.tgz?X-Amz-Algorithm=AWS4&X-Amz-Signature=abcd1234",
            "https://b.s3.amazonaws.com/a.tgz?***",
        ),
        ("https://u:p@h/x.zip?token=t0ps3cret#frag", "https://***@h/x.zip?***#***"),
        ("http://h/a.tar?", "http://h/a.tar"),
        ("https://h:notaport/a.tar", "***"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown  # idempotent: rows may be redacted twice


def test_secret_parts_cover_raw_and_decoded_values() -> None:
    parts = secret_parts("https://me:p%40ss@h/a.tar?sig=a%2Fb&token=xyz")
    for value in ("me:p%40ss", "me", "p%40ss", "p@ss", "sig=a%2Fb&token=xyz", "a/b", "xyz"):
        assert value in parts
    assert secret_parts("https://h/a.tar") == []
