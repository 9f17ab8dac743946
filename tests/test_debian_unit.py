"""debian_index and debian_proxy helpers without a server."""
from __future__ import annotations

import gzip
import hashlib

import pytest

from deb_fixtures import build_deb
from depot.registry import debian_index as di
from depot.registry.debian_proxy import ReleaseInfo, packages_indexes


def test_control_data_and_stanza(tmp_path) -> None:
    data = build_deb(tmp_path, "libdpt-x", "1:2.0-1", arch="amd64").read_bytes()
    info = di.read_deb(data)
    assert (info.package, info.version, info.architecture, info.source) == ("libdpt-x", "1:2.0-1", "amd64", "libdpt-x")
    path = di.pool_path("main", info.source, "libdpt-x_2.0-1_amd64.deb")
    assert path == "pool/main/libd/libdpt-x/libdpt-x_2.0-1_amd64.deb"
    stanza = di.stanza(info.control, path, di.file_hashes(data), len(data))
    assert di.pool_hashes(di.packages_text([stanza])) == {path: hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("body", [b"", b"!<arch>\n", b"not an archive", b"!<arch>\ndebian-binary   0 0 0 100644 4 `\n2.0\n"])
def test_bad_packages(body: bytes) -> None:
    with pytest.raises(di.BadPackage):
        di.read_deb(body)


def test_release_round_trip_and_merge() -> None:
    a = di.packages_text(["Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\nSHA256: " + "1" * 64])
    b = di.packages_text(["Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/other.deb\nSHA256: " + "2" * 64,
                          "Package: b\nVersion: 1\nArchitecture: all\nFilename: pool/b.deb\nSHA256: " + "3" * 64])
    merged = di.merge_packages([a, b])
    assert di.pool_hashes(merged) == {"pool/a.deb": "1" * 64, "pool/b.deb": "3" * 64}   # first member wins
    files = {"main/binary-all/Packages": merged, "main/binary-all/Packages.gz": gzip.compress(merged, mtime=0)}
    release = di.release_text("s", files, ["main"], ["all", "amd64"], 0, "depot")
    entries, by_hash, parsed = di.parse_release(release)
    assert by_hash and di.suite_components(parsed) == (["main"], ["all", "amd64"])
    assert {n: (e.sha256, e.size) for n, e in entries.items()} == \
        {n: (hashlib.sha256(b).hexdigest(), len(b)) for n, b in files.items()}


def test_one_packages_variant_per_directory_best_compression_first() -> None:
    names = ["main/binary-amd64/Packages", "main/binary-amd64/Packages.gz", "main/binary-amd64/Packages.xz",
             "main/binary-all/Packages", "main/binary-all/Packages.gz", "main/i18n/Translation-en.xz"]
    info = ReleaseInfo({n: di.ReleaseEntry(n, "0" * 64, 1) for n in names}, False, {}, [], [], "")
    assert packages_indexes(info) == ["main/binary-all/Packages.gz", "main/binary-amd64/Packages.xz"]
