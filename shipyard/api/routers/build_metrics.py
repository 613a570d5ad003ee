"""``GET …/build-metrics`` (js-client ``metrics.getServiceBuildMetrics`` and
``…BuildMetricsRange``; the Python SDK's ``get.service.build_metrics``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from shipyard.api.deps import DB, Caller
from shipyard.api.routers.builds import durations
from shipyard.api.routers.logs import MAX_DURATION_S, time_window
from shipyard.api.schemas.common import envelope
from shipyard.builds import metrics, permissions
from shipyard.builds.errors import InvalidRequest, NotFound, not_found_slug
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["metrics"])

Entity = Literal["service", "job"]


def _types(requested: list[str] | None) -> list[str]:
    if not requested:
        return list(metrics.DEFAULT_TYPES)
    unknown = [t for t in requested if t not in metrics.KNOWN_TYPES]
    if unknown:
        raise InvalidRequest(
            f"unknown metricTypes: {', '.join(unknown)}", {"metricTypes": "unknown type"}
        )
    return list(dict.fromkeys(requested))


def _endpoint(entity: Entity):  # type: ignore[no-untyped-def]
    def handler(
        projectId: str,
        entityId: str,
        session: DB,
        caller: Caller,
        buildId: str | None = None,
        queryType: Literal["single", "range"] = "single",
        metricTypes: Annotated[list[str] | None, Query(max_length=16)] = None,
        startTime: datetime | None = None,
        endTime: datetime | None = None,
        duration: Annotated[int | None, Query(ge=1, le=MAX_DURATION_S)] = None,
        timestamp: datetime | None = None,
        time: datetime | None = None,
    ) -> dict[str, Any]:
        """``queryType=single`` (``timestamp``/``time``: the sample at that instant, else
        the latest) or ``range`` (``startTime``, ``endTime``, ``duration``)."""
        caller.require(permissions.READ_METRICS[entity], projectId)
        workload = workload_store.get(session, projectId, entity, entityId)
        build = (
            build_store.get(session, workload.id, buildId)
            if buildId
            else build_store.latest(session, workload.id)
        )
        if build is None:
            raise NotFound(f"{entity} '{entityId}' has no builds yet", slug=not_found_slug("build"))
        types = _types(metricTypes)
        single = queryType == "single"
        window = (None, None) if single else time_window(startTime, endTime, duration)
        recorded = getattr(build, "metrics", None)  # a column the executor may add later
        data = metrics.series(
            container_id=f"build-{build.id}-{build.attempt}",
            types=types,
            recorded=recorded if isinstance(recorded, dict) else None,
            duration_s=durations(build).get("running") if build.concluded else None,
            ended_at=build.concluded_at,
            window=window,
            single_at=(timestamp or time) if single else None,
        )
        return envelope(data)

    return handler


for _entity, _segment in (("service", "services"), ("job", "jobs")):
    router.add_api_route(
        f"/{_segment}/{{entityId}}/build-metrics",
        _endpoint(_entity),  # type: ignore[arg-type]
        methods=["GET"],
        summary=f"Get {_entity} build metrics",
        response_model=None,
    )
