"""``--follow`` on a real terminal (tmux): the status line never glued to a log line, elapsed
time and ``step n/m`` shown, Ctrl-C detaches with the abort command and exit 130."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_live import cli, service  # noqa: F401 - the module's fixture
from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
STAMP = re.compile(r"\d\d:\d\d:\d\d ")


class Tmux:
    """One tmux server of our own (``-L``): nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.socket = f"shipyard-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "t", "-J", "-S", "-200")

    def wait_for(self, found: Callable[[str], bool], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if found(screen):
                return screen
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    terminal = Tmux()
    terminal("new-session", "-d", "-s", "t", "-x", "160", "-y", "50", "sh")
    try:
        yield terminal
    finally:
        subprocess.run(["tmux", "-L", terminal.socket, "kill-server"], timeout=30)


def test_follow_on_a_terminal(
    live: LiveServer,
    service: tuple[str, str],  # noqa: F811
    tmux: Tmux,
) -> None:
    project, svc = service
    command = (
        f"SHIPYARD_URL={live.url} SHIPYARD_TOKEN={live.token} {SHIPYARD} start service build "
        f"-p {project} -s {svc} --branch main --target slow --follow; echo EXIT=$?"
    )
    tmux("send-keys", "-t", "t", command, "Enter")
    # The slow target sleeps in its last RUN step: the status line shows that step, and time.
    screen = tmux.wait_for(lambda s: "BUILDING" in s and re.search(r"step \d+/\d+", s) is not None)
    build_id = re.search(r"build (\S+-\d+) QUEUED", screen)
    assert build_id is not None, screen  # the id first
    status = [line for line in screen.splitlines() if f"{build_id[1]} · " in line]
    assert status and re.search(r" · \d+m\d\ds", status[-1]), screen
    # Every log line starts with its time stamp: no status text glued before one.
    for line in screen.splitlines():
        if STAMP.search(line):
            assert STAMP.match(line), (line, screen)
    tmux("send-keys", "-t", "t", "C-c")
    screen = tmux.wait_for(lambda s: re.search(r"EXIT=\d", s) is not None, timeout=30)
    flat = " ".join(screen.split())
    abort = f"shipyard abort service build -p {project} -s {svc} -b {build_id[1]}"
    assert f"detached — the build goes on; abort with {abort}" in flat
    assert "EXIT=130" in flat
    # It did go on; now abort it as told.
    assert json.loads(cli(live, *shlex.split(abort)[1:], "-o", "json").stdout)["id"] == build_id[1]
    path = f"/v1/projects/{project}/services/{svc}/build/{build_id[1]}"
    assert live.wait(path)["status"] == "ABORTED"


def test_follow_denied_after_the_start_names_the_build(
    live: LiveServer,
    service: tuple[str, str],  # noqa: F811
) -> None:
    # A token that may start builds but not read their logs (a deploy-only CI token).
    project, svc = service
    created = subprocess.run(
        [SHIPYARD, "tokens", "create", "--name", "deployer",
         "-p", "Project > Services > Deployment > Deploy Build"],
        env={**os.environ, "SHIPYARD_DATA_DIR": str(live.data_dir)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    deployer = json.loads(created.stdout)["token"]
    done = cli(live, "start", "service", "build", "-p", project, "-s", svc, "--branch", "main",
               "--target", "final", "--follow", check=False, env={"SHIPYARD_TOKEN": deployer})  # fmt: skip
    assert done.returncode == 1
    said = " ".join(done.stderr.split())
    found = re.match(r"build (\S+) QUEUED", said)
    assert found is not None, said  # the id first
    assert f"build {found[1]} was started, but following it failed (HTTP 403)" in said
    assert f"shipyard logs build -p {project} -s {svc} -b {found[1]} --follow" in said
    assert live.wait(f"/v1/projects/{project}/services/{svc}/build/{found[1]}")["concluded"]
