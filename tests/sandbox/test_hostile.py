"""A hostile tenant against a live Shipyard with the default network policy (issue 9).

Only what a tenant has: git repositories, API calls (a project token), ordinary Dockerfiles.
Real buildah, real registry token auth, real network namespaces. "The internet" is a network
namespace on 203.0.113.2 (TEST-NET-3) and "a private network" one on 10.77.0.2 that also
holds 169.254.169.254; nothing outside this machine is contacted.

Each test is an attack that got something before the sandbox (or was found by a red-team
run against it) and must get nothing now.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pwd
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.pipeline.builder import Buildah, BuildahStore, unmount_under
from shipyard.sandbox.users import user_name
from tests.helpers.hostile import (
    FakeHost,
    HostListener,
    Service,
    Tenant,
    create_project_token,
    eth_addresses,
    fake_host,
    http_get,
    image_files,
    new_tenant,
    utf8,
    write_authfile,
)
from tests.helpers.images import BUSYBOX_IMAGE, build_busybox_base
from tests.helpers.live import (
    LiveServer,
    instance_id,
    remove_sandbox,
    running_containers_under,
    sandbox_dir,
    seed_base_image,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

FROM = f"FROM {BUSYBOX_IMAGE}\n"
PGPOKE = Path(__file__).parent / "data" / "pgpoke.c"
PG_SOCKET = Path("/run/postgresql/.s.PGSQL.5432")


# --- the server, the tenants, the other machines --------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("hostile")
    data_dir = root / "data"
    store = seed_base_image(data_dir)
    # make-up defaults for the network; local repos only because tests have no git server.
    proc, server = start_server(
        data_dir, SHIPYARD_BUILD_NETWORK="isolated", SHIPYARD_ALLOW_PRIVATE_URLS="false"
    )
    try:
        yield server
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data_dir)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-repos")


@pytest.fixture(scope="module")
def tenant_a(live: LiveServer, repos: Path) -> Tenant:
    return new_tenant(live, f"rta{uuid.uuid4().hex[:6]}", repos / "a")


@pytest.fixture(scope="module")
def tenant_b(live: LiveServer, repos: Path) -> Tenant:
    return new_tenant(live, f"rtb{uuid.uuid4().hex[:6]}", repos / "b")


@pytest.fixture(scope="module")
def host_dir() -> Iterator[Path]:
    """A host directory that every user may enter and write (like /tmp), with a marker that
    every user may read: a build that reads or writes it has reached the host."""
    path = Path(tempfile.mkdtemp(prefix="rt-host-", dir="/tmp"))
    path.chmod(0o777)
    marker = path / "marker"
    marker.write_text(f"HOST-MARKER-{uuid.uuid4().hex}\n")
    marker.chmod(0o644)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def marker_of(host_dir: Path) -> str:
    return (host_dir / "marker").read_text().strip()


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHost]:
    with fake_host(
        tmp_path_factory.mktemp("pub"), "pub", "203.0.113.1/24", "203.0.113.2/24", port=8080
    ) as host:
        yield host


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHost]:
    with fake_host(
        tmp_path_factory.mktemp("priv"),
        "prv",
        "10.77.0.1/24",
        "10.77.0.2/24",
        extra=("169.254.169.254",),
        port=80,
    ) as host:
        yield host


@pytest.fixture(scope="module")
def listener() -> Iterator[HostListener]:
    server = HostListener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def abstract_socket() -> Iterator[str]:
    """An abstract unix socket of the host's network namespace."""
    name = f"shipyard-redteam-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(1)
    yield name
    sock.close()


def build_user(live: LiveServer, tenant: Tenant) -> pwd.struct_passwd:
    return pwd.getpwnam(user_name(instance_id(live.data_dir), tenant.project))


