"""Fast rules of the sandbox: address policy, launcher argv, secret-keyed Dockerfiles, remote
hosts, bounded output lines, log caps."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from shipyard.pipeline.errors import SourceError
from shipyard.pipeline.process import run
from shipyard.pipeline.remote_policy import check_remote, remote_host
from shipyard.sandbox.addresses import is_denied
from shipyard.sandbox.dockerfile import SECRET_KEY_ARG, check_dockerfile, with_secret_key
from shipyard.sandbox.launcher import Launcher
from shipyard.sandbox.network import NetworkMode
from shipyard.sandbox.users import user_name


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
     "0.0.0.0", "224.0.0.1", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "64:ff9b::a00:1"],
)  # fmt: skip
def test_host_and_private_ranges_are_denied(address: str) -> None:
    assert is_denied(address)


@pytest.mark.parametrize("address", ["203.0.113.2", "8.8.8.8", "2001:4860::8888"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_denied(address)


def test_network_mode_can_only_narrow() -> None:
    assert NetworkMode.HOST.narrowest(NetworkMode.ISOLATED) is NetworkMode.ISOLATED
    assert NetworkMode.ISOLATED.narrowest(NetworkMode.NONE) is NetworkMode.NONE
    assert NetworkMode.NONE.narrowest(NetworkMode.HOST) is NetworkMode.NONE


def test_launcher_joins_cgroups_enters_the_namespace_then_drops_to_the_user() -> None:
    argv = Launcher(1234, 1234, netns="syabc-1", cgroup_procs=("/cg/a", "/cg/b")).wrap(
        ["buildah", "bud", "; rm -rf /"]
    )
    assert argv[:3] == ["/bin/sh", "-c", argv[2]] and "$@" in argv[2]
    assert argv[3:7] == ["shipyard-join", "/cg/a", "/cg/b", "--"]
    assert argv[7:10] == ["nsenter", "--net=/run/netns/syabc-1", "--"]
    assert argv[10:15] == ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups", "--"]
    assert argv[15:] == ["buildah", "bud", "; rm -rf /"]  # data stays one argument


def test_the_join_shim_runs_the_command_with_its_arguments_untouched(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    argv = Launcher(0, 0, cgroup_procs=(str(procs),)).wrap(["printf", "%s|", "a b", "$(x)"])
    out: list[str] = []
    # setpriv to uid 0 as root keeps the test independent of any build user.
    run(argv, on_line=out.append, cancel=threading.Event(), timeout_s=10)
    assert out == ["a b|$(x)|"]
    assert procs.read_text().strip().isdigit()


def test_user_names_differ_per_project_and_instance() -> None:
    names = {user_name(i, p) for i in ("inst1", "inst2") for p in ("a", "b")}
    assert len(names) == 4 and all(len(n) <= 32 for n in names)


def test_secret_mount_steps_get_the_secret_key_arg(tmp_path: Path) -> None:
    text = (
        "FROM scratch AS a\nRUN echo plain\n"
        "RUN --mount=type=secret,id=s \\\n    cat /run/secrets/s\n"
        "FROM a\nRUN --mount=type=secret,id=t true\n"
    )
    plan = check_dockerfile(text, context_dir=tmp_path, display_path="Dockerfile")
    assert plan.secret_run_lines == (3, 6)
    keyed = with_secret_key(text, plan).splitlines()
    assert keyed[2] == keyed[6] == f"ARG {SECRET_KEY_ARG}"
    assert keyed[3].startswith("RUN --mount=type=secret,id=s") and keyed[7].startswith("RUN")
    # Still a valid Dockerfile by the same rules.
    check_dockerfile("\n".join(keyed), context_dir=tmp_path, display_path="Dockerfile")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/a/b.git", ("github.com", 443)),
        ("http://10.0.0.5:8080/r.git", ("10.0.0.5", 8080)),
        ("ssh://git@host.example:2222/r", ("host.example", 2222)),
        ("git@github.com:a/b.git", ("github.com", 22)),
        ("file:///srv/r.git", None),
        ("/srv/r.git", None),
    ],
)
def test_remote_host(url: str, expected: tuple[str, int] | None) -> None:
    assert remote_host(url) == expected


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/r.git", "https://169.254.169.254/r", "git@10.1.1.1:r.git"]
)
def test_private_git_remotes_are_refused(url: str) -> None:
    with pytest.raises(SourceError, match="private or local address"):
        check_remote(url, allow_private=False)
    check_remote(url, allow_private=True)


def test_an_operator_allowed_network_passes() -> None:
    check_remote("http://10.1.2.3/r.git", allow_private=False, allowed_networks=("10.1.0.0/16",))


def test_one_endless_output_line_is_cut_while_it_is_read() -> None:
    lines: list[str] = []
    code = "import sys; sys.stdout.write('a' * 5_000_000); sys.stdout.write('\\nafter\\n')"
    completed = run(
        [sys.executable, "-c", code], on_line=lines.append, cancel=threading.Event(),
        timeout_s=30, max_line_bytes=1024,
    )  # fmt: skip
    assert completed.returncode == 0
    assert lines[0].startswith("a" * 1024) and "line cut at 1024 bytes" in lines[0]
    assert len(lines[0]) < 1200 and lines[1] == "after"


def test_a_service_can_only_narrow_the_operators_sandbox(tmp_path: Path) -> None:
    from shipyard.sandbox.cgroups import Limits
    from shipyard.sandbox.sandbox import SandboxRequest, SandboxSettings, effective

    settings = SandboxSettings(
        root=tmp_path, instance_id="x", network=NetworkMode.ISOLATED,
        limits=Limits(memory_bytes=4096 << 20, pids=4096, cpu_shares=512),
    )  # fmt: skip
    wide = SandboxRequest.from_spec({"network": "host", "memoryMb": 999_999, "pids": 10**6})
    network, limits, notes = effective(settings, wide)
    assert network is NetworkMode.ISOLATED and limits.memory_bytes == 4096 << 20
    assert limits.pids == 4096 and notes
    narrow = SandboxRequest.from_spec({"network": "none", "memoryMb": 256, "cpus": 0.5})
    network, limits, notes = effective(settings, narrow)
    assert (network, limits.memory_bytes, limits.cpu_quota) == (NetworkMode.NONE, 256 << 20, 0.5)
    assert notes == []
    assert SandboxRequest.from_spec("nonsense") is None


def test_the_args_key_label_follows_each_stage_that_declares_a_given_argument(
    tmp_path: Path,
) -> None:
    from shipyard.sandbox.dockerfile import ARGS_KEY_LABEL, stage_args, with_args_key

    text = (
        "ARG BASE=scratch\nFROM $BASE AS one\nARG A=1\nLABEL a=$A\n"
        "FROM one\nARG B\nENV b=$B\nRUN --mount=type=secret,id=s true\n"
    )
    plan = check_dockerfile(text, context_dir=tmp_path, display_path="Dockerfile")
    assert stage_args(plan, {"A": "2", "UNUSED": "x"}) == {2: {"A": "2"}}
    assert stage_args(plan, {"B": "b"}) == {5: {"B": "b"}}
    keyed = with_args_key(text, {2: "k1", 5: "k2"}).splitlines()
    assert keyed[2] == f'LABEL {ARGS_KEY_LABEL}="k1"' and keyed[6] == f'LABEL {ARGS_KEY_LABEL}="k2"'
    assert with_args_key(text, {}) == text
    check_dockerfile("\n".join(keyed), context_dir=tmp_path, display_path="Dockerfile")


def test_origin_labels_become_one_label_step_at_the_end(tmp_path: Path) -> None:
    from shipyard.sandbox.dockerfile import with_labels

    labels = {"b.source": 'https://h/a$HOME"q\\x ${X}', "a.created": "2020-01-01T00:00:00Z"}
    text = "FROM scratch AS one\nCOPY f /f\nFROM one\nRUN true"
    labelled = with_labels(text, labels)
    assert labelled is not None
    # One instruction, sorted; nothing expands and quotes and backslashes survive.
    assert labelled.splitlines()[-1] == (
        'LABEL "a.created"="2020-01-01T00:00:00Z" "b.source"="https://h/a\\$HOME\\"q\\\\x \\${X}"'
    )
    assert labelled.startswith(text + "\n")
    check_dockerfile(labelled, context_dir=tmp_path, display_path="Dockerfile")
    assert with_labels(text, {}) == text
    # The new line would continue the last instruction, or a value has a line break: no.
    assert with_labels("FROM a\nRUN x \\\n", labels) is None
    assert with_labels("FROM a\nRUN x \\\n# comment\n\n", labels) is None
    assert with_labels(text, {"a": "x\ny"}) is None


def test_local_inspect_reads_the_triggers_from_the_stores_own_files(tmp_path: Path) -> None:
    import base64
    import json

    from shipyard.pipeline.builder import Buildah, BuildahStore
    from shipyard.sandbox.dockerfile import onbuild_triggers

    image_id = "ab" * 32
    images = tmp_path / "root" / "overlay-images"
    (images / image_id).mkdir(parents=True)
    (images / "images.json").write_text(json.dumps([{"id": image_id, "names": ["localhost/x:1"]}]))
    key = base64.b64encode(f"sha256:{image_id}".encode()).decode()
    config = {"config": {"OnBuild": ["RUN --mount=type=cache,id=../..,target=/x true"]}}
    (images / image_id / f"={key}").write_text(json.dumps(config))
    buildah = Buildah(BuildahStore(root=tmp_path / "root", runroot=tmp_path / "run"))
    inspected = buildah.local_inspect("localhost/x:1")
    assert inspected is not None and inspected["FromImageID"] == image_id
    assert onbuild_triggers(inspected) == config["config"]["OnBuild"]
    assert buildah.local_inspect("localhost/missing:1") is None


def test_a_build_takes_the_spare_network_and_the_next_one_is_made_behind_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from shipyard.sandbox import network as network_module
    from shipyard.sandbox.network import BuildNetwork
    from shipyard.sandbox.sandbox import Sandbox

    alive: set[str] = set()
    created: list[str] = []
    monkeypatch.setattr(BuildNetwork, "create", lambda self: (created.append(self.name),
                                                              alive.add(self.name)))  # fmt: skip
    monkeypatch.setattr(BuildNetwork, "destroy", lambda self: alive.discard(self.name))
    monkeypatch.setattr(BuildNetwork, "exists", lambda self: self.name in alive)
    resolvers = ["192.0.2.1"]
    monkeypatch.setattr(network_module, "nameservers", lambda: list(resolvers))

    class Settings:
        instance_id = "spare1"
        loopback_ports = (5000,)
        allowed_networks = ()
        local_endpoints = ()
        remote_endpoints = ()

    sandbox = Sandbox.__new__(Sandbox)
    sandbox.settings = Settings()  # type: ignore[assignment]
    sandbox._lock = threading.Lock()
    sandbox._spare, sandbox._filling, sandbox._stopped = None, False, False
    sandbox._discarding = set()

    def settled() -> BuildNetwork | None:
        deadline = time.monotonic() + 5
        while (sandbox._filling or sandbox._spare is None) and time.monotonic() < deadline:
            time.sleep(0.01)
        return sandbox._spare

    first = sandbox._network()  # none ready: made on the spot, a spare behind it
    spare = settled()
    assert spare is not None and spare.name != first.name and len(created) == 2
    assert sandbox._network() is spare  # taken as it is, no process on the build's path
    settled()
    # A spare that vanished (a clean-up removed it) or has old resolvers is not used.
    gone = sandbox._spare
    assert gone is not None
    alive.discard(gone.name)
    third = sandbox._network()
    assert third is not gone and third.name in alive
    resolvers[:] = ["192.0.2.2"]
    old = settled()
    fourth = sandbox._network()
    assert fourth is not old and fourth.dns == ("192.0.2.2",) and old is not None
    assert old.name not in alive
    settled()
    sandbox.discard_network(first)  # a finished build's, in the background
    sandbox.stop()
    assert sandbox._spare is None and not sandbox._discarding
    assert alive == {spare.name, third.name, fourth.name}  # the builds' own
    sandbox._refill()  # stopped: no new spare
    assert sandbox._spare is None and not sandbox._filling


def test_stopping_waits_for_a_spare_network_being_made_and_removes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from shipyard.sandbox import network as network_module
    from shipyard.sandbox.network import BuildNetwork
    from shipyard.sandbox.sandbox import Sandbox

    alive: set[str] = set()

    def slow_create(self: BuildNetwork) -> None:
        time.sleep(0.3)
        alive.add(self.name)

    monkeypatch.setattr(BuildNetwork, "create", slow_create)
    monkeypatch.setattr(BuildNetwork, "destroy", lambda self: alive.discard(self.name))
    monkeypatch.setattr(network_module, "nameservers", lambda: [])

    class Settings:
        instance_id = "spare2"
        loopback_ports = (5000,)
        allowed_networks = ()
        local_endpoints = ()
        remote_endpoints = ()

    sandbox = Sandbox.__new__(Sandbox)
    sandbox.settings = Settings()  # type: ignore[assignment]
    sandbox._lock = threading.Lock()
    sandbox._spare, sandbox._filling, sandbox._stopped = None, False, False
    sandbox._discarding = set()
    sandbox._refill()  # as at start
    sandbox.stop()  # before the spare is made: waits, and nothing is left (a quick exit
    assert alive == set() and sandbox._spare is None  # would otherwise leak a namespace)
