"""Eclipse p2 against real depot processes, by replaying the p2 client's requests.

No Eclipse/Tycho on this machine: the sequence is taken from Eclipse p2
(org.eclipse.equinox.p2.repository: AbstractRepositoryManager/LocationProperties read `p2.index` first and
then try the factories it lists in order (without one: content.xml.xz, content.jar, content.xml, then the
composite variants); CompositeMetadataRepository/CompositeArtifactRepository load every `<child location>`
relative to the composite; artifacts are downloaded through the `<mappings>` rules
(`${repoUrl}/plugins/${id}_${version}.jar`) and checked against `download.checksum.sha-256`).
"""
from __future__ import annotations

import hashlib
import io
import lzma
import re
import zipfile
from typing import Any
from urllib.parse import urljoin
from xml.etree import ElementTree

import pytest
import requests

from http_util import get, get_many
from longtail_fixtures import make_token, zip_bytes
from upstream import start_upstream

REPOS = {
    "p2-local": {"format": "p2", "type": "hosted", "anonymous_read": True},
    "p2": {"format": "p2", "type": "group", "members": ["p2-local"], "deploy_to": "p2-local", "anonymous_read": True},
}
DEFAULT_ORDER = {"content": ["content.xml.xz", "content.jar", "content.xml", "compositeContent.jar",
                             "compositeContent.xml"],
                 "artifacts": ["artifacts.xml.xz", "artifacts.jar", "artifacts.xml", "compositeArtifacts.jar",
                               "compositeArtifacts.xml"]}
MAPPINGS = ("<mappings size='3'><rule filter='(&amp; (classifier=osgi.bundle))' "
            "output='${repoUrl}/plugins/${id}_${version}.jar'/><rule filter='(&amp; (classifier=binary))' "
            "output='${repoUrl}/binary/${id}_${version}'/><rule filter='(&amp; (classifier=org.eclipse.update.feature))' "
            "output='${repoUrl}/features/${id}_${version}.jar'/></mappings>")


def bundle(ident: str, version: str) -> bytes:
    return zip_bytes({"META-INF/MANIFEST.MF": f"Bundle-SymbolicName: {ident}\nBundle-Version: {version}\n".encode()})


def site(version: str, mirrors: str | None = None, sha: str | None = None, extra: dict[str, bytes] | None = None
         ) -> dict[str, bytes]:
    """The files of a small update site: one bundle and one feature."""
    plugin, feature = bundle("dpt.bundle", version), bundle("dpt.feature", version)
    artifacts = []
    for classifier, ident, data in (("osgi.bundle", "dpt.bundle", plugin),
                                    ("org.eclipse.update.feature", "dpt.feature", feature)):
        artifacts.append(f"<artifact classifier='{classifier}' id='{ident}' version='{version}'><properties size='2'>"
                         f"<property name='download.size' value='{len(data)}'/>"
                         f"<property name='download.checksum.sha-256' value='{sha or hashlib.sha256(data).hexdigest()}'/>"
                         "</properties></artifact>")
    props = f"<property name='p2.mirrorsURL' value='{mirrors}'/>" if mirrors else ""
    artifacts_xml = (f"<?xml version='1.0' encoding='UTF-8'?>\n<?artifactRepository version='1.1.0'?>\n"
                     f"<repository name='dpt' type='org.eclipse.equinox.p2.artifact.repository.simpleRepository' "
                     f"version='1'><properties size='{2 if mirrors else 1}'><property name='p2.timestamp' value='1'/>"
                     f"{props}</properties>{MAPPINGS}<artifacts size='2'>{''.join(artifacts)}</artifacts></repository>")
    content_xml = ("<?xml version='1.0' encoding='UTF-8'?>\n<?metadataRepository version='1.2.0'?>\n"
                   "<repository name='dpt' type='org.eclipse.equinox.internal.p2.metadata.repository."
                   "LocalMetadataRepository' version='1'><units size='1'>"
                   f"<unit id='dpt.bundle' version='{version}'/></units></repository>")
    return {"p2.index": b"version=1\nmetadata.repository.factory.order=content.xml.xz,content.jar,\\!\n"
                        b"artifact.repository.factory.order=artifacts.xml.xz,\\!\n",
            "content.jar": zip_bytes({"content.xml": content_xml.encode()}),
            "artifacts.xml.xz": lzma.compress(artifacts_xml.encode()),
            f"plugins/dpt.bundle_{version}.jar": plugin, f"features/dpt.feature_{version}.jar": feature,
            **(extra or {})}