def as_user(user: pwd.struct_passwd, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
         "--", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def lines_with(logs: list[str], prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in logs if line.startswith(prefix)]


def assert_no_leftovers(live: LiveServer, build_id: str) -> None:
    deadline = time.monotonic() + 30
    while left := running_containers_under(live.data_dir, build_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"build {build_id} left processes: {left}")
        time.sleep(0.5)


# --- network: one build probes everything ----------------------------------------------------

PROBE = r"""probe() { name=$1; host=$2; port=$3; path=${4:-/$1}; \
  out=$( (printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$path"; sleep 1) | nc -w 3 "$host" "$port" 2>&1); rc=$?; \
  echo "PROBE $name rc=$rc $(echo "$out" | tr '\r\n' '  ' | head -c 400)"; }"""


def probe_dockerfile(live: LiveServer, public: FakeHost, private: FakeHost, listener: HostListener,
                     abstract: str) -> str:  # fmt: skip
    api_port = live.url.rsplit(":", 1)[1]
    reg_port = live.registry.rsplit(":", 1)[1]
    eth = eth_addresses()
    probes = [
        ("pg", "127.0.0.1", "5432"),
        ("redis", "127.0.0.1", "6379"),
        ("hostlistener-lo", "127.0.0.1", str(listener.port)),
        ("hostlistener-gw", "$gw", str(listener.port)),
        ("pg-gw", "$gw", "5432"),
        ("hostlistener-testveth", public.host_ip, str(listener.port)),
        ("private", private.ip, str(private.port)),
        ("metadata", "169.254.169.254", str(private.port)),
        ("public", public.ip, str(public.port)),
        ("api", "127.0.0.1", api_port, "/openapi.json"),
        ("catalog", "127.0.0.1", reg_port, "/v2/_catalog"),
        ("token", "127.0.0.1", api_port, "/v1/registry/token?scope=registry:catalog:*"),
    ]
    probes += [(f"hostlistener-eth{i}", ip, str(listener.port)) for i, ip in enumerate(eth)]
    probes += [(f"pg-eth{i}", ip, "5432") for i, ip in enumerate(eth)]
    calls = "; ".join("probe " + " ".join(f'"{w}"' for w in p) for p in probes)
    return (
        FROM
        + f"ADD http://{public.ip}:{public.port}/add-public /public-add\n"
        + f"RUN {PROBE}; gw=$(ip route | awk '/^default/ {{print $3}}'); echo \"GATEWAY $gw\"; "
        + calls
        + '; echo "PUBLICADD $(cat /public-add)"\n'
        # Identity, devices, /proc and /sys from inside.
        + "RUN sed 's/^/UIDMAP /' /proc/self/uid_map; echo \"ID $(id)\"; "
        'mknod /rtdev b 8 0 2>/dev/null; echo "MKNOD rc=$?"; '
        '(echo x > /proc/sys/kernel/core_pattern) 2>/dev/null; echo "COREPATTERN rc=$?"; '
        '(echo $$ > /sys/fs/cgroup/memory/cgroup.procs) 2>/dev/null; echo "CGESCAPE rc=$?"; '
        '(mount -t tmpfs none /mnt) 2>/dev/null; echo "MOUNT rc=$?"; '
        'echo "BLOCKDEVS $(find /dev -type b 2>/dev/null | wc -l)"; '
        f'echo "ABSTRACT $(grep -c {abstract} /proc/net/unix)"; '
        "echo \"TCPLISTEN $(awk '$4 == \"0A\" {print $2}' /proc/net/tcp | tr '\\n' ' ')\"\n"
    )


@pytest.fixture(scope="module")
def probe_build(
    live: LiveServer,
    tenant_a: Tenant,
    public: FakeHost,
    private: FakeHost,
    listener: HostListener,
    abstract_socket: str,
) -> tuple[dict[str, Any], list[str]]:
    # The test machines themselves answer from the host: a refusal below means the policy.
    assert public.token in (http_get(public.ip, public.port) or "")
    assert private.token in (http_get(private.ip, private.port) or "")
    assert private.token in (http_get("169.254.169.254", private.port) or "")
    assert listener.token in (http_get("127.0.0.1", listener.port) or "")
    for host in (public, private):
        host.log.unlink(missing_ok=True)
    listener.peers.clear()
    dockerfile = probe_dockerfile(live, public, private, listener, abstract_socket)
    return tenant_a.build({"Dockerfile": dockerfile})


def probes(logs: list[str]) -> dict[str, str]:
    found = {}
    for line in lines_with(logs, "PROBE "):
        name, _, rest = line.partition(" ")
        found[name] = rest
    return found


def test_probe_build_ran(probe_build: tuple[dict[str, Any], list[str]]) -> None:
    build, logs = probe_build
    assert build["status"] == "SUCCESS", (build, logs[-40:])
    assert lines_with(logs, "GATEWAY ")[0].startswith("10.213."), logs


def test_run_step_reaches_a_public_address(
    probe_build: tuple[dict[str, Any], list[str]], public: FakeHost
) -> None:
    """Acceptance: outbound to a non-private address works under the default policy, for
    RUN steps and for ``ADD <url>``."""
    _, logs = probe_build
    assert public.token in probes(logs)["public"], logs
    assert lines_with(logs, "PUBLICADD ") == [public.token], logs
    paths = [line.split()[1] for line in public.requests()]
    assert "/add-public" in paths and "/public" in paths


@pytest.mark.parametrize(
    "name",
    ["pg", "redis", "hostlistener-lo", "hostlistener-gw", "pg-gw", "hostlistener-testveth"],
)
def test_run_step_cannot_reach_the_host(
    probe_build: tuple[dict[str, Any], list[str]], listener: HostListener, name: str
) -> None:
    _, logs = probe_build
    result = probes(logs)[name]
    assert not result.startswith("rc=0"), result
    assert listener.token not in result


def test_run_step_cannot_reach_the_hosts_own_interfaces(
    probe_build: tuple[dict[str, Any], list[str]], listener: HostListener
) -> None:
    _, logs = probe_build
    found = {k: v for k, v in probes(logs).items() if k.startswith(("hostlistener-eth", "pg-eth"))}
    assert found, "the host has no non-loopback address to try"
    for name, result in found.items():
        assert not result.startswith("rc=0") and listener.token not in result, (name, result)
    assert not [p for p in listener.peers if not p.startswith("127.")], listener.peers


@pytest.mark.parametrize("name", ["private", "metadata"])
def test_run_step_cannot_reach_private_or_metadata(
    probe_build: tuple[dict[str, Any], list[str]], private: FakeHost, name: str
) -> None:
    _, logs = probe_build
    result = probes(logs)[name]
    assert private.token not in result and not result.startswith("rc=0"), result
    assert private.requests() == []


def test_registry_and_api_only_through_dnat_and_with_credentials(
    probe_build: tuple[dict[str, Any], list[str]], tenant_a: Tenant
) -> None:
    _, logs = probe_build
    found = probes(logs)
    assert "openapi" in found["api"], found["api"]  # the one allowed loopback target
    assert " 401 " in found["catalog"] and "repositories" not in found["catalog"], found
    assert " 401 " in found["token"] and '"token"' not in found["token"], found


def test_run_step_sees_nothing_of_the_hosts_namespaces(
    probe_build: tuple[dict[str, Any], list[str]],
) -> None:
    _, logs = probe_build
    assert lines_with(logs, "ABSTRACT ") == ["0"], logs  # host abstract unix sockets
    listening = lines_with(logs, "TCPLISTEN ")[0].split()
    assert f"{0x7F000001:08X}:1538" not in listening and "0100007F:1538" not in listening
    assert lines_with(logs, "BLOCKDEVS ") == ["0"]
    for check in ("MKNOD", "COREPATTERN", "CGESCAPE", "MOUNT"):
        assert lines_with(logs, f"{check} ") != ["rc=0"], (check, logs)


def test_add_url_to_a_private_address_fails(tenant_a: Tenant, private: FakeHost) -> None:
    build, logs = tenant_a.build(
        {"Dockerfile": FROM + f"ADD http://{private.ip}:{private.port}/add-private /x\n"}
    )
    assert build["status"] == "FAILURE", (build, logs[-20:])
    assert private.requests() == []


def test_add_url_to_metadata_fails(tenant_a: Tenant, private: FakeHost) -> None:
    build, _ = tenant_a.build(
        {"Dockerfile": FROM + f"ADD http://169.254.169.254:{private.port}/latest/meta-data /x\n"}
    )
    assert build["status"] == "FAILURE"
    assert private.requests() == []


# --- identity -------------------------------------------------------------------------------


def uid_map(logs: list[str]) -> list[list[int]]:
    return [[int(w) for w in line.split()] for line in lines_with(logs, "UIDMAP ")]


def test_root_in_the_build_is_an_unprivileged_host_user(
    live: LiveServer, tenant_a: Tenant, probe_build: tuple[dict[str, Any], list[str]]
) -> None:
    _, logs = probe_build
    mapping = uid_map(logs)
    user = build_user(live, tenant_a)
    assert mapping[0] == [0, user.pw_uid, 1], mapping
    assert user.pw_uid != 0 and all(row[1] != 0 for row in mapping)
    assert lines_with(logs, "ID ")[0].startswith("uid=0")


# --- a second project, building while the first one looks ------------------------------------

LISTEN_DOCKERFILE = FROM + (
    "RUN --mount=type=secret,id=tok mkdir -p /tmp; sed 's/^/UIDMAP /' /proc/self/uid_map; "
    "ip -4 addr | awk '/inet / {print \"ADDR \" $2}'; "
    "(nc -l -p 4444 > /tmp/got 2>&1 &); (nc -l -p 4445 > /dev/null 2>&1; touch /tmp/stop) & "
    "echo LISTENING; i=0; while [ $i -lt 60 ] && [ ! -e /tmp/stop ]; do sleep 1; i=$((i+1)); "
    'done; echo "RECEIVED [$(cat /tmp/got)]"\n'
)


@pytest.fixture(scope="module")
def b_running(
    live: LiveServer,
    tenant_a: Tenant,
    tenant_b: Tenant,
    public: FakeHost,
    probe_build: tuple[dict[str, Any], list[str]],  # A has built: its build user exists
) -> dict[str, Any]:
    """Project B's build listening on 4444 with a secret mount; while it runs: who can get
    at its listener, its secret, its processes. Then it is told to stop (4445)."""
    secret = f"B-SECRET-{uuid.uuid4().hex}"
    service = tenant_b.service({"Dockerfile": LISTEN_DOCKERFILE})
    build_id = service.start({"overrides": {"dockerSecretMounts": {"tok": utf8(secret)}}})
    deadline = time.monotonic() + 180
    while not any(line.endswith("LISTENING") for line in service.logs(build_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"B's build never listened: {service.logs(build_id)[-20:]}")
        time.sleep(0.5)
    logs = service.logs(build_id)
    ns_ip = next(a for a in lines_with(logs, "ADDR ") if a.startswith("10.213.")).split("/")[0]
    observed: dict[str, Any] = {"secret": secret, "ns_ip": ns_ip, "build_id": build_id}
    # The listener, from "the internet" and from the host's own interfaces.
    route = public.exec("ip", "route", "add", "10.213.0.0/16", "via", public.host_ip)
    assert route.returncode == 0, route.stderr
    connect = "import socket,sys\ns=socket.create_connection((sys.argv[1],4444),timeout=3)\n"
    connect += "s.sendall(b'INTRUDER-PUBLIC\\n');print('CONNECTED')"
    observed["from_public"] = public.exec("python3", "-c", connect, ns_ip).stdout
    observed["from_host"] = {
        ip: _send("INTRUDER-HOST", ip, 4444) for ip in ["127.0.0.1", *eth_addresses()]
    }
    # B's secret and processes, as A's build user (an escaped A build) and as root (sanity).
    user_a, user_b = build_user(live, tenant_a), build_user(live, tenant_b)
    secrets = sorted(sandbox_dir(live.data_dir).glob(f"{user_b.pw_name}/work/*/secrets/tok"))
    observed["secret_files"] = [str(s) for s in secrets]
    observed["secret_as_root"] = [s.read_text() for s in secrets]
    observed["secret_as_a"] = [as_user(user_a, "cat", str(s)) for s in secrets]
    b_pids = [
        p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == user_b.pw_uid
    ]
    observed["b_pids"] = b_pids
    observed["proc_as_a"] = [
        as_user(user_a, "sh", "-c", f"ls /proc/{pid}/root/ && cat /proc/{pid}/environ")
        for pid in b_pids
    ]
    # Stop B's build (root on the host may reach into a build's namespace).
    observed["stopped"] = _send("stop", ns_ip, 4445)
    data = service.wait(build_id, timeout=180)
    observed["build"], observed["logs"] = data, service.logs(build_id)
    return observed


def _owner(path: Path) -> int:
    try:
        return path.stat().st_uid
    except OSError:
        return -1


def _send(text: str, address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3) as conn:
            conn.sendall(text.encode() + b"\n")
            return True
    except OSError:
        return False


def test_nobody_connects_to_a_run_steps_listener(b_running: dict[str, Any]) -> None:
    assert b_running["build"]["status"] == "SUCCESS", b_running["logs"][-20:]
    # Root on the host may reach into a build's namespace (that is how it was stopped).
    assert b_running["stopped"]
    assert "CONNECTED" not in b_running["from_public"]
    assert not any(b_running["from_host"].values()), b_running["from_host"]
    received = lines_with(b_running["logs"], "RECEIVED ")
    assert received and "INTRUDER" not in received[0], received


def test_projects_get_different_host_uids_and_ranges(
    live: LiveServer,
    tenant_a: Tenant,
    tenant_b: Tenant,
    probe_build: tuple[dict[str, Any], list[str]],
    b_running: dict[str, Any],
) -> None:
    map_a, map_b = uid_map(probe_build[1]), uid_map(b_running["logs"])
    assert map_a[0][1] != map_b[0][1] and 0 not in (map_a[0][1], map_b[0][1])
    assert map_b[0][1] == build_user(live, tenant_b).pw_uid
    # The subordinate ranges (uid 1.. in the build) do not overlap either.
    (_, a_start, a_len), (_, b_start, b_len) = map_a[1], map_b[1]
    assert a_start + a_len <= b_start or b_start + b_len <= a_start, (map_a, map_b)


def test_another_builds_live_secret_is_out_of_reach(b_running: dict[str, Any]) -> None:
    assert b_running["secret_files"], "B's secret file was not found while it ran"
    assert b_running["secret_as_root"] == [b_running["secret"]]
    for done in b_running["secret_as_a"]:
        assert done.returncode != 0 and b_running["secret"] not in done.stdout
    assert not any(b_running["secret"] in line for line in b_running["logs"])


def test_another_builds_processes_are_out_of_reach(b_running: dict[str, Any]) -> None:
    assert b_running["b_pids"], "B's build had no process while it ran"
    for done in b_running["proc_as_a"]:
        assert done.returncode != 0, done.stdout


def test_build_user_cannot_read_shipyards_files(
    live: LiveServer, tenant_a: Tenant, tenant_b: Tenant, b_running: dict[str, Any]
) -> None:
    user_a = build_user(live, tenant_a)
    data = live.data_dir
    registry_files = [p for p in (data / "registry").rglob("*") if p.is_file()]
    assert registry_files, "the registry stored nothing"
    sandbox_b = sandbox_dir(live.data_dir) / build_user(live, tenant_b).pw_name
    store_b = [p for p in (sandbox_b / "store").rglob("*") if p.is_file()][:5]
    assert store_b
    targets = [
        data / "secret-key",
        data / "shipyard.db",
        data / "admin-token",
        data / "registry-auth" / "token-signing-key.pem",
        registry_files[0],
        *store_b,
    ]
    for target in targets:
        assert target.exists(), target
        done = as_user(user_a, "head", "-c", "64", str(target))
        assert done.returncode != 0, (target, done.stdout)
    for directory in (data, data / "registry", sandbox_b / "store", sandbox_b / "home",
                      sandbox_b / "work", sandbox_dir(live.data_dir)):  # fmt: skip
        done = as_user(user_a, "ls", str(directory))
        assert done.returncode != 0, (directory, done.stdout)


# --- mounts: the two CVE payloads of the issue ---------------------------------------------


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("--mount=type=cache,id=../../../..,target=/d", 'id "../../../.."'),
        ("--mount=type=bind,source=hostroot,target=/h,rw", "rw"),
        ("--mount=type=bind,source=hostroot,target=/h", "outside the build context"),
    ],
)
def test_cve_payloads_are_refused_naming_the_line(
    tenant_a: Tenant, host_dir: Path, mount: str, message: str
) -> None:
    written = host_dir / f"written-{uuid.uuid4().hex[:6]}"
    target = "/d" if "target=/d" in mount else "/h"
    dockerfile = FROM + (
        f"RUN {mount} ls {target}; cat {target}{host_dir}/marker; touch {target}{written}\n"
    )
    build, logs = tenant_a.build({"Dockerfile": dockerfile}, symlinks={"hostroot": "/"})
    assert build["status"] == "FAILURE", build
    assert "Dockerfile line 2" in build["message"] and message in build["message"], build
    assert not any(marker_of(host_dir) in line for line in logs)
    assert not written.exists()


