"""Secrets given in a create body (``buildArguments``, ``buildFiles``, ``dockerSecretMounts``)
as the domain's Overrides: decoded, checked against the size budget, ready to seal."""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.api.schemas.builds import SecretContent
from shipyard.builds.request import Overrides, check_secret_budget, decode_secret


def secrets_of(
    build_arguments: Mapping[str, str] | None,
    build_files: Mapping[str, SecretContent] | None,
    secret_mounts: Mapping[str, SecretContent] | None,
    *,
    prefix: str = "",
) -> Overrides:
    """``prefix`` (e.g. ``"overrides."``) makes errors name the field as the body has it."""
    overrides = Overrides(
        build_arguments=dict(build_arguments or {}),
        build_files={
            path: decode_secret(f"{prefix}buildFiles.{path}", v.data, v.encoding)
            for path, v in (build_files or {}).items()
        },
        secret_mounts={
            key: decode_secret(f"{prefix}dockerSecretMounts.{key}", v.data, v.encoding)
            for key, v in (secret_mounts or {}).items()
        },
    )
    check_secret_budget(overrides)
    return overrides
