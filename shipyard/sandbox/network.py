"""Network policy for builds: a network namespace per build with an outbound-only path.

``isolated`` (default): buildah and every RUN step run inside a namespace whose only link is
a veth pair to the host. The host forwards and masquerades its traffic to public addresses,
rejects the denied ranges (``addresses.py``), and drops everything addressed to the host
itself except Shipyard's registry and token endpoint, which the namespace reaches as
``127.0.0.1:<port>`` through DNAT (so image names stay ``127.0.0.1:<port>/…``). Nothing can
connect into the namespace (forwarded NEW connections towards it are dropped), so a RUN step
cannot listen on the host's interfaces. IPv6 is off inside the namespace.

``none``: the same namespace (buildah still pulls base images through it) and RUN steps get
``--network none``. ``host``: no namespace; RUN steps share the host network (unsafe).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from shipyard.sandbox.addresses import DENIED_V4
from shipyard.sandbox.users import SandboxError

SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
HOST_IF = "syh"  # host end of each veth: syh<8 hex>
NS_IF = "syb"
NS_PREFIX = "sy"
LOCK_PATH = Path("/run/shipyard-netns.lock")
CHAIN_IN = "SHIPYARD-IN"
CHAIN_FWD = "SHIPYARD-FWD"
CHAIN_FWD_BACK = "SHIPYARD-FWD-BACK"
_TIMEOUT_S = 20.0
# Open connections one build may hold to the registry and the API (the loopback ports it
# reaches through DNAT). Both serve every project: without a cap, one build's RUN step could
# hold thousands of idle connections and starve them of file descriptors. A build needs a
# handful (parallel layer uploads, token requests).
LOOPBACK_CONNECTIONS = 64


class NetworkMode(StrEnum):
    ISOLATED = "isolated"
    NONE = "none"
    HOST = "host"

    def narrowest(self, other: NetworkMode) -> NetworkMode:
        order = [NetworkMode.NONE, NetworkMode.ISOLATED, NetworkMode.HOST]
        return order[min(order.index(self), order.index(other))]


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise SandboxError(f"{' '.join(argv[:4])}… failed: {(done.stderr or done.stdout).strip()}")
    return done


def _ipt(*args: str, check: bool = True, netns: str | None = None) -> bool:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return _run([*prefix, "iptables", "-w", "5", *args], check=check).returncode == 0


def _ensure(table: str, chain: str, *rule: str, first: bool = False) -> None:
    if not _ipt("-t", table, "-C", chain, *rule, check=False):
        _ipt("-t", table, "-I" if first else "-A", chain, *(["1"] if first else []), *rule)


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's IPv4 resolvers a namespace can use (not loopback ones: unreachable there)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    ip = ipaddress.ip_address(parts[1])
                    if ip.version == 4 and not ip.is_loopback:
                        found.append(str(ip))
    return found


_host_rules_lock = threading.Lock()
_host_rules_done = False


def install_host_rules() -> None:
    """The rules every build namespace shares (idempotent, safe beside other instances)."""
    global _host_rules_done
    with _host_rules_lock:
        if _host_rules_done:
            return
        with _machine_lock():
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
            for chain in (CHAIN_IN, CHAIN_FWD, CHAIN_FWD_BACK):
                _ipt("-N", chain, check=False)
            # Chains are filled only when empty: other instances may have per-build rules
            # inserted in them already.
            if _chain_len(CHAIN_IN) == 0:
                _ipt("-A", CHAIN_IN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                     "-j", "ACCEPT")  # fmt: skip
                _ipt("-A", CHAIN_IN, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
                _ipt("-A", CHAIN_IN, "-j", "DROP")
            if _chain_len(CHAIN_FWD) == 0:
                for net in DENIED_V4:
                    reject = ["-j", "REJECT", "--reject-with", "icmp-net-prohibited"]
                    _ipt("-A", CHAIN_FWD, "-d", str(net), *reject)
                _ipt("-A", CHAIN_FWD, "-j", "ACCEPT")
            if _chain_len(CHAIN_FWD_BACK) == 0:
                _ipt("-A", CHAIN_FWD_BACK, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                     "-j", "ACCEPT")  # fmt: skip
                _ipt("-A", CHAIN_FWD_BACK, "-j", "DROP")
            _ensure("filter", "INPUT", "-i", f"{HOST_IF}+", "-j", CHAIN_IN, first=True)
            _ensure("filter", "FORWARD", "-i", f"{HOST_IF}+", "-j", CHAIN_FWD, first=True)
            _ensure("filter", "FORWARD", "-o", f"{HOST_IF}+", "-j", CHAIN_FWD_BACK, first=True)
            _ensure("nat", "POSTROUTING", "-s", str(SUBNET), "!", "-o", f"{HOST_IF}+",
                    "-j", "MASQUERADE")  # fmt: skip
        _host_rules_done = True


def _chain_len(chain: str) -> int:
    out = _run(["iptables", "-w", "5", "-S", chain], check=False).stdout.splitlines()
    return max(0, len(out) - 1)  # the first line is "-N chain"


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One lock for all Shipyard instances on the machine: chains and address blocks."""
    with LOCK_PATH.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Loopback:
    """Host loopback ports a namespace may reach (the registry, the token endpoint).

    ``aliases``: (address, port) of this host's own non-loopback addresses that stand for
    127.0.0.1:<port> (a realm at ``SHIPYARD_PUBLIC_URL``): the namespace DNATs exactly those
    the same way, and nothing else of the host's addresses becomes reachable."""

    ports: tuple[int, ...]
    aliases: tuple[tuple[str, int], ...] = ()


