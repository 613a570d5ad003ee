"""The token signing key and its self-signed certificate, generated once into the data dir.

distribution 2.8 trusts a token when its ``x5c`` header carries a certificate that chains to
``rootcertbundle``; a self-signed certificate that is its own root is the smallest such chain.
The key never leaves Shipyard (0600); the registry only reads the certificate.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KEY_FILE = "token-signing-key.pem"
CERT_FILE = "token-signing-cert.pem"
VALIDITY = dt.timedelta(days=3650)
# Renewed this long before expiry, at a start: the registry reads the bundle only when it starts.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    cert_path: Path

    @property
    def x5c(self) -> list[str]:
        """The JWT ``x5c`` header: standard (not URL-safe) base64 of the DER certificate."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return [base64.b64encode(der).decode()]


def auth_dir(data_dir: Path) -> Path:
    return data_dir / "registry-auth"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # The API and the executor (or two workers) may both load the key at start; one creates it.
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)  # O_CREAT's mode is reduced by the umask
    os.replace(tmp, path)


def _self_signed(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shipyard registry token issuer")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # clock skew between processes
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _load(key_path: Path, cert_path: Path) -> SigningKey | None:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    return SigningKey(key, cert, cert_path)


def load_or_create(data_dir: Path, *, now: dt.datetime | None = None) -> SigningKey:
    """The signing key of this data dir; created (or renewed, near expiry) under a lock."""
    now = now or dt.datetime.now(dt.UTC)
    directory = auth_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    with _locked(directory):
        found = _load(key_path, cert_path)
        if found is not None and found.certificate.not_valid_after_utc - RENEW_BEFORE > now:
            return found
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _self_signed(key, now)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # A crash between the two writes leaves a mismatched pair, which _load refuses: the
        # next start makes a new pair.
        _write(key_path, pem_key, 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return SigningKey(key, cert, cert_path)
