"""Second red-team pass against the build sandbox (after the ONBUILD fix).

Each hole it found showed a host marker read by a RUN step whose flags the Dockerfile check
never saw; all are fixed (buildah reads only the checked text, written by Shipyard). Walls that held are plain regression
tests. Real builds share one live server (the hostile suite's fixtures) and are few; the
rest are checks of ``sandbox/dockerfile.py`` against buildah 1.28's reading of the file.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.pipeline.builder import Buildah, BuildahStore, unmount_under
from shipyard.sandbox.dockerfile import (
    UnsafeDockerfile,
    check_dockerfile,
    check_triggers,
    with_secret_key,
)
from tests.helpers.hostile import Tenant, create_project_token, utf8, write_authfile
from tests.helpers.images import BUSYBOX_IMAGE, build_busybox_base
from tests.helpers.live import LiveServer
from tests.sandbox import test_hostile as _hostile

# The hostile suite's module-scoped fixtures: one live server, tenant A, a host directory.
live = _hostile.live
repos = _hostile.repos
tenant_a = _hostile.tenant_a
host_dir = _hostile.host_dir
marker_of = _hostile.marker_of

FROM = f"FROM {BUSYBOX_IMAGE}\n"
UPS = "../" * 16


def escape_mount(host_dir: Path, target: str = "/h") -> str:
    """CVE-2024-9675: a cache id that climbs out of buildah's cache dir onto ``host_dir``."""
    return f"--mount=type=cache,id={UPS}{str(host_dir).lstrip('/')},target={target}"


def reached_host(host_dir: Path, logs: list[str]) -> bool:
    return any(marker_of(host_dir) in line for line in logs)


# --- holes: the check reads a different file than buildah runs ------------------------------


@pytest.mark.slow
def test_dockerfile_in_suffix_is_not_preprocessed_into_unchecked_flags(
    tenant_a: Tenant, host_dir: Path
) -> None:
    dockerfile = (
        FROM + f"#define EVIL {escape_mount(host_dir)}\nRUN EVIL cat /h/marker; echo CPP-RAN\n"
    )
    service = tenant_a.service(
        {"Dockerfile.in": dockerfile},
        docker={"dockerFilePath": "/Dockerfile.in", "dockerWorkDir": "/"},
    )
    build, logs = service.build()
    assert not reached_host(host_dir, logs), (build["status"], logs[-10:])
    assert build["status"] == "FAILURE", build


@pytest.mark.slow
def test_carriage_return_does_not_hide_run_flags(tenant_a: Tenant, host_dir: Path) -> None:
    dockerfile = (FROM + f"RUN\r{escape_mount(host_dir)} cat /h/marker\n").encode()
    build, logs = tenant_a.build({"Dockerfile": dockerfile})
    assert not reached_host(host_dir, logs), (build["status"], logs[-10:])
    assert build["status"] == "FAILURE", build


def secret_key_payload(host_dir: Path) -> str:
    # A form feed in a comment: one line for buildah (and the check), two for str.splitlines,
    # so the ARG line lands one line early, inside the continued RUN, and ends it there.
    return (
        FROM
        + "# \x0c\n"
        + "RUN echo harmless \\\n"
        + f"RUN {escape_mount(host_dir)} cat /h/marker\n"
        + "RUN --mount=type=secret,id=tok true\n"
    )


def test_secret_key_rewrite_is_still_a_checked_file(tmp_path: Path) -> None:
    """Was a hole (fixed in with_secret_key: lines counted on LF only): the file Shipyard
    hands buildah must pass the check."""
    text = secret_key_payload(tmp_path)
    plan = check_dockerfile(text, context_dir=tmp_path, display_path="Dockerfile")
    rewritten = with_secret_key(text, plan)
    check_dockerfile(rewritten, context_dir=tmp_path, display_path="Dockerfile")
    assert rewritten.count("ARG SHIPYARD_SECRETS_KEY\n") == 1
    assert "ARG SHIPYARD_SECRETS_KEY\nRUN --mount=type=secret" in rewritten


@pytest.mark.slow
def test_secret_key_rewrite_does_not_run_unchecked_lines(tenant_a: Tenant, host_dir: Path) -> None:
    service = tenant_a.service({"Dockerfile": secret_key_payload(host_dir)})
    build, logs = service.build({"overrides": {"dockerSecretMounts": {"tok": utf8("v1")}}})
    assert not reached_host(host_dir, logs), (build["status"], logs[-10:])