@dataclass
class BuildNetwork:
    """One build's namespace. ``create()`` / ``destroy()``; ``name`` is the netns name."""

    instance_id: str
    key: str  # unique per build of the instance (build id + attempt)
    loopback: Loopback
    allowed: tuple[str, ...] = ()  # CIDRs the operator allows despite the denied ranges
    dns: tuple[str, ...] = ()
    # (address, port) on other machines: Shipyard's registry and token endpoint there
    # (sandbox/endpoints.py), accepted for that TCP port only, even in a private range.
    remote: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        digest = hashlib.sha256(f"{self.instance_id}/{self.key}".encode()).hexdigest()[:8]
        self.name = f"{namespace_prefix(self.instance_id)}{digest}"
        self.host_if = f"{HOST_IF}{digest}"
        self.ns_if = f"{NS_IF}{digest}"
        self.chain = f"SY-{digest}"
        self.host_ip = ""
        self.ns_ip = ""

    def create(self) -> None:
        # Few processes (each costs milliseconds on a build's critical path): one ``ip`` batch
        # per side, one ``iptables-restore`` per namespace.
        if Path(f"/run/netns/{self.name}").exists() or _link_exists(self.host_if):
            self.destroy()  # a leftover of a crashed attempt with the same key
        with _machine_lock():
            block = self._free_block()
            self.host_ip, self.ns_ip = str(block[1]), str(block[2])
            _run(["ip", "netns", "add", self.name])
            _batch(["ip", "-batch", "-"], [
                f"link add {self.host_if} type veth peer name {self.ns_if} netns {self.name}",
                f"addr add {self.host_ip}/30 dev {self.host_if}",
                f"link set {self.host_if} up",
            ])  # fmt: skip
        try:
            self._configure()
        except BaseException:
            self.destroy()
            raise

    def _free_block(self) -> ipaddress.IPv4Network:
        used = [
            ipaddress.ip_interface(word).ip
            for line in _run(["ip", "-o", "-4", "addr", "show"]).stdout.splitlines()
            for word in line.split()
            if "/" in word and word[0].isdigit()
        ]
        blocks = list(SUBNET.subnets(new_prefix=30))[1:]
        start = int(hashlib.sha256(self.key.encode()).hexdigest(), 16) % len(blocks)
        for offset in range(len(blocks)):
            block = blocks[(start + offset) % len(blocks)]
            if not any(ip in block for ip in used):
                return block
        raise SandboxError(f"no free /30 left in {SUBNET} for build networks")

    def _configure(self) -> None:
        Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/route_localnet").write_text("1\n")
        _batch(["ip", "-n", self.name, "-batch", "-"], [
            f"addr add {self.ns_ip}/30 dev {self.ns_if}",
            f"link set {self.ns_if} up",
            "link set lo up",
            f"route add default via {self.host_ip}",
        ])  # fmt: skip
        enter = ["nsenter", f"--net=/run/netns/{self.name}", "--"]
        sysctls = ["net.ipv4.conf.all.route_localnet=1", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1"]  # fmt: skip
        _run([*enter, "sysctl", "-qw", *sysctls])
        ports = ",".join(str(p) for p in self.loopback.ports)
        if ports:
            # In the namespace, 127.0.0.1:<port> leaves through the veth to the host's end...
            _batch([*enter, "iptables-restore", "-w", "5", "--noflush"], [
                "*nat",
                f"-A OUTPUT -d 127.0.0.1/32 -p tcp -m multiport --dports {ports} "
                f"-j DNAT --to-destination {self.host_ip}",
                *(
                    f"-A OUTPUT -d {address}/32 -p tcp -m tcp --dport {port} "
                    f"-j DNAT --to-destination {self.host_ip}"
                    for address, port in self.loopback.aliases
                ),
                f"-A POSTROUTING -s 127.0.0.0/8 -o {self.ns_if} -j MASQUERADE",
                "COMMIT",
            ])  # fmt: skip
        _batch(["iptables-restore", "-w", "5", "--noflush"], self._host_rules("-A", "-I"))

    def _host_rules(self, append: str, insert: str) -> list[str]:
        """The host's rules for this namespace (``-A``/``-I`` to add, ``-D``/``-D`` to drop)."""
        ports = ",".join(str(p) for p in self.loopback.ports)
        first = " 1" if insert == "-I" else ""
        lines = []
        if ports:
            # ... and on the host it is turned back into 127.0.0.1:<port>, the only local
            # address this interface may reach.
            lines += [
                "*nat",
                f"{append} PREROUTING -i {self.host_if} -d {self.host_ip}/32 -p tcp -m multiport "
                f"--dports {ports} -j DNAT --to-destination 127.0.0.1",
                "COMMIT",
            ]
        lines.append("*filter")
        if append == "-A":
            lines.append(f":{self.chain} - [0:0]")
            lines += [f"-A {self.chain} -d {cidr} -j ACCEPT" for cidr in self.allowed]
            for address, port in self.remote:
                match = f"-d {address}/32 -p tcp -m tcp --dport {port}"
                # The same cap as on the loopback ports: a registry every project shares.
                lines.append(
                    f"-A {self.chain} {match} --syn -m connlimit --connlimit-above "
                    f"{LOOPBACK_CONNECTIONS} --connlimit-mask 32 -j REJECT --reject-with tcp-reset"
                )
                lines.append(f"-A {self.chain} {match} -j ACCEPT")
            lines += [
                f"-A {self.chain} -d {server}/32 -p {proto} -m {proto} --dport 53 -j ACCEPT"
                for server in self.dns
                for proto in ("udp", "tcp")
            ]
        if ports:
            match = f"-d 127.0.0.1/32 -i {self.host_if} -p tcp -m multiport --dports {ports}"
            lines.append(
                f"{insert} {CHAIN_IN}{first} {match} -m conntrack --ctstate DNAT -j ACCEPT"
            )
            # Inserted after (so evaluated before) the accept: new connections past the cap
            # are refused.
            lines.append(
                f"{insert} {CHAIN_IN}{first} {match} --syn -m connlimit --connlimit-above "
                f"{LOOPBACK_CONNECTIONS} --connlimit-mask 32 -j REJECT --reject-with tcp-reset"
            )
        lines.append(f"{insert} {CHAIN_FWD}{first} -i {self.host_if} -j {self.chain}")
        if append == "-D":
            lines += [f"-F {self.chain}", f"-X {self.chain}"]
        lines.append("COMMIT")
        return lines

    def exists(self) -> bool:
        """Whether the namespace and the host's end of its link are (still) there."""
        return Path(f"/run/netns/{self.name}").exists() and _link_exists(self.host_if)

    def destroy(self) -> None:
        _run(["ip", "netns", "del", self.name], check=False)  # takes the veth pair with it
        if _link_exists(self.host_if):
            _run(["ip", "link", "del", self.host_if], check=False)
        if self.host_ip:
            # The exact rules this object added: one batch, all or nothing.
            done = _batch(["iptables-restore", "-w", "5", "--noflush"],
                          self._host_rules("-D", "-D"), check=False)  # fmt: skip
            if done:
                return
        # After a crash (addresses unknown) or a partial set-up: find them by interface.
        _delete_matching("nat", "PREROUTING", self.host_if)
        _delete_matching("filter", CHAIN_IN, self.host_if)
        _delete_matching("filter", CHAIN_FWD, self.host_if)
        _ipt("-F", self.chain, check=False)
        _ipt("-X", self.chain, check=False)


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _batch(argv: Sequence[str], lines: Sequence[str], *, check: bool = True) -> bool:
    done = subprocess.run(
        list(argv), input="\n".join(lines) + "\n", capture_output=True, text=True,
        timeout=_TIMEOUT_S, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done.returncode == 0


def _delete_matching(table: str, chain: str, interface: str) -> None:
    """Delete every rule of ``chain`` that names ``interface``."""
    listing = _run(["iptables", "-w", "5", "-t", table, "-S", chain], check=False).stdout
    for line in listing.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "-A" and interface in words:
            _run(["iptables", "-w", "5", "-t", table, "-D", *words[1:]], check=False)


def namespace_prefix(instance_id: str) -> str:
    return f"{NS_PREFIX}{instance_id[:6]}-"


def remove_stale(instance_id: str) -> int:
    """After a crash: remove every namespace (and its rules) this instance left behind."""
    prefix = namespace_prefix(instance_id)
    listing = _run(["ip", "netns", "list"], check=False).stdout
    removed = 0
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            stale = BuildNetwork(instance_id, "", Loopback((1,)))
            digest = name[len(prefix) :]
            stale.name, stale.host_if = name, f"{HOST_IF}{digest}"
            stale.ns_if, stale.chain = f"{NS_IF}{digest}", f"SY-{digest}"
            stale.destroy()
            removed += 1
    return removed
