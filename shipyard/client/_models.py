"""Typed, frozen views of the API's objects; each keeps the API's dict as ``.raw``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

__all__ = ["CONCLUDED_STATUSES", "Build", "BuildRef", "LogLine", "Project", "Workload"]

Entity = Literal["service", "job"]

#: Statuses after which a build never changes again.
CONCLUDED_STATUSES = frozenset({"SUCCESS", "FAILURE", "ABORTED", "CRASHED", "SUBMISSION_FAILURE"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


def parse_timestamp(value: str) -> datetime:
    """ISO-8601 (``2021-07-28T15:55:38.296Z``) to an aware datetime (naive means UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _optional_timestamp(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) and value else None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class BuildRef:
    """Where a build lives: its project, its service *or* its job, and its id."""

    project_id: str
    build_id: str
    service_id: str | None = None
    job_id: str | None = None

    def __post_init__(self) -> None:
        check_owner(self.service_id, self.job_id)

    @property
    def entity(self) -> Entity:
        return "service" if self.service_id is not None else "job"

    @property
    def workload_path(self) -> str:
        return workload_path(self.project_id, self.service_id, self.job_id)


def check_owner(service_id: str | None, job_id: str | None) -> None:
    if (service_id is None) == (job_id is None):
        raise ValueError("give exactly one of service_id or job_id")


def workload_path(project_id: str, service_id: str | None, job_id: str | None) -> str:
    """``/v1/projects/{p}/services/{s}`` or ``/v1/projects/{p}/jobs/{j}``."""
    check_owner(service_id, job_id)
    if service_id is not None:
        return f"/v1/projects/{_seg(project_id)}/services/{_seg(service_id)}"
    assert job_id is not None
    return f"/v1/projects/{_seg(project_id)}/jobs/{_seg(job_id)}"


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class Build:
    """A build as the API reports it. ``project_id`` and ``service_id``/``job_id`` are set
    when the SDK fetched it (they are not part of the API's object): then ``ref`` works and
    the build can be given to ``wait``, ``get_build``, ``abort_build`` and the log calls."""

    id: str
    status: str
    concluded: bool
    success: bool
    message: str | None
    branch: str | None
    pull_request_id: int | None
    sha: str | None
    registry_uri: str | None
    created_at: datetime
    concluded_at: datetime | None
    bundle_url: str | None
    project_id: str | None = None
    service_id: str | None = None
    job_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False)

    @classmethod
    def from_api(
        cls,
        data: Mapping[str, Any],
        *,
        project_id: str | None = None,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> Build:
        status = str(data["status"])
        registry = data.get("registry") or {}
        concluded_at = data.get("buildConcludedAt")
        pr = data.get("pullRequestId")
        return cls(
            id=str(data["id"]),
            status=status,
            concluded=bool(data.get("concluded", status in CONCLUDED_STATUSES)),
            success=bool(data.get("success", status == "SUCCESS")),
            message=_optional_str(data.get("message")),
            branch=_optional_str(data.get("branch")),
            pull_request_id=None if pr is None else int(pr),
            sha=_optional_str(data.get("sha")),
            registry_uri=_optional_str(registry.get("uri")),
            created_at=parse_timestamp(str(data["createdAt"])),
            concluded_at=(
                None if concluded_at is None else datetime.fromtimestamp(concluded_at, UTC)
            ),
            bundle_url=_optional_str(data.get("bundleUrl")),
            project_id=project_id,
            service_id=service_id,
            job_id=job_id,
            raw=_frozen(data),
        )

    @property
    def trigger(self) -> Mapping[str, Any]:
        """What started the build: ``{"type": "webhook", "deliveryId", "provider", "event"}``
        or ``{"type": "api"}``."""
        value = self.raw.get("trigger")
        return value if isinstance(value, Mapping) else {"type": "api"}

    @property
    def ref(self) -> BuildRef:
        """Raises ``ValueError`` for a build made with ``from_api`` without its owner."""
        if self.project_id is None:
            raise ValueError(f"build {self.id} does not know its project and service or job")
        return BuildRef(self.project_id, self.id, self.service_id, self.job_id)


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    description: str | None
    created_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Project:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", data["id"])),
            description=_optional_str(data.get("description")),
            created_at=_optional_timestamp(data.get("createdAt")),
            raw=_frozen(data),
        )


@dataclass(frozen=True)
class Workload:
    """A service (``entity="service"``, ``kind`` ``combined`` or ``build``) or a job
    (``entity="job"``, ``kind`` ``manual`` or ``cron``)."""

    id: str
    name: str
    entity: Entity
    kind: str | None
    project_id: str | None
    description: str | None
    created_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False)

    @classmethod
    def from_api(
        cls, data: Mapping[str, Any], *, entity: Entity, project_id: str | None = None
    ) -> Workload:
        kind = data.get("serviceType" if entity == "service" else "jobType")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", data["id"])),
            entity=entity,
            kind=_optional_str(kind),
            project_id=_optional_str(data.get("projectId", project_id)),
            description=_optional_str(data.get("description")),
            created_at=_optional_timestamp(data.get("createdAt")),
            raw=_frozen(data),
        )


@dataclass(frozen=True)
class LogLine:
    container_id: str
    log: str
    ts: datetime
    raw: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> LogLine:
        return cls(
            container_id=str(data.get("containerId", "")),
            log=str(data["log"]),
            ts=parse_timestamp(str(data["ts"])),
            raw=_frozen(data),
        )
