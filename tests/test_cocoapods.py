"""CocoaPods CDN sources end to end. No `pod` client exists here: these tests replay the request
sequence of CocoaPods' CDNSource (cocoapods-core lib/cocoapods-core/cdn_source.rb) and of
cocoapods-downloader's http strategy exactly, against real depot processes:
`pod repo add-cdn` GETs CocoaPods-version.yml (then revalidates it with If-None-Match); `pod install`
GETs all_pods_versions_<a>_<b>_<c>.txt (a b c: md5 of the pod name), then the chosen version's
Specs/<a>/<b>/<c>/<Pod>/<v>/<Pod>.podspec.json, then each dependency the same way, then downloads
each `source.http` archive and checks its `sha256`."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from typing import Any

import pytest
import requests

from depot_process import DepotProcess
from http_util import get_many

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
UA = {"User-Agent": "CocoaPods/1.16.2 cocoapods-downloader/2.1"}


def shard(pod: str) -> list[str]:
    return list(hashlib.md5(pod.encode()).hexdigest()[:3])  # noqa: S324


def make_archive(pod: str, version: str, payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = f"// {pod} {version}\n".encode() + payload
        info = tarfile.TarInfo(f"{pod}/{pod}.m")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def podspec(pod: str, version: str, deps: dict[str, list[str]] | None = None) -> bytes:
    return json.dumps({"name": pod, "version": version, "summary": "test", "homepage": "https://example.invalid",
                       "license": "MIT", "authors": {"depot": "depot@example.invalid"},
                       "source": {"git": "https://example.invalid/x.git", "tag": version},
                       "platforms": {"ios": "12.0"}, "source_files": f"{pod}/*.m",
                       "dependencies": deps or {}}).encode()


def publish(url: str, pod: str, version: str, archive: bytes | None = None, **kw: Any) -> requests.Response:
    return requests.post(f"{url}/api/pods", files={"podspec": ("p.json", podspec(pod, version, kw.pop("deps", None))),
                                                   "archive": ("a.tar.gz", archive or make_archive(pod, version))},
                         timeout=60, **kw)


def pod_install(source: str, pods: list[str], session: requests.Session | None = None) -> dict[str, bytes]:
    """The CDN request sequence of `pod repo add-cdn` + `pod install`: {pod: archive bytes}."""
    http = session or requests.Session()
    first = http.get(f"{source}/CocoaPods-version.yml", headers=UA, timeout=20)
    assert first.status_code == 200 and "prefix_lengths:\n- 1\n- 1\n- 1" in first.text, first.text
    if "ETag" in first.headers:          # a proxy's first (streamed) answer may have none yet
        again = http.get(f"{source}/CocoaPods-version.yml", headers={**UA, "If-None-Match": first.headers["ETag"]},
                         timeout=20)
        assert again.status_code == 304                                 # the CDN source revalidates with ETags
    out: dict[str, bytes] = {}
    todo = list(pods)
    while todo:
        pod = todo.pop(0)
        if pod in out:
            continue
        a, b, c = shard(pod)
        versions = http.get(f"{source}/all_pods_versions_{a}_{b}_{c}.txt", headers=UA, timeout=20)
        assert versions.status_code == 200, versions.text
        line = next(row.split("/") for row in versions.text.splitlines() if row.split("/")[0] == pod)
        version = line[-1]
        spec = http.get(f"{source}/Specs/{a}/{b}/{c}/{pod}/{version}/{pod}.podspec.json", headers=UA, timeout=20)
        assert spec.status_code == 200, spec.text
        doc = spec.json()
        archive = http.get(doc["source"]["http"], headers=UA, timeout=60)
        assert archive.status_code == 200
        if "sha256" in doc["source"]:
            assert hashlib.sha256(archive.content).hexdigest() == doc["source"]["sha256"]
        out[pod] = archive.content
        todo += list(doc.get("dependencies") or {})
    return out


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"pods-local": {"format": "cocoapods", "type": "hosted"},
                          "pods": {"format": "cocoapods", "type": "group", "members": ["pods-local"],
                                   "deploy_to": "pods-local"}})


def test_publish_then_install_sequence_from_hosted_and_group(depot: DepotProcess) -> None:
    core = make_archive("DepotCore", "1.1.0")
    assert publish(f"{depot.url}/pods", "DepotCore", "1.0.0").status_code == 201          # through the group
    assert publish(f"{depot.url}/pods-local", "DepotCore", "1.1.0", core).status_code == 201
    assert publish(f"{depot.url}/pods-local", "DepotKit", "2.0.0", deps={"DepotCore": [">= 1.0"]}).status_code == 201
    a, b, c = shard("DepotCore")
    versions = requests.get(f"{depot.url}/pods-local/all_pods_versions_{a}_{b}_{c}.txt", timeout=10).text
    assert "DepotCore/1.0.0/1.1.0\n" in versions
    for repo in ("pods-local", "pods"):
        got = pod_install(f"{depot.url}/{repo}", ["DepotKit"])
        assert set(got) == {"DepotKit", "DepotCore"} and got["DepotCore"] == core
    spec = requests.get(f"{depot.url}/pods/Specs/{a}/{b}/{c}/DepotCore/1.1.0/DepotCore.podspec.json", timeout=10).json()
    assert spec["source"] == {"http": f"{depot.url}/pods/pods/DepotCore/1.1.0/DepotCore-1.1.0.tar.gz",
                              "sha256": hashlib.sha256(core).hexdigest()}


def test_bad_uploads_are_refused_and_nothing_stored(depot: DepotProcess) -> None:
    url = f"{depot.url}/pods-local"
    for files, why in [({"podspec": ("p", b"{not json"), "archive": ("a", make_archive("Bad", "1.0.0"))}, "not JSON"),
                       ({"podspec": ("p", podspec("Bad", "1.0.0")), "archive": ("a", b"garbage")}, "not a .tar.gz"),
                       ({"podspec": ("p", podspec("Bad", "1.0.0")), "archive": ("a", b"\x1f\x8b\x08garbage")},
                        "not a valid"),
                       ({"podspec": ("p", podspec("Bad", "x"))}, "multipart fields")]:
        bad = requests.post(f"{url}/api/pods", files=files, timeout=10)
        assert bad.status_code == 400 and why in bad.json()["error"], bad.text
    a, b, c = shard("Bad")
    assert requests.get(f"{url}/all_pods_versions_{a}_{b}_{c}.txt", timeout=10).text == ""
    assert requests.get(f"{url}/Specs/{a}/{b}/{c}/Bad/1.0.0/Bad.podspec.json", timeout=10).status_code == 404
    assert requests.put(f"{url}/Specs/{a}/{b}/{c}/Bad/1.0.0/Bad.podspec.json", data=b"{}", timeout=10).status_code \
        == 405
    archive = make_archive("Fixed", "1.0.0")
    assert publish(url, "Fixed", "1.0.0", archive).status_code == 201
    assert publish(url, "Fixed", "1.0.0", archive).status_code == 200
    assert publish(url, "Fixed", "1.0.0", make_archive("Fixed", "1.0.0", b"other")).status_code == 409


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any) -> None:
    upstream = depot_factory({"pods": {"format": "cocoapods", "type": "hosted"}}, name="up")
    core = make_archive("RelayCore", "1.0.0", os.urandom(30_000))
    assert publish(f"{upstream.url}/pods", "RelayCore", "1.0.0", core).status_code == 201
    assert publish(f"{upstream.url}/pods", "RelayKit", "1.0.0", deps={"RelayCore": []}).status_code == 201
    front = depot_factory({"remote": {"format": "cocoapods", "type": "proxy", "upstream": f"{upstream.url}/pods"},
                           "grp": {"format": "cocoapods", "type": "group", "members": ["remote"]}}, name="front")
    for round_ in range(2):
        since = len(front.log())
        assert pod_install(f"{front.url}/remote", ["RelayKit"])["RelayCore"] == core
        if round_ == 1:
            lines = [line for line in front.log()[since:].splitlines() if "depot.access" in line]
            assert len(lines) == 8 and all(line.endswith(('"HIT"', '"-"')) for line in lines), lines
            assert sum(line.endswith('"HIT"') for line in lines) >= 7, lines     # the 304 carries no body
    a, b, c = shard("RelayCore")
    spec = requests.get(f"{front.url}/grp/Specs/{a}/{b}/{c}/RelayCore/1.0.0/RelayCore.podspec.json", timeout=10).json()
    assert spec["source"]["http"] == f"{front.url}/grp/pods/RelayCore/1.0.0/RelayCore-1.0.0.tar.gz"
    upstream.stop()
    time.sleep(0.5)
    assert pod_install(f"{front.url}/remote", ["RelayKit"])["RelayCore"] == core
    assert pod_install(f"{front.url}/grp", ["RelayKit"])["RelayCore"] == core


def test_twenty_concurrent_clients_on_one_uncached_archive(upstream: Any, depot_factory: Any) -> None:
    body = make_archive("Herd", "1.0.0", os.urandom(300_000))
    a, b, c = shard("Herd")
    spec = {"name": "Herd", "version": "1.0.0",
            "source": {"http": f"{upstream.url}/dl/Herd-1.0.0.tar.gz", "sha256": hashlib.sha256(body).hexdigest()}}
    upstream.put(f"Specs/{a}/{b}/{c}/Herd/1.0.0/Herd.podspec.json", json.dumps(spec).encode())
    bad = {**spec, "version": "1.0.1", "source": {"http": f"{upstream.url}/dl/Herd-1.0.0.tar.gz", "sha256": "0" * 64}}
    upstream.put(f"Specs/{a}/{b}/{c}/Herd/1.0.1/Herd.podspec.json", json.dumps(bad).encode())
    git = {"name": "Gitty", "version": "1.0.0", "source": {"git": "https://example.invalid/g.git", "tag": "1.0.0"}}
    g = shard("Gitty")
    upstream.put(f"Specs/{g[0]}/{g[1]}/{g[2]}/Gitty/1.0.0/Gitty.podspec.json", json.dumps(git).encode())
    upstream.put("dl/Herd-1.0.0.tar.gz", body)
    depot = depot_factory({"remote": {"format": "cocoapods", "type": "proxy", "upstream": upstream.url}})
    served = requests.get(f"{depot.url}/remote/Specs/{a}/{b}/{c}/Herd/1.0.0/Herd.podspec.json", timeout=10).json()
    url = served["source"]["http"]
    assert url == f"{depot.url}/remote/pods/Herd/1.0.0/Herd-1.0.0.tar.gz"
    upstream.mode("/dl/Herd-1.0.0.tar.gz", "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode("/dl/Herd-1.0.0.tar.gz", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {body}
    assert upstream.count("/dl/Herd-1.0.0.tar.gz") == 1
    gitty = requests.get(f"{depot.url}/remote/Specs/{g[0]}/{g[1]}/{g[2]}/Gitty/1.0.0/Gitty.podspec.json", timeout=10)
    assert gitty.json()["source"] == git["source"]                         # git sources are left as they are
    try:
        mismatch = requests.get(f"{depot.url}/remote/pods/Herd/1.0.1/Herd-1.0.0.tar.gz", timeout=20)
        assert mismatch.status_code != 200 or mismatch.content != body      # sha256 mismatch never served whole
    except requests.RequestException:
        pass
    assert requests.get(f"{depot.url}/remote/pods/Herd/1.0.0/other.tar.gz", timeout=10).status_code == 404


def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(depot_factory: Any) -> None:
    secure = depot_factory({"pods": {"format": "cocoapods", "type": "hosted"}}, secure=True)
    anonymous = publish(f"{secure.url}/pods", "Sec", "1.0.0")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    read = secure.run_cli("token", "create", "--repo", "pods", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = publish(f"{secure.url}/pods", "Sec", "1.0.0", headers={"Authorization": f"Bearer {read}"})
    assert denied.status_code == 403 and denied.json()["error"]
    assert publish(f"{secure.url}/pods", "Sec", "1.0.0", auth=ADMIN).status_code == 201


def test_warm_from_a_podfile_lock_then_install_without_the_upstream(depot_factory: Any, tmp_path: Any) -> None:
    upstream = depot_factory({"pods": {"format": "cocoapods", "type": "hosted"}}, name="up")
    core = make_archive("WarmCore", "1.0.0")
    assert publish(f"{upstream.url}/pods", "WarmCore", "1.0.0", core).status_code == 201
    front = depot_factory({"remote": {"format": "cocoapods", "type": "proxy", "upstream": f"{upstream.url}/pods"}},
                          name="front")
    lock = tmp_path / "Podfile.lock"
    lock.write_text("PODS:\n  - WarmCore (1.0.0)\n\nDEPENDENCIES:\n  - WarmCore\n\nCOCOAPODS: 1.16.2\n")
    warmed = front.run_cli("warm", "remote", str(lock), "--url", front.url, check=False)
    assert warmed.returncode == 0 and "2 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    a, b, c = shard("WarmCore")
    upstream.stop()
    spec = requests.get(f"{front.url}/remote/Specs/{a}/{b}/{c}/WarmCore/1.0.0/WarmCore.podspec.json", timeout=10)
    assert spec.status_code == 200 and spec.headers["X-Cache"] == "HIT"
    archive = requests.get(spec.json()["source"]["http"], timeout=10)
    assert archive.content == core and archive.headers["X-Cache"] == "HIT"


def test_policy_hides_denied_versions_from_the_shards_and_refuses_their_specs(depot_factory: Any) -> None:
    """The CDN carries no publish times: deny/allow rules apply (the cooldown cannot)."""
    upstream = depot_factory({"pods": {"format": "cocoapods", "type": "hosted"}}, name="up")
    archives = {version: make_archive("RelayCore", version) for version in ("1.0.0", "1.1.0")}
    for version, archive in archives.items():
        assert publish(f"{upstream.url}/pods", "RelayCore", version, archive).status_code == 201
    front = depot_factory({"remote": {"format": "cocoapods", "type": "proxy", "upstream": f"{upstream.url}/pods"},
                           "mine": {"format": "cocoapods", "type": "hosted"},
                           "grp": {"format": "cocoapods", "type": "group", "members": ["mine", "remote"]}},
                          extra={"policy": {"deny": ["RelayCore@>=1.1"]}}, name="front")
    a, b, c = shard("RelayCore")
    for repo in ("remote", "grp"):                                    # the proxy's shard and the merged one
        lines = requests.get(f"{front.url}/{repo}/all_pods_versions_{a}_{b}_{c}.txt", timeout=10).text.splitlines()
        assert "RelayCore/1.0.0" in lines, (repo, lines)
        assert pod_install(f"{front.url}/{repo}", ["RelayCore"])["RelayCore"] == archives["1.0.0"]
    for path in (f"Specs/{a}/{b}/{c}/RelayCore/1.1.0/RelayCore.podspec.json",
                 "pods/RelayCore/1.1.0/RelayCore-1.1.0.tar.gz"):
        refused = requests.get(f"{front.url}/remote/{path}", timeout=10)
        assert refused.status_code == 403 and "RelayCore@>=1.1" in refused.json()["error"], path
