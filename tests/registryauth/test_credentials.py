"""Signed registry credentials, the signing key on disk, the token format."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from shipyard.registryauth import keys
from shipyard.registryauth.credentials import Credential, RegistryCredentials
from shipyard.registryauth.issuer import TokenIssuer
from shipyard.registryauth.scopes import Access

CREDS = RegistryCredentials("secret-key-one")


def test_build_credential_round_trip() -> None:
    user, password = CREDS.issue_build_credential("a", "swift-harbor-0412", ttl_s=60)
    assert user == "build" and ":" not in password
    found = CREDS.verify(password)
    assert found is not None
    assert (found.kind, found.project_id, found.build_id) == ("build", "a", "swift-harbor-0412")
    assert found.expires_at is not None and 50 < found.expires_at - time.time() <= 60


def test_pull_and_internal_credentials() -> None:
    _, password, expires_at = CREDS.issue_pull_credential("a", 3600)
    assert CREDS.verify(password) == Credential("pull", "a", None, expires_at)
    user, internal = CREDS.internal_credential()
    assert user == "shipyard" and CREDS.internal_credential() == (user, internal)
    assert CREDS.verify(internal) == Credential("internal", None, None, None)


def test_forged_tampered_expired_and_foreign_credentials_are_refused() -> None:
    _, password = CREDS.issue_build_credential("a", "b-1", ttl_s=60)
    assert RegistryCredentials("another-key").verify(password) is None
    head, _body, sig = password.split(".")
    claims = jwt.decode(password, options={"verify_signature": False})
    forged_body = jwt.encode({**claims, "project": "b"}, "x" * 32, algorithm="HS256").split(".")[1]
    assert CREDS.verify(f"{head}.{forged_body}.{sig}") is None
    expired = jwt.encode(
        {**claims, "exp": int(time.time()) - 1},
        CREDS._key,  # the test signs an expired one with the real key
        algorithm="HS256",
    )
    assert CREDS.verify(expired) is None
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    assert CREDS.verify(jwt.encode(no_exp, CREDS._key, algorithm="HS256")) is None
    assert CREDS.verify("sy_not-a-credential") is None
    with pytest.raises(ValueError):
        CREDS.issue_build_credential("a", "b", ttl_s=0)


def test_signing_key_is_created_once_0600_and_cert_readable(tmp_path: Path) -> None:
    first = keys.load_or_create(tmp_path)
    key_path = keys.auth_dir(tmp_path) / keys.KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(keys.auth_dir(tmp_path).stat().st_mode) == 0o700
    again = keys.load_or_create(tmp_path)
    assert again.certificate == first.certificate


def test_token_is_es256_with_the_certificate_in_x5c(tmp_path: Path) -> None:
    key = keys.load_or_create(tmp_path)
    issuer = TokenIssuer(key, issuer="shipyard", service="shipyard-registry", ttl_s=300)
    issued = issuer.issue("build:a/b-1", [Access("repository", "a/web", ("pull", "push"))])
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "ES256"
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert cert == key.certificate
    claims = jwt.decode(
        issued.token, cert.public_key(), algorithms=["ES256"], audience="shipyard-registry",
        issuer="shipyard",
    )  # fmt: skip
    assert claims["access"] == [
        {"type": "repository", "name": "a/web", "actions": ["pull", "push"]}
    ]
    assert claims["exp"] - claims["iat"] == 300 and claims["sub"] == "build:a/b-1"
    body = issued.response()
    assert body["token"] == body["access_token"] == issued.token and body["expires_in"] == 300