class P2Client:
    """Loads the metadata and artifact repositories at a URL as p2 does, then downloads artifacts."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/"
        self.responses: list[requests.Response] = []

    def _get(self, url: str) -> requests.Response:
        answer = requests.get(url, timeout=30, headers={"User-Agent": "p2/2.7 (Eclipse)"})
        self.responses.append(answer)
        return answer

    def _order(self, url: str, kind: str) -> list[str]:
        index = self._get(url + "p2.index")
        if index.status_code != 200:
            return DEFAULT_ORDER[kind]
        key = "metadata" if kind == "content" else "artifact"
        found = re.search(rf"^{key}\.repository\.factory\.order=(.*)$", index.text, re.M)
        return [f for f in found.group(1).split(",") if f not in ("\\!", "!")] if found else DEFAULT_ORDER[kind]

    def load(self, kind: str, url: str | None = None) -> list[tuple[str, ElementTree.Element]]:
        """(repository URL, root element) of every simple repository reached from `url`."""
        url = url or self.url
        for factory in self._order(url, kind):
            answer = self._get(url + factory)
            if answer.status_code != 200:
                continue
            xml = answer.content
            if factory.endswith(".xz"):
                xml = lzma.decompress(xml)
            elif factory.endswith(".jar"):
                with zipfile.ZipFile(io.BytesIO(xml)) as jar:
                    xml = jar.read(next(n for n in jar.namelist() if n.endswith(".xml")))
            root = ElementTree.fromstring(xml)
            if factory.startswith("composite"):
                out = []
                for child in root.iter("child"):
                    out += self.load(kind, urljoin(url, child.get("location").rstrip("/") + "/"))
                return out
            return [(url, root)]
        raise AssertionError(f"no {kind} repository at {url}")

    def install(self) -> dict[str, bytes]:
        """Every artifact of every artifact repository, downloaded and checked."""
        got = {}
        for url, root in self.load("artifacts"):
            assert all(p.get("name") != "p2.mirrorsURL" for p in root.iter("property")), "mirrors would bypass depot"
            for artifact in root.iter("artifact"):
                folder = {"osgi.bundle": "plugins", "org.eclipse.update.feature": "features"}[artifact.get("classifier")]
                props = {p.get("name"): p.get("value") for p in artifact.iter("property")}
                answer = self._get(f"{url}{folder}/{artifact.get('id')}_{artifact.get('version')}.jar")
                assert answer.status_code == 200, answer.text
                assert hashlib.sha256(answer.content).hexdigest() == props["download.checksum.sha-256"]
                got[answer.url] = answer.content
        return got


def upload(url: str, data: bytes, token: str | None) -> requests.Response:
    return requests.put(url, data=data, auth=("ci", token) if token else None, timeout=30)


@pytest.fixture
def depot(depot_factory: Any) -> Any:
    return depot_factory(REPOS, secure=True)


def test_upload_sites_then_install_through_hosted_and_group(depot: Any) -> None:
    token = make_token(depot, "--repo", "p2-local", "--perm", "write")
    first = upload(f"{depot.url}/p2/dpt-site/1.0.0.zip", zip_bytes({f"repo/{k}": v for k, v in site("1.0.0").items()}),
                   token)
    assert first.status_code == 201, first.text
    assert upload(f"{depot.url}/p2/dpt-site/1.1.0.zip", zip_bytes(site("1.1.0")), token).status_code == 201
    for url, prefix in ((f"{depot.url}/p2/", f"{depot.url}/p2/members/p2-local/dpt-site/"),
                        (f"{depot.url}/p2-local/", f"{depot.url}/p2-local/dpt-site/"),
                        (f"{depot.url}/p2-local/dpt-site/1.1.0", f"{depot.url}/p2-local/dpt-site/1.1.0/")):
        client = P2Client(url)
        units = [u.get("version") for _, root in client.load("content") for u in root.iter("unit")]
        got = client.install()
        expected = ["1.0.0", "1.1.0"] if not url.endswith("1.1.0") else ["1.1.0"]
        assert units == expected
        assert got[f"{prefix}{'' if url.endswith('1.1.0') else '1.1.0/'}plugins/dpt.bundle_1.1.0.jar"] == \
            bundle("dpt.bundle", "1.1.0")
    again = upload(f"{depot.url}/p2/dpt-site/1.0.0.zip", zip_bytes(site("1.0.0")), token)
    assert again.status_code == 409


def test_anonymous_and_read_token_cannot_upload(depot: Any) -> None:
    anonymous = upload(f"{depot.url}/p2/dpt-site/1.0.0.zip", zip_bytes(site("1.0.0")), None)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    reader = make_token(depot, "--repo", "p2-local", "--perm", "read")
    assert upload(f"{depot.url}/p2/dpt-site/1.0.0.zip", zip_bytes(site("1.0.0")), reader).status_code == 403
    assert requests.get(f"{depot.url}/p2-local/dpt-site/1.0.0/content.jar", timeout=10).status_code == 404


@pytest.mark.parametrize("case", ["not-zip", "no-artifacts", "checksum", "missing-artifact", "bad-path"])
def test_bad_sites_are_refused_and_nothing_stored(depot: Any, case: str) -> None:
    token = make_token(depot, "--repo", "p2-local", "--perm", "write")
    files = site("1.0.0")
    if case == "no-artifacts":
        del files["artifacts.xml.xz"]
    elif case == "checksum":
        files = site("1.0.0", sha="0" * 64)
    elif case == "missing-artifact":
        del files["plugins/dpt.bundle_1.0.0.jar"]
    elif case == "bad-path":
        files["../../evil"] = b"x"
    answer = upload(f"{depot.url}/p2/dpt-site/1.0.0.zip", b"plain" if case == "not-zip" else zip_bytes(files), token)
    assert answer.status_code == 400 and answer.text.strip(), answer.text
    for path in ("dpt-site/1.0.0/content.jar", "dpt-site/1.0.0/p2.index", "dpt-site/compositeContent.xml"):
        assert requests.get(f"{depot.url}/p2-local/{path}", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/p2-local/compositeContent.xml", timeout=10).status_code == 404


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    mirrored = site("1.0.0", mirrors="https://mirrors.invalid/list?file=/x")
    assert upload(f"{upstream.url}/p2/dpt-site/1.0.0.zip", zip_bytes(mirrored), None).status_code == 201
    proxy = depot_factory({
        "p2-remote": {"format": "p2", "type": "proxy", "upstream": f"{upstream.url}/p2-local"},
        "p2-local": {"format": "p2", "type": "hosted"},
        "p2": {"format": "p2", "type": "group", "members": ["p2-local", "p2-remote"], "deploy_to": "p2-local"},
    }, name="proxy")
    assert upload(f"{proxy.url}/p2/mine/0.1.0.zip", zip_bytes(site("0.1.0")), None).status_code == 201

    first = P2Client(f"{proxy.url}/p2/")
    assert len(first.install()) == 4               # mirrorsURL removed from the proxied artifacts.xml.xz
    remote = [r for r in first.responses if "/p2-remote/" in r.url and r.status_code == 200]
    assert remote and any(r.headers.get("X-Cache") == "MISS" for r in remote)
    second = P2Client(f"{proxy.url}/p2/")
    second.install()
    assert all(r.headers.get("X-Cache") == "HIT" for r in second.responses if r.status_code == 200)
    upstream.stop()
    third = P2Client(f"{proxy.url}/p2/")
    got = third.install()                            # upstream gone
    assert got[f"{proxy.url}/p2/members/p2-remote/dpt-site/1.0.0/plugins/dpt.bundle_1.0.0.jar"] == \
        bundle("dpt.bundle", "1.0.0")


def test_twenty_concurrent_clients_one_upstream_get_and_checksums(depot_factory: Any, upstream: Any) -> None:
    for path, data in site("1.0.0").items():
        upstream.put(f"child/{path}", data)
    for path, data in site("2.0.0", sha="0" * 64).items():
        upstream.put(f"evil/{path}", data)
    upstream.put("child/plugins/unlisted_1.0.jar", b"x")
    composite = (f"<?xml version='1.0'?>\n<?compositeArtifactRepository version='1.0.0'?>\n<repository name='c' "
                 f"type='org.eclipse.equinox.internal.p2.artifact.repository.CompositeArtifactRepository' "
                 f"version='1.0.0'><children size='1'><child location='{upstream.url}/child'/></children></repository>")
    upstream.put("compositeArtifacts.xml", composite.encode())
    proxy = depot_factory({"p2-remote": {"format": "p2", "type": "proxy", "upstream": upstream.url}})
    rewritten = requests.get(f"{proxy.url}/p2-remote/compositeArtifacts.xml", timeout=10).text
    assert "<child location='child'/>" in rewritten                        # resolved through depot
    upstream.mode("/child/plugins/dpt.bundle_1.0.0.jar", "slow", chunk=64, delay=0.02)
    answers = get_many(f"{proxy.url}/p2-remote/child/plugins/dpt.bundle_1.0.0.jar", 20)
    assert all(a.status == 200 and a.body == bundle("dpt.bundle", "1.0.0") for a in answers)
    assert upstream.count("/child/plugins/dpt.bundle_1.0.0.jar") == 1
    assert upstream.count("/child/artifacts.xml.xz") == 1
    for _ in range(2):
        answer = get(f"{proxy.url}/p2-remote/evil/plugins/dpt.bundle_2.0.0.jar")
        assert answer.status == 502 or not answer.complete, answer.status
    assert upstream.count("/evil/plugins/dpt.bundle_2.0.0.jar") == 2
    assert requests.get(f"{proxy.url}/p2-remote/child/plugins/unlisted_1.0.jar", timeout=10).status_code == 404


def _composite(kind: str, *children: str) -> bytes:
    rtype = {"Content": "org.eclipse.equinox.internal.p2.metadata.repository.CompositeMetadataRepository",
             "Artifacts": "org.eclipse.equinox.internal.p2.artifact.repository.CompositeArtifactRepository"}[kind]
    pi = {"Content": "compositeMetadataRepository", "Artifacts": "compositeArtifactRepository"}[kind]
    kids = "".join(f"<child location='{c}'/>" for c in children)
    return (f"<?xml version='1.0'?>\n<?{pi} version='1.0.0'?>\n<repository name='c' type='{rtype}' version='1.0.0'>"
            f"<children size='{len(children)}'>{kids}</children></repository>").encode()


def _two_hosts(upstream: Any, other: Any) -> None:
    """Host A: a composite (content as .jar) over a site on host B; host B: a composite over its
    own site and one back on host A — as release trains spread over download servers."""
    for path, data in site("1.0.0").items():
        upstream.put(f"siteA/{path}", data)
    for path, data in site("2.0.0").items():
        other.put(f"siteB/{path}", data)
    upstream.put("compositeContent.jar", zip_bytes({"compositeContent.xml": _composite("Content", f"{other.url}/train")}))
    upstream.put("compositeArtifacts.xml", _composite("Artifacts", f"{other.url}/train"))
    for kind in ("Content", "Artifacts"):
        other.put(f"train/composite{kind}.xml", _composite(kind, f"{other.url}/siteB", f"{upstream.url}/siteA"))


def test_composite_children_on_another_host_are_proxied(depot_factory: Any, upstream: Any, tmp_path: Any) -> None:
    other = start_upstream(tmp_path / "other")
    try:
        _two_hosts(upstream, other)
        other_host = other.url.removeprefix("http://")
        proxy = depot_factory({"p2-remote": {"format": "p2", "type": "proxy", "upstream": upstream.url,
                                             "options": {"child_hosts": [other_host]}}})
        first = P2Client(f"{proxy.url}/p2-remote/")
        got = first.install()
        assert sorted(got.values()) == sorted([bundle("dpt.bundle", "1.0.0"), bundle("dpt.feature", "1.0.0"),
                                               bundle("dpt.bundle", "2.0.0"), bundle("dpt.feature", "2.0.0")])
        assert all(r.url.startswith(f"{proxy.url}/p2-remote/") for r in first.responses)     # never around depot
        assert other.count("/siteB/plugins/dpt.bundle_2.0.0.jar") == 1                       # fetched by depot
        upstream.stop()
        other.stop()
        second = P2Client(f"{proxy.url}/p2-remote/")
        assert second.install().keys() == got.keys()                                         # both hosts gone
        assert all(r.headers.get("X-Cache") in ("HIT", "STALE") for r in second.responses if r.status_code == 200)
    finally:
        other.stop()


def test_children_on_hosts_not_allowed_are_left_alone(depot_factory: Any, upstream: Any, tmp_path: Any) -> None:
    other = start_upstream(tmp_path / "other")
    try:
        _two_hosts(upstream, other)
        proxy = depot_factory({"p2-remote": {"format": "p2", "type": "proxy", "upstream": upstream.url}})
        text = requests.get(f"{proxy.url}/p2-remote/compositeArtifacts.xml", timeout=10).text
        assert f"<child location='{other.url}/train'/>" in text
        port = other.url.rsplit(":", 1)[1]
        refused = requests.get(f"{proxy.url}/p2-remote/ext/http/127.0.0.1/{port}/siteB/p2.index", timeout=10)
        assert refused.status_code == 404
        assert other.counts() == {}                                     # depot never fetched from it
    finally:
        other.stop()


def test_policy_deny_filters_units_and_artifacts_and_refuses_the_download(depot_factory: Any, upstream: Any) -> None:
    for path, data in site("2.0.0").items():
        upstream.put(path, data)
    proxy = depot_factory({"p2-remote": {"format": "p2", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"deny": ["dpt.bundle@>=2"]}})
    content = requests.get(f"{proxy.url}/p2-remote/content.jar", timeout=10).content
    with zipfile.ZipFile(io.BytesIO(content)) as jar:
        units = ElementTree.fromstring(jar.read("content.xml")).find("units")
    assert units is not None and units.get("size") == "0" and list(units) == []
    artifacts = ElementTree.fromstring(lzma.decompress(
        requests.get(f"{proxy.url}/p2-remote/artifacts.xml.xz", timeout=10).content))
    listed = [(a.get("id"), a.get("version")) for a in artifacts.iter("artifact")]
    assert listed == [("dpt.feature", "2.0.0")] and artifacts.find("artifacts").get("size") == "1"
    assert len(P2Client(f"{proxy.url}/p2-remote/").install()) == 1                    # the feature only
    refused = requests.get(f"{proxy.url}/p2-remote/plugins/dpt.bundle_2.0.0.jar", timeout=10)
    assert refused.status_code == 403 and "dpt.bundle@>=2" in refused.text
