"""Secret files and secret mounts as Northflank defines them, and their templating.

``data`` is always base64 of the file's bytes; ``encoding`` is the file's original text
encoding (a free string, kept and returned as given). ``${NAME}`` in the decoded text is
replaced by the build argument ``NAME`` (Northflank's "dynamic templating"); names that are
not build arguments stay as written, so a shell script's own ``${VAR}`` survives.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.builds.errors import InvalidRequest

MAX_SECRET_BYTES = 1024 * 1024
DEFAULT_ENCODING = "utf-8"

# Build-argument names are letters, digits, ``-``, ``/``, ``.`` and ``_`` (the API's rule).
_TEMPLATE = re.compile(r"\$\{([A-Za-z0-9\-/._]+)\}")


@dataclass(frozen=True)
class SecretFile:
    """A build file or secret mount: its bytes, and the encoding its text was given in."""

    data: bytes
    encoding: str = DEFAULT_ENCODING

    def to_json(self) -> dict[str, str]:
        """The documented wire form, also the sealed form."""
        return {"data": base64.b64encode(self.data).decode("ascii"), "encoding": self.encoding}

    @classmethod
    def from_json(cls, value: Any) -> SecretFile:
        """The sealed form. Values sealed before migration 0005 are a bare base64 string of
        the bytes Shipyard wrote then (``utf-8`` meant "the text itself"): they keep those
        bytes, so a build of an old stored file gives the file it gave before."""
        if isinstance(value, str):
            return cls(base64.b64decode(value), DEFAULT_ENCODING)
        return cls(base64.b64decode(value["data"]), str(value.get("encoding") or DEFAULT_ENCODING))

    def templated(self, arguments: Mapping[str, str]) -> SecretFile:
        """``${NAME}`` replaced by ``arguments[NAME]``. Content that is not text in its
        encoding (or an encoding Python does not know) is left byte for byte: templating
        must never corrupt a binary file."""
        codec = _codec(self.encoding)
        if not arguments or codec is None:
            return self
        try:
            text = self.data.decode(codec)
            if "${" not in text:
                return self
            rendered = render(text, arguments).encode(codec)
        except (UnicodeError, ValueError):
            return self
        return self if rendered == self.data else SecretFile(rendered, self.encoding)


def _codec(encoding: str) -> str | None:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        return None
    # Bytes-to-bytes codecs (base64, hex, zlib…) are not text encodings.
    return None if not getattr(info, "_is_text_encoding", True) else info.name


def render(text: str, arguments: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` for every known build argument; unknown names stay."""
    return _TEMPLATE.sub(lambda m: arguments.get(m.group(1), m.group(0)), text)


def decode_secret(field: str, data: str, encoding: str | None) -> SecretFile:
    """A request's ``{data, encoding}``: ``data`` must be base64 (the error names ``field``)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"{field}.data is not valid base64", {f"{field}.data": str(exc)}
        ) from exc
    if len(raw) > MAX_SECRET_BYTES:
        raise InvalidRequest(f"{field} is larger than {MAX_SECRET_BYTES} bytes")
    return SecretFile(raw, encoding or DEFAULT_ENCODING)
