"""For garbage-collection tests: a Dockerfile whose every build adds ``LAYER`` random bytes,
a build of it told apart by its build argument ``N`` (so none is reused whole), and whether
an image still pulls from the live server's registry."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

MB = 1 << 20
LAYER = 5 * MB
DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
ARG N=0
RUN head -c {LAYER} /dev/urandom > /blob && echo "$N" > /n
"""


def build(live: LiveServer, svc: str, n: int) -> dict[str, Any]:
    with live.client() as c:
        r = c.post(f"{svc}/build", json={"overrides": {"buildArguments": {"N": str(n)}}})
        assert r.status_code == 200, r.text
        build_id = r.json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}", timeout=300)
    assert done["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-20:]
    return done


def pulls(live: LiveServer, uri: str) -> bool:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{uri}"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode == 0
