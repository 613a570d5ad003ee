"""What the log redactor is fed (``Overrides.secret_values``): build files, secret mounts and
build-argument values, stored ones and overrides alike."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds import service as build_service
from shipyard.builds.request import MAX_SECRETS_TOTAL_BYTES, Overrides, check_secret_budget
from shipyard.pipeline.redact import MASK, Redactor
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store


def test_stored_and_override_build_argument_values_are_redacted(
    client: TestClient, targets: dict[str, str]
) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    stored = {"buildArguments": {"NPM_TOKEN": "npm-stored-7781", "MODE": "dev"}}
    assert client.post(f"{path}/build-arguments", json=stored).status_code == 200
    overrides = {"buildArguments": {"API_KEY": "override-key-42", "PIN": "4821"}}
    body = {"branch": "main", "overrides": overrides}
    build_id = client.post(f"{path}/build", json=body).json()["data"]["id"]
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        workload = workload_store.get_by_id(session, build.workload_id)
        request = build_service.load_request(state.box, workload, build)
    redact = Redactor(request.overrides.secret_values())
    line = "echo npm-stored-7781 override-key-42 pin=4821 mode=dev"
    # Values of 4 characters or more are masked; "dev" would mask ordinary words.
    assert redact(line) == f"echo {MASK} {MASK} pin={MASK} mode=dev"


def test_build_arguments_do_not_count_against_the_file_budget() -> None:
    big = "x" * (MAX_SECRETS_TOTAL_BYTES // 2)
    check_secret_budget(Overrides(build_arguments={"A": big, "B": big, "C": big}))
