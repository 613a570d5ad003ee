"""Packages read from an image's layers (fake overlay diff dirs here; real builds in
tests/e2e/test_supply_chain.py), and the CycloneDX document made of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shipyard.supply.packages import distro, inventory
from shipyard.supply.rootfs import ImageTree
from shipyard.supply.sbom import cyclonedx


def write(layer: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = layer / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


STATUS = "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n"


def test_layers_merge_with_whiteouts_and_links_stay_inside(tmp_path: Path) -> None:
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    write(lower, {
        "usr/lib/apk/db/installed": "P:musl\nV:1.2\nA:x86_64\n\n",
        "etc/os-release": 'ID=alpine\nVERSION_ID="3.19"\n',
        "app/node_modules/gone/package.json": '{"name": "gone", "version": "1"}',
        "srv/x.dist-info/METADATA": "Name: x\nVersion: 1\n",
    })  # fmt: skip
    (lower / "lib").symlink_to("usr/lib")  # usrmerge: /lib/apk/db/installed is found
    write(upper, {"app/node_modules/.wh.gone": "", "srv/.wh..wh..opq": "",
                  "srv/y.dist-info/METADATA": "Name: y\nVersion: 2\n"})  # fmt: skip
    # A link to a host file: resolved inside the image, where it is nothing.
    (upper / "var/lib/dpkg").mkdir(parents=True)
    (upper / "var/lib/dpkg/status").symlink_to("/etc/hostname")
    tree = ImageTree([lower, upper])
    found = {(p.kind, p.name, p.version) for p in inventory(tree)}
    assert found == {("apk", "musl", "1.2"), ("pypi", "y", "2")}
    assert distro(tree).id == "alpine"


def test_sbom_lists_os_python_and_npm_packages_with_purls(tmp_path: Path) -> None:
    layer = tmp_path / "l"
    write(layer, {
        "var/lib/dpkg/status": STATUS + "Package: b\nStatus: deinstall ok config-files\nVersion: 2\n",
        "etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "usr/lib/python3/dist-packages/Foo_Bar-3.0.dist-info/METADATA": "Name: Foo_Bar\nVersion: 3.0\n",
        "app/node_modules/@s/p/package.json": '{"name": "@s/p", "version": "0.1.0"}',
        "app/node_modules/q/package.json": '{"name": "q", "version": "2.0.0", "license": "MIT"}',
    })  # fmt: skip
    os.mkfifo(layer / "fifo")  # not a file: skipped
    tree = ImageTree([layer])
    document = json.loads(
        cyclonedx(inventory(tree), distro(tree), image="h/p/s", digest="sha256:ab", created=0)
    )
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.5"
    assert document["metadata"]["component"]["name"] == "h/p/s"
    purls = {c["purl"] for c in document["components"]}
    assert purls == {
        "pkg:deb/debian/a@1?arch=amd64&distro=debian-12",
        "pkg:pypi/foo-bar@3.0",
        "pkg:npm/%40s/p@0.1.0",
        "pkg:npm/q@2.0.0",
    }
    again = cyclonedx(inventory(tree), distro(tree), image="h/p/s", digest="sha256:ab", created=0)
    assert json.loads(again) == document  # deterministic: same image, same SBOM
