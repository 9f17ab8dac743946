"""Maven with the real clients (mvn 3.8, Gradle 4.4, Ivy 2.5) against a real depot.

The upstream of every proxy is a static tree built from the machine's ~/.m2/repository (plugins
included) served by tests/upstream.py, which counts requests; never the internet. Every mvn run
uses a settings.xml mirroring `*` to depot and an empty -Dmaven.repo.local.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from depot_process import DepotProcess
from maven_fixtures import build_m2_tree, client_env, compile_jar, deploy_file, mvn, project, settings
from upstream import start_upstream

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
GROUP = "com.example"
TINY = "public class Tiny { public static String hi() { return \"hi\"; } }"
SNAP_1 = "public class Snap { public static String first() { return \"1\"; } }"
SNAP_2 = "public class Snap { public static String second() { return \"2\"; } }"


@pytest.fixture(scope="module")
def m2_tree(tmp_path_factory):
    return build_m2_tree(tmp_path_factory.mktemp("m2") / "repository")


@pytest.fixture(scope="module")
def m2_upstream(m2_tree):
    server = start_upstream(m2_tree)
    yield server
    server.stop()


def trio(upstream_url: str, **hosted_options) -> dict:
    return {"maven-local": {"format": "maven", "type": "hosted", "options": hosted_options},
            "maven-remote": {"format": "maven", "type": "proxy", "upstream": upstream_url + "/"},
            "maven": {"format": "maven", "type": "group", "members": ["maven-local", "maven-remote"],
                      "deploy_to": "maven-local"}}


def upstream_requests(upstream) -> int:
    return sum(n for key, n in upstream.counts().items() if not key.startswith("PUT"))


def errors(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in result.stdout.splitlines() if "ERROR" in line)[:3000]


def test_deploy_resolve_through_group_redeploy_refused(depot_factory, m2_upstream, tmp_path):
    """deploy-file a release and a SNAPSHOT (twice) to hosted through the group; a project compiles
    against both through the group with a fresh local repository; the second build is all HITs
    (no upstream request); a redeploy of the release is refused with 400."""
    depot = depot_factory(trio(m2_upstream.url))
    group_url = f"{depot.url}/maven/"
    conf = settings(tmp_path / "settings.xml", mirror=group_url, user=ADMIN[0], password=ADMIN[1], snapshots=True)
    deploy_repo = tmp_path / "deploy-m2"
    tiny = compile_jar(tmp_path / "tiny", "com.example.tiny", {"Tiny": TINY})
    done = deploy_file(tmp_path, conf, deploy_repo, group_url, tiny, GROUP, "tiny", "1.0")
    assert done.returncode == 0, errors(done)
    for body in (SNAP_1, SNAP_2):
        jar = compile_jar(tmp_path / f"snap-{len(body)}-{body[-12:-6]}", "com.example.snap", {"Snap": body})
        done = deploy_file(tmp_path, conf, deploy_repo, group_url, jar, GROUP, "snap", "2.0-SNAPSHOT")
        assert done.returncode == 0, errors(done)
    meta = requests.get(f"{depot.url}/maven-local/com/example/snap/2.0-SNAPSHOT/maven-metadata.xml").text
    values = set(re.findall(r"<value>(2\.0-\d{8}\.\d{6}-(\d+))</value>", meta))
    assert {build for _, build in values} == {"2"} and "<buildNumber>2</buildNumber>" in meta, meta
    puts = [line for line in depot.log().splitlines() if '"PUT /maven/' in line]
    assert puts and all(re.search(r'HTTP/1.1" 20[01] ', line) for line in puts), puts
    assert any(".jar.sha1" in line for line in puts) and any("maven-metadata.xml" in line for line in puts)
    artifact_meta = requests.get(f"{depot.url}/maven/com/example/snap/maven-metadata.xml").text
    assert "<version>2.0-SNAPSHOT</version>" in artifact_meta

    app = project(tmp_path / "app", [(GROUP, "tiny", "1.0"), (GROUP, "snap", "2.0-SNAPSHOT")],
                  "public static void main(String[] a) { System.out.println(com.example.tiny.Tiny.hi()"
                  " + com.example.snap.Snap.second()); }")
    built = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'build-1'}", "compile")
    assert built.returncode == 0, errors(built)
    assert (app / "target/classes/demo/App.class").is_file()

    m2_upstream.reset()
    shutil.rmtree(app / "target")
    again = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'build-2'}", "compile")
    assert again.returncode == 0, errors(again)
    assert upstream_requests(m2_upstream) == 0, m2_upstream.counts()
    access = [line for line in depot.log().splitlines() if "depot.access" in line]
    second = access[-40:]
    assert all('"HIT"' in line for line in second if '" 200 ' in line and "GET /maven/" in line), second

    refused = deploy_file(tmp_path, conf, deploy_repo, group_url, tiny, GROUP, "tiny", "1.0")
    assert refused.returncode != 0 and "400" in errors(refused), errors(refused)
    assert requests.get(f"{depot.url}/maven/com/example/tiny/1.0/tiny-1.0.jar").content == tiny.read_bytes()


def mvn_like_deploy(base: str, version: str, auth: tuple[str, str]) -> list[int]:
    """The request sequence of `mvn deploy` for one release: jar, pom and their checksums, then
    GET maven-metadata.xml, merge it on the client and PUT it back with its checksums."""
    path = f"{base}/com/example/many/{version}/many-{version}"
    jar = f"jar of {version}".encode()
    pom = (f'<project><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId>'
           f'<artifactId>many</artifactId><version>{version}</version></project>').encode()
    codes = []
    with requests.Session() as http:
        http.auth = auth
        for url, body in ((path + ".jar", jar), (path + ".pom", pom)):
            codes.append(http.put(url, data=body, timeout=30).status_code)
            for algo in ("sha1", "md5"):
                codes.append(http.put(f"{url}.{algo}", data=hashlib.new(algo, body).hexdigest(), timeout=30)
                             .status_code)
        meta_url = f"{base}/com/example/many/maven-metadata.xml"
        seen = http.get(meta_url, timeout=30)
        versions = re.findall(r"<version>([^<]+)</version>", seen.text) if seen.ok else []
        listed = "".join(f"<version>{v}</version>" for v in sorted(set(versions) | {version}))
        doc = (f"<metadata><groupId>com.example</groupId><artifactId>many</artifactId><versioning>"
               f"<release>{version}</release><versions>{listed}</versions>"
               f"<lastUpdated>20240101000000</lastUpdated></versioning></metadata>").encode()
        codes.append(http.put(meta_url, data=doc, timeout=30).status_code)
        codes.append(http.put(meta_url + ".sha1", data=hashlib.sha1(doc).hexdigest(), timeout=30).status_code)
    return codes


def test_twenty_concurrent_deploys_all_listed(depot_factory, tmp_path):
    """20 deploys of different versions at once (mvn's request sequence, each client merging the
    metadata it read): all 20 are in maven-metadata.xml, whose checksums match it."""
    depot = depot_factory({"maven-local": {"format": "maven", "type": "hosted"}})
    base = f"{depot.url}/maven-local"
    versions = [f"1.{i}" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda v: mvn_like_deploy(base, v, ADMIN), versions))
    assert all(code in (200, 201) for codes in results for code in codes), results
    meta = requests.get(f"{base}/com/example/many/maven-metadata.xml")
    listed = re.findall(r"<version>([^<]+)</version>", meta.text)
    assert sorted(listed) == sorted(versions) and "<release>1.19</release>" in meta.text, meta.text
    assert requests.get(f"{base}/com/example/many/maven-metadata.xml.sha1").text == \
        hashlib.sha1(meta.content).hexdigest()


def test_proxy_of_central_mirror_then_upstream_down(depot_factory, m2_tree, tmp_path):
    """mirrorOf * → a depot proxy in front of a static tree of ~/.m2 (plugins included): mvn compile
    with a fresh local repository works through depot only, release files verified against the
    upstream's .sha1; with the upstream stopped the same build works again."""
    upstream = start_upstream(m2_tree)
    try:
        depot = depot_factory({"central": {"format": "maven", "type": "proxy", "upstream": upstream.url + "/"}})
        conf = settings(tmp_path / "settings.xml", mirror=f"{depot.url}/central/")
        app = project(tmp_path / "app", [("org.apache.commons", "commons-lang3", "3.12.0")],
                      "public static void main(String[] a) { System.out.println("
                      "org.apache.commons.lang3.StringUtils.capitalize(\"x\")); }")
        first = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'r1'}", "compile")
        assert first.returncode == 0, errors(first)
        counts = upstream.counts()
        jars = [k for k in counts if k.startswith("GET ") and k.endswith(".jar")]
        assert jars and all(counts[k] == 1 for k in jars), counts
        assert all(counts.get(k + ".sha1") == 1 for k in jars), "each release verified against its .sha1"
    finally:
        upstream.stop()
    shutil.rmtree(app / "target")
    second = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'r2'}", "compile")
    assert second.returncode == 0, errors(second)
    assert (app / "target/classes/demo/App.class").is_file()
