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


def test_sources_stanza_lists_the_dsc_and_source_hashes_read_it_back(tmp_path) -> None:
    from deb_fixtures import build_source
    from depot.registry import debian_sources as ds
    dsc, orig, debian_tar = build_source(tmp_path, "dpt-unit")
    data = dsc.read_bytes()
    info = ds.read_dsc(data, dsc.name, "pool/main/d/dpt-unit")
    assert (info.source, info.version) == ("dpt-unit", "1.0-1")
    assert info.needs == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (orig, debian_tar)}
    assert info.stanza.startswith("Package: dpt-unit\n") and "\nSource:" not in info.stanza
    listed = ds.source_hashes(info.stanza.encode() + b"\n\n" + info.stanza.replace("dpt-unit", "dpt-two").encode())
    assert listed[f"pool/main/d/dpt-unit/{dsc.name}"] == hashlib.sha256(data).hexdigest()
    assert listed[f"pool/main/d/dpt-unit/{orig.name}"] == info.needs[orig.name]
    assert len(listed) == 6
    with pytest.raises(di.BadPackage):
        ds.read_dsc(data, "other_1.0-1.dsc", "pool/main/o/other")


def test_translation_md5_is_apts_and_mirror_stanzas_are_left_out() -> None:
    from depot.registry import debian_suite as dsuite
    packages = (b"Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\nSize: 3\n\n"
                b"Package: b\nVersion: 1\nDescription: only short\nDescription-md5: 0123\n\n")
    text = dsuite.translation([packages, packages])
    md5 = hashlib.md5(b"short\n long line\n .\n more\n").hexdigest()
    assert text == f"Package: a\nDescription-md5: {md5}\nDescription-en: short\n long line\n .\n more\n\n".encode()


def test_contents_all_packages_in_every_architecture_and_merged() -> None:
    from depot.registry import debian_suite as dsuite
    found = dsuite.contents_by_index([("main", "all", "utils/a", ["usr/share/a/x"]),
                                      ("main", "amd64", "libs/b", ["usr/lib/b.so", "usr/share/a/x"])], {"amd64"})
    assert set(found) == {("main", "all"), ("main", "amd64")}
    rows = [line.split() for line in found[("main", "amd64")].decode().splitlines()]
    assert rows == [["usr/lib/b.so", "libs/b"], ["usr/share/a/x", "libs/b,utils/a"]]
    merged = dsuite.merge_contents([found[("main", "all")], b"usr/share/a/x   other/c\n"])
    assert merged.decode().split() == ["usr/share/a/x", "other/c,utils/a"]
