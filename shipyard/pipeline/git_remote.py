"""How git reaches a remote: the URL on its command line, the configuration and the
environment that go with it.

- **Credentials never on argv.** ``/proc/<pid>/cmdline`` is readable by every local user,
  build users included, so a token in the URL git is started with is a token given away.
  http(s) credentials become an ``Authorization: Basic`` header passed to git through its
  environment (``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n``: root's
  environment is readable by root only); git is given the URL without them, so they are
  also never written anywhere (``FETCH_HEAD``, a mirror's config). ssh and git URLs keep a
  user name; a password in them is dropped (ssh runs with ``BatchMode``: never used).
- **Only the checked address.** The private-address policy resolved the host once and
  approved those addresses (``RemotePin``); git must not resolve it again (a DNS answer can
  change between the two: rebinding). http(s): ``http.curloptResolve`` (git ≥ 2.37) fills
  curl's DNS cache with the checked addresses, so TLS and the Host header still name the
  host. ssh and git: the URL names the checked address, ssh checks the host key under the
  host's name (``HostKeyAlias``). No environment proxy then (it would resolve the name
  itself), as for bundle downloads.
- **No redirects** (``http.followRedirects=false``, set for every git command in
  ``source_git``): a redirect would lead git to a host nobody checked.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from shipyard.pipeline.remote_policy import RemotePin

_SCP_LIKE = re.compile(r"^(?P<user>[^@/:]+@)?(?P<host>\[[^\]]+\]|[^:/\[]+):(?P<path>.*)$")


@dataclass(frozen=True)
class RemoteAccess:
    """What git needs to reach one remote without leaking or re-resolving anything."""

    url: str  # for git's command line: no credentials; the checked address for ssh / git
    config: tuple[str, ...] = ()  # ``-c`` items (not secret)
    env: Mapping[str, str] = field(default_factory=dict)  # secret: never on argv
    ssh_host_alias: str | None = None  # the host name ssh checks the host key for


def _bracketed(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def _basic(userinfo: str) -> str:
    user, sep, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password) if sep else ''}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def remote_access(url: str, pin: RemotePin | None = None) -> RemoteAccess:
    """``url`` (credentials included, as stored) split into what git may see on its command
    line and what it must get otherwise; ``pin``: the addresses the policy approved."""
    if "://" not in url:
        return _scp_like(url, pin)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file" or not parts.hostname:
        return RemoteAccess(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    config: list[str] = []
    env: dict[str, str] = {}
    alias: str | None = None
    if scheme in ("http", "https"):
        if userinfo:
            env = {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: {_basic(userinfo)}",
            }
        userinfo = ""
        if pin is not None:
            addresses = ",".join(_bracketed(a) for a in pin.addresses)
            config.append(f"http.curloptResolve={pin.host}:{pin.port}:{addresses}")
            # An environment proxy would resolve the name itself (and reach what it likes):
            # an empty value makes curl ignore http(s)_proxy.
            config.append("http.proxy=")
    else:
        userinfo = userinfo.partition(":")[0]
        if pin is not None:
            hostport = _bracketed(pin.addresses[0]) + (f":{parts.port}" if parts.port else "")
            alias = pin.host if pin.port == 22 else f"[{pin.host}]:{pin.port}"
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    return RemoteAccess(urlunsplit(parts._replace(netloc=netloc)), tuple(config), env, alias)


def _scp_like(url: str, pin: RemotePin | None) -> RemoteAccess:
    """``[user@]host:path`` (ssh): the host becomes the checked address."""
    match = _SCP_LIKE.match(url)
    if match is None or pin is None:
        return RemoteAccess(url)
    user = match["user"] or ""
    return RemoteAccess(
        f"{user}{_bracketed(pin.addresses[0])}:{match['path']}", ssh_host_alias=pin.host
    )