@pytest.fixture(scope="module")
def pushed_onbuild_image(
    live: LiveServer, tenant_a: Tenant, host_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An image in tenant A's own repository whose config carries an ONBUILD trigger with the
    CVE-2024-9675 mount, pushed by the tenant with its project token (as ``docker push``
    would; built on the tenant's own machine, here a scratch store)."""
    work = tmp_path_factory.mktemp("onbuild")
    store = BuildahStore(root=work / "root", runroot=work / "runroot")
    buildah = Buildah(store)
    build_busybox_base(buildah, work)
    ups = "../" * 16
    trigger = (
        f"RUN --mount=type=cache,id={ups}{str(host_dir).lstrip('/')},target=/h "
        "cat /h/marker; echo pwned > /h/onbuild-wrote"
    )
    # A second trigger: the host's /run, where PostgreSQL keeps its unix socket.
    pg_trigger = (
        f"RUN --mount=type=cache,id={ups}run/postgresql,target=/pg "
        "/pgpoke /pg/.s.PGSQL.5432 || true"
    )
    ctx = work / "ctx"
    ctx.mkdir()
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(ctx / "pgpoke"), str(PGPOKE)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (ctx / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nCOPY pgpoke /pgpoke\nONBUILD {trigger}\nONBUILD {pg_trigger}\n"
    )
    image = f"{live.registry}/{tenant_a.project}/evil:1"
    subprocess.run(
        ["buildah", *store.args(), "bud", "--format", "docker", "--isolation", "oci",
         "--runtime", "/usr/sbin/runc", "--network", "none", "-t", image, str(ctx)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    token = create_project_token(live, tenant_a.project, f"a-{uuid.uuid4().hex[:6]}")
    auth = write_authfile(work / "auth.json", live.registry, "tenant", token)
    subprocess.run(
        ["buildah", *store.args(), "push", "--tls-verify=false", "--authfile", str(auth),
         image, f"docker://{image}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield image
    finally:
        unmount_under(store.root)
        subprocess.run(["rm", "-rf", str(work)], check=False)


@pytest.fixture(scope="module")
def onbuild_build(tenant_a: Tenant, pushed_onbuild_image: str) -> tuple[dict[str, Any], list[str]]:
    """One build FROM the image (a second one would take the triggers' layers from cache)."""
    return tenant_a.build({"Dockerfile": f"FROM {pushed_onbuild_image}\nRUN echo after-onbuild\n"})


def test_onbuild_trigger_of_a_base_image_is_checked_too(
    host_dir: Path, onbuild_build: tuple[dict[str, Any], list[str]]
) -> None:
    build, logs = onbuild_build
    leaked = any(marker_of(host_dir) in line for line in logs)
    wrote = (host_dir / "onbuild-wrote").exists()
    assert not leaked and not wrote, (build["status"], leaked, wrote)
    assert build["status"] == "FAILURE", build


@pytest.mark.skipif(not PG_SOCKET.exists(), reason="no PostgreSQL unix socket on this host")
def test_onbuild_trigger_cannot_reach_host_unix_sockets(
    onbuild_build: tuple[dict[str, Any], list[str]],
) -> None:
    # Control, from the host: this machine's PostgreSQL does take a password-less login.
    assert "PG-AUTH-OK" in subprocess.run(
        ["sh", "-c", f"d=$(mktemp -d) && gcc -static -O2 -o $d/p {PGPOKE} && $d/p {PG_SOCKET}; "
         "rm -rf $d"],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    build, logs = onbuild_build
    assert not any("PG-AUTH-OK" in line for line in logs), (build["status"], logs[-15:])


# --- paths out of the checkout ---------------------------------------------------------------


def test_dockerfile_symlink_out_of_the_checkout(tenant_a: Tenant, host_dir: Path) -> None:
    token = f"HOST-DOCKERFILE-{uuid.uuid4().hex[:8]}"
    (host_dir / "Dockerfile").write_text(FROM + f"RUN echo {token}\n")
    (host_dir / "Dockerfile").chmod(0o644)
    build, logs = tenant_a.build({}, symlinks={"Dockerfile": str(host_dir / "Dockerfile")})
    assert build["status"] == "FAILURE" and "outside the source" in build["message"], build
    assert not any(token in line for line in logs)


def test_work_dir_symlink_out_of_the_checkout(tenant_a: Tenant, host_dir: Path) -> None:
    service = tenant_a.service(
        {"Dockerfile": FROM}, {"ctx": str(host_dir)}, {"dockerFilePath": "/Dockerfile",
                                                        "dockerWorkDir": "/ctx"}
    )  # fmt: skip
    build, _ = service.build()
    assert build["status"] == "FAILURE" and "dockerWorkDir" in build["message"], build


def test_build_file_through_a_symlink_out_of_the_checkout(tenant_a: Tenant, host_dir: Path) -> None:
    name = f"planted-{uuid.uuid4().hex[:6]}"
    body = {"overrides": {"buildFiles": {f"/conf/{name}": utf8("evil")}}}
    build, _ = tenant_a.build({"Dockerfile": FROM}, {"conf": str(host_dir)}, body)
    assert build["status"] == "FAILURE" and "outside the source" in build["message"], build
    assert not (host_dir / name).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"overrides": {"dockerSecretMounts": {"../../x": utf8("v")}}},
        {"overrides": {"buildFiles": {"/../../etc/x": utf8("v")}}},
        {"overrides": {"docker": {"dockerFilePath": "/../../etc/passwd"}}},
        {"overrides": {"docker": {"dockerWorkDir": "/.."}}},
    ],
)
def test_path_traversal_in_overrides_is_refused(tenant_a: Tenant, body: dict[str, Any]) -> None:
    service = tenant_a.service({"Dockerfile": FROM})
    with tenant_a.live.client() as c:
        r = c.post(f"{service.path}/build", json=body)
    assert r.status_code in (400, 422), r.text


def test_secret_mount_id_traversal_in_the_dockerfile(tenant_a: Tenant) -> None:
    build, _ = tenant_a.build(
        {"Dockerfile": FROM + "RUN --mount=type=secret,id=../../../x,target=/s cat /s\n"}
    )
    assert build["status"] == "FAILURE" and "line 2" in build["message"], build


def test_dockerignore_symlink_out_of_the_checkout(tenant_a: Tenant, host_dir: Path) -> None:
    (host_dir / "ignore").write_text("canary.txt\n")
    (host_dir / "ignore").chmod(0o644)
    build, logs = tenant_a.build(
        {"Dockerfile": FROM + "COPY . /ctx\nRUN echo \"CTX $(ls /ctx | tr '\\n' ' ')\"\n",
         "canary.txt": "c\n"},
        {".dockerignore": str(host_dir / "ignore")},
    )  # fmt: skip
    if build["status"] == "FAILURE":
        assert ".dockerignore" in build["message"], build  # refused: fine
        return
    listing = lines_with(logs, "CTX ")
    assert listing and "canary.txt" in listing[0].split(), (build, listing)


def test_setuid_files_of_the_image_do_not_help(live: LiveServer, tenant_a: Tenant) -> None:
    """A setuid binary made in a RUN step lands in the store as the build user's: nobody else
    can reach it (the store is 0700), and the build user gains nothing from its own uid."""
    build, logs = tenant_a.build(
        {"Dockerfile": FROM + "RUN cp /bin/busybox /suid && chmod 4755 /suid && ls -l /suid\n"}
    )
    assert build["status"] == "SUCCESS", logs[-10:]
    user = build_user(live, tenant_a)
    store = sandbox_dir(live.data_dir) / user.pw_name / "store"
    suid = [p for p in store.rglob("suid") if p.is_file() and p.stat().st_mode & 0o4000]
    assert suid and all(p.stat().st_uid == user.pw_uid for p in suid)
    assert store.stat().st_mode & 0o077 == 0


# --- registry -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a_image(tenant_a: Tenant, probe_build: tuple[dict[str, Any], list[str]]) -> str:
    build, _ = probe_build
    assert build["status"] == "SUCCESS"
    return str(build["registry"]["uri"])


@pytest.mark.parametrize(
    "dockerfile",
    ["FROM {image}\n", FROM + "COPY --from={image} /public-add /x\n",
     FROM + "RUN --mount=type=bind,from={image},target=/a cat /a/public-add\n"],
)  # fmt: skip
def test_project_b_cannot_use_project_a_images(
    tenant_b: Tenant, a_image: str, dockerfile: str
) -> None:
    build, logs = tenant_b.build({"Dockerfile": dockerfile.format(image=a_image)})
    assert build["status"] == "FAILURE", (build, logs[-10:])


def registry_token(live: LiveServer, password: str | None, scope: str) -> httpx.Response:
    auth = ("tenant", password) if password else None
    return httpx.get(
        f"{live.url}/v1/registry/token", params={"scope": scope}, auth=auth, timeout=30
    )


def test_project_b_gets_no_access_to_project_a_repositories(
    live: LiveServer, tenant_a: Tenant, tenant_b: Tenant, a_image: str, tmp_path: Path
) -> None:
    token_b = create_project_token(live, tenant_b.project, f"b-{uuid.uuid4().hex[:6]}")
    repo_a = a_image.split("/", 1)[1].split("@")[0]
    r = registry_token(live, token_b, f"repository:{repo_a}:pull,push,delete")
    assert r.status_code == 200, r.text
    assert json.loads(_jwt_claims(r.json()["token"]))["access"] == []
    with live.client() as c:
        creds = c.get(f"/v1/projects/{tenant_b.project}/registry-credentials").json()["data"]
    # Pushing into A's repository with B's token and with B's pull credential.
    for password in (token_b, creds["password"]):
        auth = write_authfile(tmp_path / "b.json", live.registry, "tenant", password)
        done = subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
             "--src-authfile", str(live.authfile), "--dest-authfile", str(auth),
             f"docker://{a_image}", f"docker://{live.registry}/{repo_a}:hijacked"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode != 0, done.stdout
    tags = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{live.registry}/{repo_a}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "hijacked" not in tags


def _jwt_claims(token: str) -> str:
    body = token.split(".")[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_anonymous_registry_catalog_and_delete_are_refused(live: LiveServer, a_image: str) -> None:
    base = f"http://{live.registry}"
    assert httpx.get(f"{base}/v2/_catalog", timeout=30).status_code == 401
    repo, digest = a_image.split("/", 1)[1].split("@")
    assert httpx.delete(f"{base}/v2/{repo}/manifests/{digest}", timeout=30).status_code == 401
    # Even the admin's token gets no delete (and the registry has deletes disabled).
    r = registry_token(live, live.token, f"repository:{repo}:delete")
    bearer = r.json()["token"]
    d = httpx.delete(
        f"{base}/v2/{repo}/manifests/{digest}",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert d.status_code in (401, 403, 405), d.text
    assert registry_token(live, None, "registry:catalog:*").status_code == 401
    # The image is still there.
    ok = httpx.get(
        f"{live.url}/v1/registry/token",
        params={"scope": f"repository:{repo}:pull"},
        auth=("admin", live.token),
        timeout=30,
    ).json()["token"]
    head = httpx.head(
        f"{base}/v2/{repo}/manifests/{digest}",
        headers={
            "Authorization": f"Bearer {ok}",
            "Accept": "application/vnd.oci.image.manifest.v1+json",
        },
        timeout=30,
    )
    assert head.status_code == 200


# --- cache ----------------------------------------------------------------------------------

CACHE_DOCKERFILE = FROM + (
    "RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /value\n"
)


def _value_of(live: LiveServer, build: dict[str, Any], dest: Path) -> str:
    files = image_files(live.authfile, build["registry"]["uri"], dest)
    return files["value"].decode().strip()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def cache_a(tenant_a: Tenant) -> tuple[Service, dict[str, Any], str]:
    service = tenant_a.service({"Dockerfile": CACHE_DOCKERFILE})
    value = f"alpha-{uuid.uuid4().hex}"
    build, logs = service.build({"overrides": {"dockerSecretMounts": {"tok": utf8(value)}}})
    assert build["status"] == "SUCCESS", logs[-10:]
    return service, build, value


def test_no_cache_hit_across_projects(
    live: LiveServer, tenant_b: Tenant, cache_a: tuple[Service, dict[str, Any], str],
    tmp_path: Path,
) -> None:  # fmt: skip
    _, build_a, value_a = cache_a
    assert _value_of(live, build_a, tmp_path / "a") == _sha(value_a)
    value_b = f"beta-{uuid.uuid4().hex}"
    build_b, logs = tenant_b.build(
        {"Dockerfile": CACHE_DOCKERFILE},
        body={"overrides": {"dockerSecretMounts": {"tok": utf8(value_b)}}},
    )
    assert build_b["status"] == "SUCCESS", logs[-10:]
    assert _value_of(live, build_b, tmp_path / "b") == _sha(value_b)


def test_changed_secret_is_not_served_from_the_cache(
    live: LiveServer, cache_a: tuple[Service, dict[str, Any], str], tmp_path: Path
) -> None:
    service, _, _ = cache_a
    value = f"gamma-{uuid.uuid4().hex}"
    build, logs = service.build({"overrides": {"dockerSecretMounts": {"tok": utf8(value)}}})
    assert build["status"] == "SUCCESS", logs[-10:]
    assert _value_of(live, build, tmp_path / "c") == _sha(value)


# --- after all of it ------------------------------------------------------------------------


def test_nothing_left_running_and_api_answers(
    live: LiveServer, b_running: dict[str, Any], probe_build: tuple[dict[str, Any], list[str]]
) -> None:
    assert_no_leftovers(live, b_running["build_id"])
    assert_no_leftovers(live, probe_build[0]["id"])
    with live.client() as c:
        assert c.get("/v1/login").status_code == 200
