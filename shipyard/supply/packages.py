"""The packages an image holds, read from its tree (``supply.rootfs``): the dpkg and apk
databases, Python distributions (``*.dist-info/METADATA``) and npm packages
(``node_modules/<name>/package.json``, scoped ones too). Parsing only: nothing runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.parser import HeaderParser

from shipyard.supply.rootfs import ImageTree, read_file

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d"  # distroless images: one file per package
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
MAX_DATABASE_BYTES = 64 * 1024 * 1024
MAX_METADATA_BYTES = 1024 * 1024
MAX_PACKAGES = 50_000


@dataclass(frozen=True, order=True)
class Package:
    kind: str  # "deb" | "apk" | "pypi" | "npm": the package URL type
    name: str
    version: str
    path: str  # where it was found in the image, absolute
    arch: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class Distro:
    id: str | None = None  # os-release ID: debian, ubuntu, alpine, …
    version: str | None = None  # VERSION_ID


def _text(tree: ImageTree, path: str, limit: int) -> str | None:
    found = tree.lookup(path)
    data = read_file(found, limit) if found is not None else None
    return data.decode("utf-8", "replace") if data is not None else None


def distro(tree: ImageTree) -> Distro:
    for path in OS_RELEASE:
        text = _text(tree, path, 64 * 1024)
        if text is None:
            continue
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        return Distro(fields.get("ID"), fields.get("VERSION_ID"))
    return Distro()


def _stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg's status file): continuation lines folded away."""
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                found.append(current)
            current, key = {}, ""
        elif line[0] in " \t":
            continue  # a continuation (descriptions, conffiles): not needed
        else:
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    if current:
        found.append(current)
    return found


def dpkg_packages(tree: ImageTree) -> list[Package]:
    texts: list[tuple[str, str]] = []
    if (status := _text(tree, DPKG_STATUS, MAX_DATABASE_BYTES)) is not None:
        texts.append((f"/{DPKG_STATUS}", status))
    for name in sorted(tree.directory(DPKG_STATUS_D) or {}):
        if (text := _text(tree, f"{DPKG_STATUS_D}/{name}", MAX_METADATA_BYTES)) is not None:
            texts.append((f"/{DPKG_STATUS_D}/{name}", text))
    found: list[Package] = []
    for where, text in texts:
        for stanza in _stanzas(text):
            state = stanza.get("Status", "install ok installed").split()
            if not stanza.get("Package") or not stanza.get("Version"):
                continue
            if state[-1:] != ["installed"]:
                continue  # removed, config-files only, half-installed
            found.append(Package("deb", stanza["Package"], stanza["Version"], where,
                                 stanza.get("Architecture")))  # fmt: skip
    return found


def apk_packages(tree: ImageTree) -> list[Package]:
    text = _text(tree, APK_INSTALLED, MAX_DATABASE_BYTES)
    if text is None:
        return []
    found: list[Package] = []
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields.get("P") and fields.get("V"):
                found.append(Package("apk", fields["P"], fields["V"], f"/{APK_INSTALLED}",
                                     fields.get("A"), fields.get("L")))  # fmt: skip
            fields = {}
        elif len(line) > 2 and line[1] == ":":
            fields.setdefault(line[0], line[2:].strip())
    return found


def _python(tree: ImageTree, path: str) -> Package | None:
    text = _text(tree, f"{path}/METADATA", MAX_METADATA_BYTES)
    if text is None:
        return None
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    license_ = headers.get("License-Expression") or headers.get("License")
    short = license_ if license_ and len(license_) <= 100 and "\n" not in license_ else None
    return Package("pypi", str(name).strip(), str(version).strip(), f"/{path}", None, short)


def _npm(tree: ImageTree, path: str) -> Package | None:
    text = _text(tree, f"{path}/package.json", MAX_METADATA_BYTES)
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    license_ = data.get("license")
    return Package("npm", name, version, f"/{path}/package.json", None,
                   license_ if isinstance(license_, str) else None)  # fmt: skip


def language_packages(tree: ImageTree) -> list[Package]:
    found: list[Package] = []
    for path, node in tree.walk():
        if len(found) >= MAX_PACKAGES:
            break
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".dist-info") and "METADATA" in node:
            if (package := _python(tree, path)) is not None:
                found.append(package)
        elif name == "node_modules":
            for child, sub in sorted(node.items()):
                if not isinstance(sub, dict) or child.startswith("."):
                    continue
                if child.startswith("@"):
                    members = [
                        f"{child}/{n}" for n, s in sorted(sub.items()) if isinstance(s, dict)
                    ]
                else:
                    members = [child]
                for member in members:
                    if (package := _npm(tree, f"{path}/{member}")) is not None:
                        found.append(package)
    return found


def inventory(tree: ImageTree) -> list[Package]:
    """Every package found, OS packages first, each (kind, name, version, path) once."""
    packages = [*dpkg_packages(tree), *apk_packages(tree), *language_packages(tree)]
    return sorted(set(packages[:MAX_PACKAGES]), key=lambda p: (p.kind, p.name, p.version, p.path))