# --- ONBUILD triggers of a pushed image ------------------------------------------------------


def _push_with_triggers(
    live: LiveServer, tenant: Tenant, work: Path, name: str, triggers: list[str]
) -> str:
    """An image in the tenant's own repository with ``triggers`` verbatim in its config
    (``buildah config --onbuild``, as any tool can write them), pushed with a project token."""
    store = BuildahStore(root=work / "root", runroot=work / "runroot")
    buildah = Buildah(store)
    if not (work / "base-built").exists():
        build_busybox_base(buildah, work)
        (work / "base-built").touch()
    run = ["buildah", *store.args()]
    ctr = subprocess.run(
        [*run, "from", "--pull=never", BUSYBOX_IMAGE],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    for trigger in triggers:
        # --onbuild is a CSV list: quoted, so the commas of a mount stay in one trigger.
        quoted = '"' + trigger.replace('"', '""') + '"'
        subprocess.run(
            [*run, "config", "--onbuild", quoted, ctr], check=True, capture_output=True,
            timeout=60, env={**os.environ, "BUILDAH_FORMAT": "docker"},
        )  # fmt: skip
    image = f"{live.registry}/{tenant.project}/{name}:1"
    subprocess.run(
        [*run, "commit", "--format", "docker", ctr, image], check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    subprocess.run([*run, "rm", ctr], check=True, capture_output=True, timeout=60)
    token = create_project_token(live, tenant.project, f"rt2-{uuid.uuid4().hex[:6]}")
    auth = write_authfile(work / "auth.json", live.registry, "tenant", token)
    subprocess.run(
        [*run, "push", "--tls-verify=false", "--authfile", str(auth), image, f"docker://{image}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return image


@pytest.fixture(scope="module")
def trigger_images(
    live: LiveServer, tenant_a: Tenant, host_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("rt2-onbuild")
    mount = escape_mount(host_dir)
    try:
        yield {
            # imagebuilder joins the triggers with "\n" and parses them as a file: a BOM at
            # its start is dropped, as it is for a Dockerfile.
            "bom": _push_with_triggers(
                live, tenant_a, work, "bom", [f"\ufeffRUN {mount} cat /h/marker"]
            ),
            # ... and the escape directive at its start applies: with ` as escape, a trailing
            # backslash no longer continues the line.
            "escape": _push_with_triggers(
                live,
                tenant_a,
                work,
                "escape",
                ["# escape=`", "RUN echo harmless \\", f"RUN {mount} cat /h/marker"],
            ),
            # A trigger that is itself ONBUILD RUN --mount (nested): refused by the check.
            "nested": _push_with_triggers(
                live, tenant_a, work, "nested", [f"ONBUILD RUN {mount} cat /h/marker"]
            ),
        }
    finally:
        unmount_under(work / "root")
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _build_from(tenant: Tenant, image: str) -> tuple[dict[str, Any], list[str]]:
    return tenant.build({"Dockerfile": f"FROM {image}\nRUN echo after\n"})


@pytest.mark.slow
def test_bom_in_first_trigger_does_not_hide_it(
    tenant_a: Tenant, host_dir: Path, trigger_images: dict[str, str]
) -> None:
    build, logs = _build_from(tenant_a, trigger_images["bom"])
    assert not reached_host(host_dir, logs), (build["status"], logs[-10:])
    assert build["status"] == "FAILURE", build


@pytest.mark.slow
def test_escape_directive_in_triggers_does_not_split_them_differently(
    tenant_a: Tenant, host_dir: Path, trigger_images: dict[str, str]
) -> None:
    build, logs = _build_from(tenant_a, trigger_images["escape"])
    assert not reached_host(host_dir, logs), (build["status"], logs[-10:])
    assert build["status"] == "FAILURE", build


@pytest.mark.slow
def test_nested_onbuild_trigger_is_refused(
    tenant_a: Tenant, host_dir: Path, trigger_images: dict[str, str]
) -> None:
    build, logs = _build_from(tenant_a, trigger_images["nested"])
    assert not reached_host(host_dir, logs)
    assert build["status"] == "FAILURE", build
    assert "ONBUILD" in build["message"], build


# --- walls that held (checker level, buildah 1.28's reading) ---------------------------------

BAD = "--mount=type=cache,id=../../../..,target=/h"


@pytest.mark.parametrize(
    "triggers",
    [
        [f"run {BAD} ls /h"],  # lower case
        [f"RUN \\\n  {BAD} ls /h"],  # continuation inside one trigger
        ["RUN echo a", f"RUN {BAD} ls /h"],  # not the first trigger
        [f'RUN {BAD} ["sh", "-c", "ls /h"]'],  # JSON form
        [f"ONBUILD RUN {BAD} ls /h"],  # nested
        [f"onbuild  run {BAD} ls /h"],
        [f"RUN\t{BAD} ls /h"],
        ["RUN echo a\nRUN " + BAD + " ls /h"],  # a newline inside one trigger
    ],
)
def test_trigger_variants_are_refused(tmp_path: Path, triggers: list[str]) -> None:
    with pytest.raises(UnsafeDockerfile, match="base image x is refused"):
        check_triggers("x", triggers, context_dir=tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        f"FROM a\nrun {BAD} ls\n",
        f"FROM a\nRUN \\\n\n  {BAD} ls\n",  # empty continuation line (buildah goes on)
        f"FROM a\nRUN \\\n# c\n  {BAD} ls\n",
        f"\ufeffFROM a\nRUN {BAD} ls\n",
        f"FROM a\r\nRUN {BAD} ls\r\n",
        f"FROM a\nRUN\t{BAD} ls\n",
        f"FROM a\nRUN\x0b{BAD} ls\n",
        f"FROM a\nRUN\x0c{BAD} ls\n",
        f"FROM a\nRUN {BAD} <<EOF\nls\nEOF\n",
        "FROM a\nRUN <<EOF\nRUN " + BAD + " ls\nEOF\n",  # heredoc body read as lines
        "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n",
        "# escape=`\nFROM a\n",
        f"FROM a\nONBUILD RUN {BAD} ls\n",
        f"FROM a\nONBUILD run {BAD} ls\n",
        f"FROM a\nRUN --mount=type=bind,source=/,target=/h,from={'x' * 5000} ls\n",
        f"FROM a\nRUN {'--network=none ' * 2000}{BAD} ls\n",
    ],
)
def test_dockerfile_variants_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(UnsafeDockerfile):
        check_dockerfile(text, context_dir=tmp_path, display_path="Dockerfile")


def test_secret_key_arg_lands_before_each_secret_run(tmp_path: Path) -> None:
    text = (
        "FROM a\nRUN echo a \\\n  b\n"
        "RUN --mount=type=secret,id=s \\\n  cat /run/secrets/s\n"
        "RUN <<EOF\nRUN --mount=type=secret,id=t true\nEOF\n"
    )
    plan = check_dockerfile(text, context_dir=tmp_path, display_path="Dockerfile")
    rewritten = with_secret_key(text, plan)
    lines = rewritten.split("\n")
    for index, line in enumerate(lines):
        if "type=secret" in line:
            assert lines[index - 1] == "ARG SHIPYARD_SECRETS_KEY", rewritten
    again = check_dockerfile(rewritten, context_dir=tmp_path, display_path="Dockerfile")
    assert again.base_images == plan.base_images


def test_from_stage_named_like_an_image_is_a_stage(tmp_path: Path) -> None:
    plan = check_dockerfile(
        "FROM busybox AS alpine\nFROM alpine\nCOPY --from=alpine / /\n",
        context_dir=tmp_path,
        display_path="Dockerfile",
    )
    assert plan.base_images == ("busybox",)


def test_from_arg_uses_the_build_argument(tmp_path: Path) -> None:
    plan = check_dockerfile(
        "ARG BASE=alpine\nFROM $BASE\n",
        context_dir=tmp_path,
        display_path="Dockerfile",
        build_args={"BASE": "evil/image"},
    )
    assert plan.base_images == ("evil/image",)


def test_from_platform_flag_still_names_the_image(tmp_path: Path) -> None:
    plan = check_dockerfile(
        "FROM --platform=linux/arm64 busybox AS b\nFROM b\n",
        context_dir=tmp_path,
        display_path="Dockerfile",
    )
    assert plan.base_images == ("busybox",)
