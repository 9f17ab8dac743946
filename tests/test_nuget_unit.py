"""NuGet pure functions: version normalisation and order, nuspec reading, multipart bodies,
upstream service-index parsing and URL rewriting, warm plans."""
from __future__ import annotations

import gzip
import json

import pytest

from depot.cache.api import BASE_PLACEHOLDER
from depot.registry import nuget_meta as nm
from depot.registry import nuget_upstream as nu
from depot.registry.conan import Conan, merge_revisions
from depot.registry.nuget import NuGet


@pytest.mark.parametrize("raw, normal", [("1.0", "1.0.0"), ("1.0.0.0", "1.0.0"), ("01.02.3", "1.2.3"),
                                         ("1.0.0.4", "1.0.0.4"), ("1.0.0+build.5", "1.0.0"),
                                         ("1.0.0-Beta.1+sha", "1.0.0-Beta.1"), ("2", "2.0.0")])
def test_versions_are_normalised(raw: str, normal: str) -> None:
    assert nm.normalize(raw) == normal


@pytest.mark.parametrize("bad", ["", "v1.0", "1.0.0.0.0", "1..0", "1.0-", "1.0.0-beta..1", "../1.0"])
def test_invalid_versions_are_refused(bad: str) -> None:
    with pytest.raises(nm.NuGetError):
        nm.normalize(bad)


def test_semver2_order() -> None:
    versions = ["1.0.0", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-alpha", "0.9.9", "1.0.0.1", "1.0.0-beta", "10.0.0"]
    assert nm.sort_versions(versions) == ["0.9.9", "1.0.0-alpha", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
                                          "1.0.0", "1.0.0.1", "10.0.0"]


def test_nuspec_dependencies_by_framework_and_entities_refused() -> None:
    entry = nm.parse_nuspec(b'<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd"><metadata>'
                            b'<id>Acme.A</id><version>1.0</version><description>d</description><dependencies>'
                            b'<group targetFramework="net6.0"><dependency id="Acme.B" version="[1.0,2.0)"/></group>'
                            b'<group/></dependencies></metadata></package>')
    assert entry["version"] == "1.0.0" and entry["dependencyGroups"] == [
        {"targetFramework": "net6.0", "dependencies": [{"id": "Acme.B", "range": "[1.0,2.0)"}]},
        {"dependencies": []}]
    with pytest.raises(nm.NuGetError):
        nm.parse_nuspec(b'<!DOCTYPE p [<!ENTITY a "x">]><package><metadata><id>&a;</id></metadata></package>')


def test_multipart_bodies_with_and_without_the_closing_crlf() -> None:
    for tail in (b"\r\n--XyZ--\r\n", b"--XyZ--"):
        body = b'--XyZ\r\nContent-Disposition: form-data; name="package"\r\n\r\nPK-bytes' + tail
        assert nm.multipart_package(body, "multipart/form-data; boundary=XyZ") == b"PK-bytes"
    assert nm.multipart_package(b"raw", "application/octet-stream") == b"raw"


def test_upstream_urls_rewritten_to_depot_and_catalog_pointed_at_depot() -> None:
    res = nu.parse_service_index(json.dumps({"resources": [
        {"@id": "https://up/flat/", "@type": "PackageBaseAddress/3.0.0"},
        {"@id": "https://up/reg-gz/", "@type": "RegistrationsBaseUrl/3.6.0"},
        {"@id": "https://up/reg", "@type": "RegistrationsBaseUrl"},
        {"@id": "https://up/query", "@type": "SearchQueryService"}]}).encode())
    # the SemVer 2 hive (3.6.0, gzip-encoded on nuget.org) is preferred to the SemVer 1 one
    assert res.registration == "https://up/reg-gz/" and res.flat == "https://up/flat/"
    doc = {"@id": "https://up/reg/a/index.json", "items": [{"@id": "https://up/reg-gz/a/page/1/2.json", "items": [
        {"catalogEntry": {"@id": "https://catalog/x.json", "id": "A", "version": "1.0.0"},
         "packageContent": "https://up/flat/a/1.0.0/a.1.0.0.nupkg", "other": "https://elsewhere/x"}]}]}
    out = json.loads(nu.rewriter(res)(json.dumps(doc).encode()))
    assert json.loads(nu.rewriter(res)(gzip.compress(json.dumps(doc).encode()))) == out     # decoded, same
    leaf = out["items"][0]["items"][0]
    assert out["@id"] == f"{BASE_PLACEHOLDER}/v3/registration/a/index.json"
    assert out["items"][0]["@id"] == f"{BASE_PLACEHOLDER}/v3/registration/a/page/1/2.json"
    assert leaf["packageContent"] == f"{BASE_PLACEHOLDER}/v3-flatcontainer/a/1.0.0/a.1.0.0.nupkg"
    assert leaf["catalogEntry"]["@id"] == f"{BASE_PLACEHOLDER}/v3/catalog/a/1.0.0.json"
    with pytest.raises(nm.NuGetError):
        nu.parse_service_index(b'{"resources": []}')


def test_warm_plans_from_lockfiles() -> None:
    lock = {"version": 1, "dependencies": {"net6.0": {
        "Acme.A": {"type": "Direct", "resolved": "1.0.0"}, "Acme.B": {"type": "Transitive", "resolved": "2.0"},
        "MyProject": {"type": "Project"}}}}
    jobs, _ = NuGet.warm_plan("/nuget", "packages.lock.json", json.dumps(lock))
    assert [j.url for j in jobs] == ["/nuget/v3-flatcontainer/acme.a/index.json",
                                      "/nuget/v3/registration/acme.a/index.json",
                                      "/nuget/v3-flatcontainer/acme.a/1.0.0/acme.a.1.0.0.nupkg",
                                      "/nuget/v3-flatcontainer/acme.b/index.json",
                                      "/nuget/v3/registration/acme.b/index.json",
                                      "/nuget/v3-flatcontainer/acme.b/2.0.0/acme.b.2.0.0.nupkg"]
    conan_lock = {"version": "0.5", "requires": ["zlib/1.3.1#f52e03ae3d251dec704634230cd806a2%1708593606.497"]}
    jobs, notes = Conan.warm_plan("/conan", "conan.lock", json.dumps(conan_lock))
    assert [j.url for j in jobs] == ["/conan/v2/conans/zlib/1.3.1/_/_/revisions",
                                      "/conan/v2/conans/zlib/1.3.1/_/_/revisions/f52e03ae3d251dec704634230cd806a2/files"]
    assert jobs[1].then is not None and [j.url for j in jobs[1].then(b'{"files": {"conanfile.py": {}}}', "http://d/x")] \
        == ["http://d/x/conanfile.py"]


def test_conan_group_revisions_first_member_wins_newest_first() -> None:
    merged = merge_revisions([[{"revision": "b", "time": "2024-01-02T00:00:00+00:00"}],
                              [{"revision": "b", "time": "2020-01-01T00:00:00+00:00"},
                               {"revision": "a", "time": "2024-01-03T00:00:00+00:00"}]])
    assert merged == [{"revision": "a", "time": "2024-01-03T00:00:00+00:00"},
                      {"revision": "b", "time": "2024-01-02T00:00:00+00:00"}]
