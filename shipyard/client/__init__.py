"""Python SDK for Shipyard (and Northflank's v1 build API), sync and async, on httpx.

    from shipyard.client import Shipyard

    with Shipyard("http://127.0.0.1:8000", token) as sy:
        sy.create_project("demo")
        sy.create_service("demo", "web", kind="combined", repo_url=REPO, branch="main")
        build = sy.start_service_build("demo", "web", target="final")
        for line in sy.follow_logs(build):
            print(line.log)
        print(sy.wait(build).registry_uri)

``AsyncShipyard`` has the same methods (``await`` them; ``async for`` over ``list_*`` and
``follow_logs``; to leave ``follow_logs`` early and free its connection at once, wrap it in
``contextlib.aclosing``). Every failure is a :class:`ShipyardError` (``status``, ``message``,
``details`` from the API's error body); a transport failure is its subclass
:class:`ShipyardConnectionError` (``status`` 0), a ``wait`` past its ``timeout_s`` is
:class:`ShipyardTimeoutError` (``status`` 0). Wrong argument combinations (both or neither of
``service_id``/``job_id``) raise ``ValueError``/``TypeError`` before any request.

Builds returned by the SDK know their project and service or job, so ``get_build``,
``abort_build``, ``build_logs``, ``follow_logs`` and ``wait`` take a :class:`Build` (or a
:class:`BuildRef`) as well as ``(project_id, build_id=…, service_id=…|job_id=…)``.
"""

from shipyard.client._async_client import AsyncShipyard
from shipyard.client._client import Shipyard
from shipyard.client._exceptions import (
    ShipyardConnectionError,
    ShipyardError,
    ShipyardTimeoutError,
)
from shipyard.client._models import (
    CONCLUDED_STATUSES,
    Build,
    BuildRef,
    LogLine,
    Project,
    Workload,
)

__all__ = [
    "CONCLUDED_STATUSES",
    "AsyncShipyard",
    "Build",
    "BuildRef",
    "LogLine",
    "Project",
    "Shipyard",
    "ShipyardConnectionError",
    "ShipyardError",
    "ShipyardTimeoutError",
    "Workload",
]
