"""SLSA v1 provenance of a build, as an in-toto Statement v1.

What it says: the image (subject: repository + manifest digest); the source (repository
URL without credentials + commit, or the bundle URL without query, or the upload's
digest); the Dockerfile, context, target, and the NAMES of build arguments, build files
and secret mounts — never a value, since values may be secrets; the base images and what
each resolved to; the builder and the build's id and times. It is not signed: it says what
this Shipyard did, for whoever trusts this Shipyard (SLSA Build L1)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shipyard import __version__
from shipyard.supply.labels import Origin

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://shipyard.invalid/buildtypes/dockerfile/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class BuildFacts:
    build_id: str
    builder_id: str
    source_kind: str  # git | bundle | upload
    origin: Origin
    branch: str | None = None
    upload_digest: str | None = None  # sha256:… of the uploaded archive
    upload_id: str | None = None
    dockerfile: str | None = None  # path in the source, or "(inline)"
    context: str | None = None
    target: str | None = None
    build_args: Sequence[str] = ()  # names only
    build_files: Sequence[str] = ()  # paths only
    secret_mounts: Sequence[str] = ()  # ids only
    use_cache: bool = True
    # reference -> "sha256:<manifest digest>" or "id:<image id>" (a shared local image)
    base_images: Mapping[str, str] = field(default_factory=dict)
    started: float | None = None  # unix seconds
    finished: float | None = None


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(identity: str) -> dict[str, str]:
    kind, _, value = identity.partition(":")
    return {"sha256": value} if kind in ("sha256", "id") and value else {}


def _source(facts: BuildFacts) -> dict[str, object]:
    origin = facts.origin
    dependency: dict[str, object] = {}
    if facts.source_kind == "git" and origin.source:
        dependency["uri"] = f"git+{origin.source}"
        if origin.revision:
            dependency["digest"] = {"gitCommit": origin.revision}
    elif facts.source_kind == "bundle" and origin.source:
        dependency["uri"] = origin.source
    elif facts.source_kind == "upload" and facts.upload_digest:
        dependency["uri"] = f"shipyard:upload:{facts.upload_id or ''}".rstrip(":")
        dependency["digest"] = _digest(facts.upload_digest)
    if facts.branch:
        dependency["annotations"] = {"branch": facts.branch}
    return dependency


def statement(facts: BuildFacts, *, repository: str, digest: str) -> bytes:
    """The statement for the image ``repository@digest`` (canonical JSON: sorted keys)."""
    source = _source(facts)
    bases = [
        {
            "uri": f"docker://{reference}",
            "digest": _digest(identity),
            **({"annotations": {"digestOf": "image-config"}} if identity.startswith("id:") else {}),
        }
        for reference, identity in sorted(facts.base_images.items())
    ]
    external: dict[str, object] = {
        "source": {
            "kind": facts.source_kind,
            **({"uri": source["uri"]} if "uri" in source else {}),
            **({"revision": facts.origin.revision} if facts.origin.revision else {}),
            **({"branch": facts.branch} if facts.branch else {}),
        },
        "dockerfile": facts.dockerfile,
        "context": facts.context,
        "target": facts.target,
        "buildArgs": sorted(facts.build_args),
        "buildFiles": sorted(facts.build_files),
        "secretMounts": sorted(facts.secret_mounts),
    }
    document = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": _digest(digest)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {k: v for k, v in external.items() if v is not None},
                "internalParameters": {
                    "useCache": facts.use_cache,
                    "timestamp": facts.origin.created,
                },
                "resolvedDependencies": ([source] if source.get("uri") else []) + bases,
            },
            "runDetails": {
                "builder": {"id": facts.builder_id, "version": {"shipyard": __version__}},
                "metadata": {
                    "invocationId": facts.build_id,
                    **({"startedOn": _time(facts.started)} if facts.started else {}),
                    **({"finishedOn": _time(facts.finished)} if facts.finished else {}),
                },
            },
        },
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
