"""Maven format pieces without processes: version order, metadata merge, policy hooks, warm plan."""
from __future__ import annotations

import pytest

from depot.registry.base import FormatError
from depot.registry.maven import Maven, parse_coordinate
from depot.registry.maven_meta import merge_metadata, parse_metadata, pom_coordinates, render_metadata
from depot.registry.maven_paths import maven_file, package_of_path, parse_checksum
from depot.registry.maven_version import sort_versions


def meta(versions: list[str], stamp: str = "20240101000000") -> bytes:
    listed = "".join(f"<version>{v}</version>" for v in versions)
    return (f"<metadata><groupId>org.acme</groupId><artifactId>lib</artifactId><versioning>"
            f"<versions>{listed}</versions><lastUpdated>{stamp}</lastUpdated></versioning></metadata>").encode()


def test_versions_sort_like_maven():
    assert sort_versions(["1.10", "1.2", "1.0", "1.0-SNAPSHOT", "1.0-rc1", "1.0-alpha-2", "1.0-beta", "1.0.1",
                          "1.0-sp1", "2"]) == \
        ["1.0-alpha-2", "1.0-beta", "1.0-rc1", "1.0-SNAPSHOT", "1.0", "1.0-sp1", "1.0.1", "1.2", "1.10", "2"]


def test_merge_unions_versions_and_recomputes_latest_release():
    merged = merge_metadata([parse_metadata(meta(["1.0", "2.0-SNAPSHOT"], "20240101000000")),
                             parse_metadata(meta(["1.5", "1.0"], "20250101000000"))])
    assert merged.versions == ["1.0", "1.5", "2.0-SNAPSHOT"]
    assert (merged.latest, merged.release, merged.last_updated) == ("2.0-SNAPSHOT", "1.5", "20250101000000")
    again = parse_metadata(render_metadata(merged))
    assert again.versions == merged.versions and again.release == "1.5"


def test_malformed_and_entity_documents_are_400():
    for body in (b"<metadata>", b"<?xml version='1.0'?><!DOCTYPE m [<!ENTITY e 'x'>]><metadata>&e;</metadata>",
                 b"<other/>"):
        with pytest.raises(FormatError) as caught:
            parse_metadata(body)
        assert caught.value.status == 400


def test_pom_coordinates_inherit_from_parent():
    pom = (b"<project xmlns='http://maven.apache.org/POM/4.0.0'><parent><groupId>org.acme</groupId>"
           b"<artifactId>parent</artifactId><version>3</version></parent><artifactId>lib</artifactId></project>")
    assert pom_coordinates(pom) == ("org.acme", "lib", "3")


def test_policy_hooks_list_and_hide_versions():
    fmt = Maven()
    body = meta(["1.0", "1.1", "2.0"], "20240301120000")
    found = fmt.metadata_versions("org/acme/lib/maven-metadata.xml", body)
    assert [(v.package, v.version) for v in found] == [("org.acme:lib", "1.0"), ("org.acme:lib", "1.1"),
                                                       ("org.acme:lib", "2.0")]
    assert found[-1].published == 1709294400.0 and found[0].published is None
    filtered = parse_metadata(fmt.filter_metadata("org/acme/lib/maven-metadata.xml", body,
                                                  frozenset({("org.acme:lib", "2.0")})))
    assert filtered.versions == ["1.0", "1.1"] and filtered.latest == "1.1" and filtered.release == "1.1"
    assert fmt.metadata_versions("org/acme/lib/1.0/lib-1.0.pom", b"") is None


def test_package_of_both_layouts():
    fmt = Maven()
    assert fmt.package_of("org/acme/lib/1.0/lib-1.0-sources.jar.sha1") == ("org.acme:lib", "1.0")
    assert fmt.package_of("org/acme/lib/1.0-SNAPSHOT/lib-1.0-20240101.120000-3.jar") == ("org.acme:lib",
                                                                                         "1.0-SNAPSHOT")
    assert fmt.package_of("org.acme/hello/1.0/jars/hello-1.0.jar") == ("org.acme:hello", "1.0")
    assert fmt.package_of("org/acme/lib/maven-metadata.xml") is None
    assert package_of_path("x.txt") is None


def test_filenames_and_checksums():
    assert maven_file("org/acme/lib/1.0/other-1.0.jar") is None
    assert maven_file("org/acme/lib/1.0/lib-1.0.tar.gz").extension == "tar.gz"
    assert parse_checksum(b"da39a3ee5e6b4b0d3255bfef95601890afd80709  lib-1.0.jar\n", "sha1") == \
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert parse_checksum(b"<html>", "sha1") is None


def test_warm_plan_reads_coordinates_and_dependency_list():
    text = """# coordinates
org.acme:lib:1.0
org.acme:bom:pom:2.0
[INFO]    org.slf4j:slf4j-api:jar:1.7.36:compile
[INFO]    org.acme:native:jar:linux:3.0:runtime -- module x
org.acme:snap:1.0-SNAPSHOT
not a line
"""
    jobs, notes = Maven.warm_plan("http://d/maven", "deps.txt", text)
    urls = [job.url for job in jobs]
    assert "http://d/maven/org/acme/lib/1.0/lib-1.0.jar" in urls and "http://d/maven/org/acme/lib/1.0/lib-1.0.pom" in urls
    assert "http://d/maven/org/acme/bom/2.0/bom-2.0.pom" in urls and not any("bom-2.0.jar" in u for u in urls)
    assert "http://d/maven/org/slf4j/slf4j-api/1.7.36/slf4j-api-1.7.36.jar.sha1" in urls
    assert "http://d/maven/org/acme/native/3.0/native-3.0-linux.jar" in urls
    assert any("SNAPSHOT" in note for note in notes) and not any("snap" in u for u in urls)
    assert parse_coordinate("a:b:c:d:e:f:g") is None


def test_snippets_name_the_repository_url():
    from depot.registry.repo import RepoConfig
    import dataclasses
    fields = {f.name for f in dataclasses.fields(RepoConfig)}
    repo = RepoConfig(**{k: v for k, v in {"name": "maven", "format": "maven", "type": "group"}.items() if k in fields})
    snippets = dict(Maven.snippets(repo, "http://h/maven", "h", True))
    assert "<url>http://h/maven/</url>" in snippets["~/.m2/settings.xml"]
    assert "http://h/maven/" in snippets["build.gradle"]


def test_proxy_kinds_metadata_and_snapshots_revalidate():
    from depot.cache.api import Kind
    from depot.registry.repo import RepoConfig
    import dataclasses
    fields = {f.name for f in dataclasses.fields(RepoConfig)}
    repo = RepoConfig(**{k: v for k, v in {"name": "m", "format": "maven", "type": "proxy"}.items() if k in fields})
    fmt = Maven()
    assert fmt.classify(repo, "org/acme/lib/maven-metadata.xml").kind is Kind.METADATA
    assert fmt.classify(repo, "org/acme/lib/1.0-SNAPSHOT/lib-1.0-20240101.120000-1.jar").kind is Kind.METADATA
    assert fmt.classify(repo, "org/acme/lib/1.0/lib-1.0.jar").kind is Kind.IMMUTABLE
