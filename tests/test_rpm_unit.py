"""rpm_meta without a server: header reading, repodata writing and reading it back."""
from __future__ import annotations

import gzip
import hashlib
import lzma

import pytest
import zstandard

from depot.registry import rpm_meta as rm
from rpm_fixtures import build_rpm


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict]:
    data = build_rpm(tmp_path_factory.mktemp("rpmunit"), "dpt-unit", "2.5").read_bytes()
    meta = rm.read_rpm(data)
    return data, {**meta, "sha256": hashlib.sha256(data).hexdigest(), "href": "Packages/dpt-unit-2.5-1.noarch.rpm",
                  "size": len(data), "time": 1700000000}


def test_header_fields(package: tuple[bytes, dict]) -> None:
    data, p = package
    assert (p["name"], p["epoch"], p["version"], p["release"], p["arch"]) == ("dpt-unit", "0", "2.5", "1", "noarch")
    assert p["license"] == "MIT" and p["sourcerpm"] == "dpt-unit-2.5-1.src.rpm"
    assert 0 < p["header_start"] < p["header_end"] < len(data)
    assert ["/usr/share/dpt-unit/payload.txt", ""] in p["files"]
    assert ["dpt-unit", 8, "2.5-1"] in p["provides"]
    assert not any(name.startswith("rpmlib(") for name, _, _ in p["requires"])


def test_repodata_round_trip(package: tuple[bytes, dict]) -> None:
    _, p = package
    files = rm.render_repodata([p], 1700000000)
    entries = rm.repomd_entries(files["repodata/repomd.xml"])
    assert {e["type"] for e in entries.values()} == {"primary", "filelists", "other"}
    for href, entry in entries.items():
        assert hashlib.sha256(files[href]).hexdigest() == entry["checksum"] and href in files
    primary = next(h for h, e in entries.items() if e["type"] == "primary")
    filelists = next(h for h, e in entries.items() if e["type"] == "filelists")
    back = list(rm.iter_primary(gzip.decompress(files[primary])))
    rm.merge_filelists(back, gzip.decompress(files[filelists]))
    assert len(back) == 1
    for key in ("name", "epoch", "version", "release", "arch", "sha256", "href", "size", "header_start",
                "header_end", "license", "sourcerpm", "provides", "files"):
        assert back[0][key] == p[key], key
    assert rm.render_repodata(back, 1700000000) == files          # what a group re-renders is identical
    assert rm.package_checksums(gzip.decompress(files[primary])) == {p["href"]: ("sha256", p["sha256"])}


@pytest.mark.parametrize("name,pack", [("x.xml.gz", lambda b: gzip.compress(b)), ("x.xml.xz", lzma.compress),
                                       ("x.xml.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
                                       ("x.xml", lambda b: b)])
def test_decompress_by_name(name: str, pack) -> None:
    assert rm.decompress(name, pack(b"<metadata/>")) == b"<metadata/>"


@pytest.mark.parametrize("body", [b"", b"hello", b"\xed\xab\xee\xdb" + b"\x00" * 100, b"\xed\xab\xee\xdb" + b"\xff" * 5000])
def test_bad_packages_raise_bad_rpm(body: bytes) -> None:
    with pytest.raises(rm.BadRpm):
        rm.read_rpm(body)
