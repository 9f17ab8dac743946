"""Unit tests of the Conda repodata helpers and CRAN's DCF handling (no processes)."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conda_fixtures import package  # noqa: E402

from depot.registry import conda_repodata as cr  # noqa: E402
from depot.registry import cran_index as ci  # noqa: E402
from depot.registry.conda import Conda  # noqa: E402
from depot.registry.cran import Cran  # noqa: E402


def doc(packages: dict, conda: dict | None = None, indent: int | None = None) -> bytes:
    return json.dumps({"info": {"subdir": "noarch"}, "packages": packages, "packages.conda": conda or {},
                       "removed": [], "repodata_version": 1}, indent=indent).encode()


A = doc({"x-1-0.tar.bz2": {"name": "x", "sha256": "A", "depends": ["a {b}", "q]}"]}})
B = doc({"y-1-0.tar.bz2": {"name": "y"}, "x-1-0.tar.bz2": {"name": "x", "sha256": "B"},
         "z-1-0.tar.bz2": {"name": "z", "note": "\"packages.conda\": {"}}, {"w-1-0.conda": {"name": "w"}}, indent=1)


@pytest.mark.parametrize("small", [1 << 20, 10])     # parsed members, and big ones spliced byte-wise
@pytest.mark.parametrize("order", ["AB", "BA", "ABA", "BAB", "AAB"])
def test_splice_keeps_every_file_once_and_the_first_member_wins(small: int, order: str) -> None:
    parts = [{"A": A, "B": B}[c] for c in order]
    out = b"".join(bytes(p) for p in cr.splice_repodata("noarch", parts, small))
    merged = json.loads(out)
    assert merged["packages"]["x-1-0.tar.bz2"]["sha256"] == order[0]
    assert set(merged["packages"]) == {"x-1-0.tar.bz2", "y-1-0.tar.bz2", "z-1-0.tar.bz2"}
    assert set(merged["packages.conda"]) == {"w-1-0.conda"} and out.count(b'"x-1-0.tar.bz2"') == 1


def test_find_record_reads_one_entry() -> None:
    assert cr.find_record(B, "x-1-0.tar.bz2") == {"name": "x", "sha256": "B"}
    assert cr.find_record(B, "nope-1-0.conda") is None


@pytest.mark.parametrize("ext", ["conda", "tar.bz2"])
def test_read_index_of_both_archive_kinds(ext: str) -> None:
    path, data = package("dpt-u", "1.2", ext, depends=["python"])
    index = cr.read_index(path, data)
    assert (index["name"], index["version"], index["depends"]) == ("dpt-u", "1.2", ["python"])
    with pytest.raises(cr.PackageError):
        cr.read_index(path.replace("dpt-u-", "dpt-v-"), data)


def test_conda_policy_hooks_list_and_hide_versions() -> None:
    body = doc({"x-1-0.tar.bz2": {"name": "x", "version": "1", "timestamp": 1_700_000_000_000}},
               {"x-2-0.conda": {"name": "x", "version": "2", "timestamp": 1_700_000_000}})
    fmt = Conda()
    versions = fmt.metadata_versions("noarch/repodata.json", body)
    assert {(v.package, v.version, v.published) for v in versions} == {("x", "1", 1_700_000_000.0),
                                                                        ("x", "2", 1_700_000_000.0)}
    kept = json.loads(fmt.filter_metadata("noarch/repodata.json", body, frozenset({("x", "2")})))
    assert list(kept["packages"]) == ["x-1-0.tar.bz2"] and kept["packages.conda"] == {}
    assert fmt.package_of("linux-64/x-2.0-py_0.conda") == ("x", "2.0")
    assert fmt.metadata_versions("noarch/x-1-0.conda", b"") is None


def test_dcf_parse_render_merge_and_cran_policy_hooks() -> None:
    text = "Package: a\nVersion: 1.0-2\nDepends: R (>= 3.5),\n    methods\n\nPackage: b\nVersion: 0.1\n"
    stanzas = ci.parse_dcf(text)
    assert stanzas[0]["Depends"] == "R (>= 3.5),\n    methods" and stanzas[1]["Package"] == "b"
    merged = ci.parse_dcf(ci.merge([ci.render(stanzas[:1]), b"Package: a\nVersion: 9\n\nPackage: c\nVersion: 1\n"]).decode())
    assert [(s["Package"], s["Version"]) for s in merged] == [("a", "1.0-2"), ("c", "1")]
    assert ci.version_key("1.10-1") > ci.version_key("1.9.3")
    fmt = Cran()
    body = gzip.compress(text.encode())
    assert [(v.package, v.version) for v in fmt.metadata_versions("src/contrib/PACKAGES.gz", body)] == [
        ("a", "1.0-2"), ("b", "0.1")]
    kept = gzip.decompress(fmt.filter_metadata("src/contrib/PACKAGES.gz", body, frozenset({("a", "1.0-2")})))
    assert [s["Package"] for s in ci.parse_dcf(kept.decode())] == ["b"]
    assert fmt.package_of("src/contrib/Archive/a/a_1.0-2.tar.gz") == ("a", "1.0-2")
    assert fmt.package_of("bin/windows/contrib/4.2/a_1.0.zip") == ("a", "1.0")


def test_md5_is_checked_only_when_expected_explicitly() -> None:
    import base64
    import hashlib

    from depot.cache.integrity import IntegrityCheck, IntegrityMismatch
    assert IntegrityCheck.parse("md5-" + base64.b64encode(hashlib.md5(b"x").digest()).decode()) is None   # not SRI
    check = IntegrityCheck.parse(None, hashlib.md5(b"body").hexdigest())
    assert check is not None
    check.update(b"body")
    check.verify()
    wrong = IntegrityCheck.parse(None, hashlib.md5(b"other").hexdigest())
    assert wrong is not None
    wrong.update(b"body")
    with pytest.raises(IntegrityMismatch):
        wrong.verify()
