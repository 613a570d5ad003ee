"""Header bombs in bundle and upload archives (hostile-tenant review). tarfile reads a GNU
long name or a pax header whole into memory, parses pax records with regexes that backtrack
quadratically on digit runs (CVE-2024-6232, unfixed in Debian 12's Python 3.11; ``re`` holds
the GIL, so one header froze the process), follows extension-header chains by recursion, and
``ZipFile`` reads a whole central directory before any entry is checked. Each is refused
with a clear ``SourceError`` (the build's FAILURE message) before tarfile or zipfile sees it;
honest archives (pax names, long names within PATH_MAX, xattrs) still extract."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from shipyard.pipeline import source_bundle
from shipyard.pipeline.errors import SourceError
from shipyard.pipeline.source_bundle import extract_archive

END = b"\0" * 1024


def member(name: str = "Dockerfile", data: bytes = b"FROM scratch\n") -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    pad = b"\0" * (-len(data) % 512)
    return info.tobuf(tarfile.USTAR_FORMAT) + data + pad


def pax_header(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    return tarfile.TarInfo._create_pax_generic_header(records, kind, "utf-8")  # type: ignore[attr-defined,no-any-return]


def archive(tmp_path: Path, raw: bytes, compress: bool = True) -> Path:
    path = tmp_path / ("bomb.tar.gz" if compress else "bomb.tar")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def refused(tmp_path: Path, path: Path, words: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        extract_archive(path, tmp_path / "out", max_bytes=64 * 1024 * 1024)
    assert words in str(caught.value), caught.value
    assert time.monotonic() - started < 5
    assert not any((tmp_path / "out").iterdir())  # nothing written


def test_pax_header_over_the_cap(tmp_path: Path) -> None:
    raw = pax_header({"comment": "x" * (source_bundle.MAX_PAX_HEADER_BYTES + 10)}) + member()
    refused(tmp_path, archive(tmp_path, raw + END), "pax header of")


def test_declared_huge_pax_header_is_not_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 8 * 1024**3  # 8 GiB that tarfile would read into memory
    raw = info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 4096
    refused(tmp_path, archive(tmp_path, raw, compress=False), "pax header of")


def test_quadratic_digit_run_cve_2024_6232(tmp_path: Path) -> None:
    # 60 000 digits: tarfile's hdrcharset regex took ~7 s here (the GIL held throughout).
    raw = pax_header({"comment": "1" * 60_000}) + member()
    refused(tmp_path, archive(tmp_path, raw + END), "run of digits")


def test_malformed_pax_record(tmp_path: Path) -> None:
    body = b"99999 path=x\n"
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(body)
    raw = info.tobuf(tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % 512) + member()
    refused(tmp_path, archive(tmp_path, raw + END), "malformed pax header")


def test_gnu_long_name_over_path_max(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a/" * 4000 + "Dockerfile")
        tar.addfile(info, io.BytesIO(b""))
    refused(tmp_path, archive(tmp_path, out.getvalue()), "name of")


def test_pax_path_over_path_max(tmp_path: Path) -> None:
    raw = pax_header({"path": "d/" * 3000 + "f"}) + member()
    refused(tmp_path, archive(tmp_path, raw + END), "path longer than")


def test_chain_of_extension_headers(tmp_path: Path) -> None:
    chain = b"".join(pax_header({"comment": f"{i}"}) for i in range(2000))
    refused(tmp_path, archive(tmp_path, chain + member() + END), "in a row")


def test_total_extension_header_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_bundle, "MAX_HEADER_BYTES", 100_000)
    raw = b"".join(pax_header({"comment": "y" * 30_000}) + member(f"f{i}") for i in range(10))
    refused(tmp_path, archive(tmp_path, raw + END), "bytes of extended headers")


def test_sparse_members_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 0
    raw = info.tobuf(tarfile.GNU_FORMAT)
    refused(tmp_path, archive(tmp_path, raw + END), "sparse")
    raw = pax_header({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}) + member()
    refused(tmp_path, archive(tmp_path, raw + END), "sparse")


def test_entry_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_bundle, "MAX_ENTRIES", 5)
    raw = b"".join(member(f"f{i}") for i in range(6))
    refused(tmp_path, archive(tmp_path, raw + END), "more than 5 entries")


def test_zip_directory_checked_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(6):
            zf.writestr(f"f{i}", b"x")
    monkeypatch.setattr(source_bundle, "MAX_ENTRIES", 5)

    def never(*_: object, **__: object) -> None:
        raise AssertionError("ZipFile read the directory before the end record was checked")

    monkeypatch.setattr(source_bundle.zipfile, "ZipFile", never)
    refused(tmp_path, path, "more than 5 entries")
    monkeypatch.setattr(source_bundle, "MAX_ENTRIES", 1000)
    monkeypatch.setattr(source_bundle, "MAX_ZIP_DIRECTORY_BYTES", 100)
    refused(tmp_path, path, "zip directory is larger")


def test_zip_name_over_path_max(tmp_path: Path) -> None:
    path = tmp_path / "long.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("n" * 5000, b"x")
    refused(tmp_path, path, "path longer than")


def test_honest_pax_archives_still_extract(tmp_path: Path) -> None:
    out = io.BytesIO()
    long_name = "src/" + "deep/" * 60 + "main.py"  # ~300 bytes: a pax path record
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("Dockerfile", b"FROM scratch\n"), (long_name, b"print(1)\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000.5  # a fractional mtime: a pax record too
            info.pax_headers = {"SCHILY.xattr.user.note": "ok", "comment": "année 2024"}
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "ok.tar.gz"
    path.write_bytes(out.getvalue())
    dest = tmp_path / "out"
    assert extract_archive(path, dest, max_bytes=1024 * 1024) == 2
    assert (dest / long_name).read_bytes() == b"print(1)\n"
    # And GNU long names within PATH_MAX.
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("g/" * 100 + "f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"z"))
    path = tmp_path / "gnu.tar"
    path.write_bytes(gnu.getvalue())
    assert extract_archive(path, tmp_path / "out2", max_bytes=1024 * 1024) == 1
