"""format oci against a real depot: skopeo and oras-py (hosted), a Debian docker-registry upstream
(pull-through), gc of deleted manifests, and the spec's error codes for bad input."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import oras.client
import pytest
import requests

from depot_process import DepotProcess, free_port
from http_util import get, get_many, sha256
from oci_fixtures import (EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, Layout, artifact_manifest, digest_of,
                          hello_layout, layer_tgz)
from depot.registry.oci_manifest import DOCKER_MANIFEST, MANIFEST_TYPES

SKOPEO = shutil.which("skopeo")
ALL_TYPES = ", ".join(MANIFEST_TYPES)
REGISTRY = shutil.which("docker-registry")
MiB = 2**20
WORKERS = 2          # uploads, single flight and the catalog must work across worker processes


def skopeo(*args: str, timeout: float = 60) -> str:
    assert SKOPEO, "skopeo is required (apt-get install -y skopeo)"
    done = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"skopeo {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


class Registry:
    """A Debian docker-registry (CNCF distribution) on 127.0.0.1 with an access log."""

    def __init__(self, root: Path) -> None:
        assert REGISTRY, "docker-registry is required (apt-get install -y docker-registry)"
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "registry.log"
        config = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
                  "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                  "http": {"addr": f"127.0.0.1:{self.port}"}}
        (root / "config.yml").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY, "serve", str(self.root / "config.yml")],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def gets(self, path: str) -> int:
        """How many GET requests for `path` the access log shows."""
        text = self.log_path.read_text(errors="replace")
        return len(re.findall(rf'"GET {re.escape(path)} HTTP', text))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, dict[str, Any], dict[str, Any]]:
    return hello_layout(tmp_path_factory.mktemp("layout"))


@pytest.fixture(scope="module")
def upstream_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = Registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory, upstream_registry: Registry) -> Iterator[DepotProcess]:
    repos = {"hosted": {"format": "oci", "type": "hosted"},
             "other": {"format": "oci", "type": "hosted"},
             "hub": {"format": "oci", "type": "proxy", "upstream": upstream_registry.url,
                     "metadata_ttl": "2s", "mirror": True},
             "all": {"format": "oci", "type": "group", "members": ["hosted", "hub"], "deploy_to": "hosted"}}
    process = DepotProcess(tmp_path_factory.mktemp("depot"), repos, workers=WORKERS)
    yield process
    process.stop()


def host(depot: DepotProcess) -> str:
    return f"127.0.0.1:{depot.port}"


def index_digest(layout_dir: Path, tag: str) -> str:
    index = json.loads((layout_dir / "index.json").read_text())
    return next(m["digest"] for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)


def error_code(response: requests.Response) -> str:
    return response.json()["errors"][0]["code"]


# ---------------------------------------------------------------- 1. skopeo, hosted
def test_skopeo_copy_in_and_out_keeps_digests(depot, layout, tmp_path):
    built, single, index = layout
    ref = f"docker://{host(depot)}/hosted/test/hello"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1", f"{ref}:v1")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{built.root}:multi", f"{ref}:multi")
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{out}:v1")
    skopeo("copy", "--all", "--src-tls-verify=false", f"{ref}:multi", f"oci:{out}:multi")
    assert index_digest(out, "v1") == single["digest"]
    assert index_digest(out, "multi") == index["digest"]
    for child in json.loads(built.read(index["digest"]))["manifests"]:
        assert (out / "blobs" / "sha256" / child["digest"].split(":")[1]).exists()

    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"{ref}:v1"))
    assert inspected["Digest"] == single["digest"]
    assert sorted(json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"]) == ["multi", "v1"]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:multi")
    assert digest_of(raw.encode()) == index["digest"]

    response = requests.get(f"{depot.url}/v2/hosted/test/hello/manifests/v1",
                            headers={"Accept": OCI_MANIFEST})
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == single["digest"]
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    head = requests.head(f"{depot.url}/v2/hosted/test/hello/manifests/{single['digest']}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == single["size"]

    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{built.root}:v1",
           f"docker://{host(depot)}/hosted/test/docker:v1")
    docker = requests.get(f"{depot.url}/v2/hosted/test/docker/manifests/v1", headers={"Accept": ALL_TYPES})
    assert docker.headers["Content-Type"] == DOCKER_MANIFEST == docker.json()["mediaType"]
    assert docker.headers["Docker-Content-Digest"] == digest_of(docker.content)

    skopeo("delete", "--tls-verify=false", f"{ref}:v1")
    gone = requests.get(f"{depot.url}/v2/hosted/test/hello/manifests/v1")
    assert gone.status_code == 404 and error_code(gone) == "MANIFEST_UNKNOWN"
    assert json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"] == ["multi"]


# ---------------------------------------------------------------- 2. oras, referrers
def push_blob(base: str, data: bytes) -> str:
    digest = digest_of(data)
    response = requests.post(f"{base}/blobs/uploads/?digest={digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return digest


def test_oras_push_pull_and_referrers(depot, tmp_path):
    client = oras.client.OrasClient(insecure=True)
    art = tmp_path / "art.txt"
    art.write_text("an artifact pushed by oras-py\n")
    target = f"{host(depot)}/hosted/test/artifact:v1"
    os.chdir(tmp_path)
    assert client.push(files=["art.txt"], target=target).status_code == 201
    assert client.get_tags(f"{host(depot)}/hosted/test/artifact") == ["v1"]
    pulled = client.pull(target=target, outdir=str(tmp_path / "pulled"))
    assert [Path(p).read_text() for p in pulled] == [art.read_text()]

    base = f"{depot.url}/v2/hosted/test/artifact"
    subject = requests.get(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": subject.headers["Docker-Content-Digest"],
                    "size": len(subject.content)}
    config = {"mediaType": EMPTY_CONFIG, "digest": push_blob(base, b"{}"), "size": 2}
    signature = b"signed-by-depot-tests"
    layer = {"mediaType": "application/vnd.example.signature", "digest": push_blob(base, signature),
             "size": len(signature)}
    body = artifact_manifest(config, [layer], "application/vnd.example.sig", subject_desc)
    put = requests.put(f"{base}/manifests/{digest_of(body)}", data=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    assert put.headers["OCI-Subject"] == subject_desc["digest"]

    listed = requests.get(f"{base}/referrers/{subject_desc['digest']}")
    assert listed.status_code == 200
    assert listed.headers["Content-Type"].startswith("application/vnd.oci.image.index.v1+json")
    descriptors = listed.json()["manifests"]
    assert [d["digest"] for d in descriptors] == [digest_of(body)]
    assert descriptors[0]["artifactType"] == "application/vnd.example.sig"
    filtered = requests.get(f"{base}/referrers/{subject_desc['digest']}?artifactType=application/x-none")
    assert filtered.json()["manifests"] == [] and filtered.headers["OCI-Filters-Applied"] == "artifactType"
    raw = skopeo("inspect", "--raw", "--tls-verify=false",
                 f"docker://{host(depot)}/hosted/test/artifact@{digest_of(body)}")
    assert json.loads(raw)["subject"]["digest"] == subject_desc["digest"]


# ---------------------------------------------------------------- 3. pull-through
def big_layout(root: Path) -> tuple[Layout, dict[str, Any]]:
    built = Layout(root)
    desc = built.image({"big.bin": os.urandom(6 * MiB)})
    built.tag(desc, "big")
    return built, desc


def test_pull_through_single_flight_and_stale(depot, upstream_registry, layout, tmp_path):
    built, single, index = layout
    big, big_desc = big_layout(tmp_path / "big")
    up = f"docker://127.0.0.1:{upstream_registry.port}/test"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{big.root}:big", f"{up}/big:v1")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{built.root}:multi", f"{up}/hello:multi")
    layer = json.loads(big.read(big_desc["digest"]))["layers"][0]["digest"]

    results = get_many(f"{depot.url}/v2/hub/test/big/blobs/{layer}", 20)
    assert all(r.status == 200 and r.complete for r in results), [(r.status, r.complete, len(r.body), r.body[:200] if r.status != 200 else b"") for r in results]
    assert {sha256(r.body) for r in results} == {layer.split(":")[1]}
    skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/hub/test/big:v1", f"oci:{tmp_path}/o1:v1")
    skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/hub/test/big:v1", f"oci:{tmp_path}/o2:v1")
    assert index_digest(tmp_path / "o1", "v1") == big_desc["digest"]
    assert upstream_registry.gets(f"/v2/test/big/blobs/{layer}") == 1

    # multi-arch through the mirror path (/v2/<image>/…): only the requested platform is fetched
    skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64",
           f"docker://{host(depot)}/test/hello:multi", f"oci:{tmp_path}/arm:arm")
    children = {c["platform"]["architecture"]: c["digest"]
                for c in json.loads(built.read(index["digest"]))["manifests"]}
    assert upstream_registry.gets(f"/v2/test/hello/manifests/{children['arm64']}") == 1
    assert upstream_registry.gets(f"/v2/test/hello/manifests/{children['amd64']}") == 0
    metrics = get(f"{depot.url}/-/metrics").body.decode()
    assert re.search(r'depot_upstream_requests_total\{[^}]*repository="hub"', metrics)

    tag_url = f"{depot.url}/v2/hub/test/big/manifests/v1"
    tag_gets = upstream_registry.gets("/v2/test/big/manifests/v1")
    time.sleep(2.2)   # metadata_ttl of the tag: a HEAD upstream finds the same digest
    tag = requests.get(tag_url, headers={"Accept": ALL_TYPES})
    assert tag.status_code == 200 and tag.headers["X-Cache"] == "REVALIDATED"
    assert upstream_registry.gets("/v2/test/big/manifests/v1") == tag_gets
    assert "HEAD /v2/test/big/manifests/v1 HTTP" in upstream_registry.log_path.read_text()

    upstream_registry.stop()
    try:
        time.sleep(2.2)
        for accept in (ALL_TYPES, OCI_MANIFEST):
            tag = requests.get(tag_url, headers={"Accept": accept})
            assert tag.status_code == 200 and tag.headers["X-Cache"] == "STALE"
            assert tag.headers["Docker-Content-Digest"] == big_desc["digest"]
        skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/hub/test/big:v1",
               f"oci:{tmp_path}/o3:v1")
        assert index_digest(tmp_path / "o3", "v1") == big_desc["digest"]
    finally:
        upstream_registry.start()


def test_group_reads_members_and_writes_to_deploy_to(depot, upstream_registry, layout, tmp_path):
    built, single, _ = layout
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1", f"docker://{host(depot)}/all/test/grouped:v1")
    hosted = requests.get(f"{depot.url}/v2/hosted/test/grouped/manifests/v1", headers={"Accept": ALL_TYPES})
    assert hosted.headers["Docker-Content-Digest"] == single["digest"]
    skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/all/test/grouped:v1", f"oci:{tmp_path}/g:v1")
    assert index_digest(tmp_path / "g", "v1") == single["digest"]
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1",
           f"docker://127.0.0.1:{upstream_registry.port}/test/remote-only:v1")
    skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/all/test/remote-only:v1",
           f"oci:{tmp_path}/r:v1")
    assert index_digest(tmp_path / "r", "v1") == single["digest"]
    assert json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host(depot)}/all/test/grouped"))[
        "Tags"] == ["v1"]


def test_upstream_token_flow_ratelimit_metric_and_429(upstream, depot_factory):
    """A Docker-Hub-like upstream: Bearer challenge, ratelimit header, then 429s."""
    layer = b"layer bytes"
    config = {"mediaType": EMPTY_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    manifest = artifact_manifest(config, [{"mediaType": "x/y", "digest": digest_of(layer), "size": len(layer)}],
                                 "application/x-test")
    upstream.put(f"v2/test/app/blobs/{digest_of(layer)}", layer)
    upstream.put("token", json.dumps({"token": "tok-1", "expires_in": 300}).encode())
    upstream.mode("/v2/", "status", status=401,
                  headers={"WWW-Authenticate": f'Bearer realm="{upstream.url}/token",service="fake"'})
    upstream.mode("/v2/test/app/manifests/v1", "status", status=200, body=manifest.decode(),
                  headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest_of(manifest),
                           "RateLimit-Remaining": "42;w=21600"})
    depot = depot_factory({"dh": {"format": "oci", "type": "proxy", "upstream": upstream.url,
                                  "metadata_ttl": "1s"}})
    v2 = f"{depot.url}/v2/dh/test/app"
    first = requests.get(f"{v2}/manifests/v1", headers={"Accept": ALL_TYPES})
    assert first.status_code == 200 and first.content == manifest
    assert first.headers["Content-Type"].startswith(OCI_MANIFEST)   # as upstream sent it
    assert first.headers["Docker-Content-Digest"] == digest_of(manifest)
    assert requests.get(f"{v2}/manifests/{digest_of(manifest)}").headers["X-Cache"] == "HIT"
    assert requests.get(f"{v2}/blobs/{digest_of(layer)}").content == layer
    sent = [e for e in upstream.log() if e["path"].startswith("/v2/test/app/")]
    assert len(sent) == 2 and all(e["headers"].get("Authorization") == "Bearer tok-1" for e in sent)
    assert upstream.count("/token") == 1
    metrics = get(f"{depot.url}/-/metrics").body.decode()
    assert re.search(r'depot_upstream_ratelimit_remaining\{repository="dh"\} 42\.0', metrics), metrics

    time.sleep(1.1)
    upstream.mode("/v2/test/app/manifests/v1", "status", status=429)
    stale = requests.get(f"{v2}/manifests/v1", headers={"Accept": ALL_TYPES})
    assert stale.status_code == 200 and stale.headers["X-Cache"] == "STALE" and stale.content == manifest
    upstream.mode("/v2/test/app/manifests/v2", "status", status=429)
    limited = requests.get(f"{v2}/manifests/v2", headers={"Accept": ALL_TYPES})
    assert limited.status_code == 429 and error_code(limited) == "TOOMANYREQUESTS"


# ---------------------------------------------------------------- 4. gc
def test_gc_reclaims_layers_of_deleted_manifest(depot, tmp_path):
    built = Layout(tmp_path / "gc")
    base = layer_tgz({"base": b"shared base\n"})
    one = built.image({"one": b"only in one\n"}, shared=base)
    two = built.image({"two": b"only in two\n"}, shared=base)
    built.tag(one, "one")
    built.tag(two, "two")
    ref = f"docker://{host(depot)}/hosted/test/gc"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:one", f"{ref}:one")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:two", f"{ref}:two")
    manifest_one = json.loads(built.read(one["digest"]))
    unique = [manifest_one["config"]["digest"], manifest_one["layers"][1]["digest"], one["digest"]]
    shared = manifest_one["layers"][0]["digest"]

    def stored(digest: str) -> bool:
        hexd = digest.split(":")[1]
        return (depot.data_dir / "blobs" / "sha256" / hexd[:2] / hexd[2:4] / hexd).exists()

    assert all(stored(d) for d in unique + [shared])
    skopeo("delete", "--tls-verify=false", f"{ref}:one")
    done = depot.run_cli("gc", "--grace", "0s")
    assert "removed" in done.stdout
    assert not any(stored(d) for d in unique), done.stdout
    assert stored(shared)
    gone = requests.get(f"{depot.url}/v2/hosted/test/gc/blobs/{unique[1]}")
    assert gone.status_code == 404 and error_code(gone) == "BLOB_UNKNOWN"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:two", f"oci:{tmp_path}/out:two")
    assert index_digest(tmp_path / "out", "two") == two["digest"]


def test_push_with_credentials_through_the_token_challenge(depot_factory, layout):
    built, single, _ = layout
    secure = depot_factory({"private": {"format": "oci", "type": "hosted"}}, secure=True)
    anonymous = requests.get(f"{secure.url}/v2/private/test/x/tags/list")
    assert anonymous.status_code == 401 and error_code(anonymous) == "UNAUTHORIZED"
    assert anonymous.headers["WWW-Authenticate"].startswith(f'Bearer realm="{secure.url}/-/token"')
    creds = f"admin:{secure.ADMIN_PASSWORD}"
    ref = f"docker://127.0.0.1:{secure.port}/private/test/x:v1"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{built.root}:v1", ref)
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", creds, ref))
    assert inspected["Digest"] == single["digest"]
    assert requests.get(f"{secure.url}/v2/_catalog").json()["repositories"] == []
    listed = requests.get(f"{secure.url}/v2/_catalog", auth=("admin", secure.ADMIN_PASSWORD))
    assert listed.json()["repositories"] == ["private/test/x"]


# ---------------------------------------------------------------- 5. bad input, protocol details
def test_bad_input_gets_spec_errors_and_stores_nothing(depot):
    v2 = f"{depot.url}/v2/hosted"
    bad_name = requests.get(f"{v2}/Bad_Name/manifests/latest")
    assert bad_name.status_code == 400 and error_code(bad_name) == "NAME_INVALID"
    assert error_code(requests.get(f"{v2}/a..b/tags/list")) == "NAME_INVALID"
    bad_digest = requests.get(f"{v2}/test/x/blobs/sha256:zzz")
    assert bad_digest.status_code == 400 and error_code(bad_digest) == "DIGEST_INVALID"
    unknown = requests.get(f"{v2}/test/x/blobs/{digest_of(b'never pushed')}")
    assert unknown.status_code == 404 and error_code(unknown) == "BLOB_UNKNOWN"
    through_mirror = requests.get(f"{depot.url}/v2/nosuch/x/manifests/a")
    assert through_mirror.status_code == 404 and error_code(through_mirror) == "MANIFEST_UNKNOWN"

    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"nope"), "size": 4}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}).encode()
    put = requests.put(f"{v2}/test/bad/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 400 and error_code(put) == "MANIFEST_BLOB_UNKNOWN"
    assert requests.get(f"{v2}/test/bad/manifests/{digest_of(body)}").status_code == 404
    assert error_code(requests.get(f"{v2}/test/bad/tags/list")) == "NAME_UNKNOWN"
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(body), "size": len(body)}]}).encode()
    dangling = requests.put(f"{v2}/test/bad/manifests/list", data=index, headers={"Content-Type": OCI_INDEX})
    assert dangling.status_code == 400 and error_code(dangling) == "MANIFEST_BLOB_UNKNOWN"
    mismatch = requests.put(f"{v2}/test/bad/manifests/{digest_of(b'x')}", data=index,
                            headers={"Content-Type": OCI_INDEX})
    assert mismatch.status_code == 400 and error_code(mismatch) == "DIGEST_INVALID"
    invalid = requests.put(f"{v2}/test/bad/manifests/v1", data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    assert invalid.status_code == 400 and error_code(invalid) == "MANIFEST_INVALID"

    wrong = requests.post(f"{v2}/test/bad/blobs/uploads/?digest={digest_of(b'other')}", data=b"content")
    assert wrong.status_code == 400 and error_code(wrong) == "DIGEST_INVALID"
    assert requests.head(f"{v2}/test/bad/blobs/{digest_of(b'content')}").status_code == 404
    missing = requests.get(f"{v2}/test/bad/blobs/uploads/{'0' * 32}")
    assert missing.status_code == 404 and error_code(missing) == "BLOB_UPLOAD_UNKNOWN"
    huge = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 2**20) + b'"}'
    oversized = requests.put(f"{v2}/test/bad/manifests/huge", data=huge, headers={"Content-Type": OCI_MANIFEST})
    assert oversized.status_code in (400, 413) and error_code(oversized) in ("SIZE_INVALID", "MANIFEST_INVALID")
    assert requests.get(f"{v2}/test/bad/manifests/huge").status_code == 404


def test_chunked_upload_resume_mount_cancel_and_paging(depot):
    v2 = f"{depot.url}/v2/hosted/test/chunks"
    data = os.urandom(300_000)
    start = requests.post(f"{v2}/blobs/uploads/")
    assert start.status_code == 202 and start.headers["Range"] == "0-0"
    location = start.headers["Location"]
    first = requests.patch(location, data=data[:100_000],
                           headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert first.status_code == 202 and first.headers["Range"] == "0-99999"
    out_of_order = requests.patch(first.headers["Location"], data=data[200_000:],
                                  headers={"Content-Range": "200000-299999"})
    assert out_of_order.status_code == 416
    status = requests.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-99999"
    requests.patch(location, data=data[100_000:200_000], headers={"Content-Range": "100000-199999"})
    done = requests.put(f"{location}?digest={digest_of(data)}", data=data[200_000:],
                        headers={"Content-Range": "200000-299999"})
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    ranged = requests.get(f"{v2}/blobs/{digest_of(data)}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]

    mounted = requests.post(f"{depot.url}/v2/other/copy/blobs/uploads/?mount={digest_of(data)}"
                            f"&from=hosted/test/chunks")
    assert mounted.status_code == 201
    assert requests.head(f"{depot.url}/v2/other/copy/blobs/{digest_of(data)}").status_code == 200
    not_there = requests.post(f"{depot.url}/v2/other/copy/blobs/uploads/?mount={digest_of(b'x')}&from=hosted/a")
    assert not_there.status_code == 202
    assert requests.delete(not_there.headers["Location"]).status_code == 204
    assert requests.get(not_there.headers["Location"]).status_code == 404

    empty = push_blob(v2, b"{}")
    for tag in ("a", "b", "c"):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": f"x/{tag}",
                           "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
                           "layers": []}).encode()
        assert requests.put(f"{v2}/manifests/{tag}", data=body,
                            headers={"Content-Type": OCI_MANIFEST}).status_code == 201
    paged = requests.get(f"{v2}/tags/list?n=2")
    assert paged.json()["tags"] == ["a", "b"]
    assert paged.headers["Link"] == '</v2/hosted/test/chunks/tags/list?n=2&last=b>; rel="next"'
    assert requests.get(f"{v2}/tags/list?n=2&last=b").json()["tags"] == ["c"]
    catalog = requests.get(f"{depot.url}/v2/_catalog").json()["repositories"]
    assert "hosted/test/chunks" in catalog
    assert requests.delete(f"{v2}/manifests/c").status_code == 202          # deleting a tag (v1.1)
    assert requests.get(f"{v2}/tags/list").json()["tags"] == ["a", "b"]
    assert requests.delete(f"{v2}/blobs/{digest_of(data)}").status_code == 202
    assert requests.head(f"{v2}/blobs/{digest_of(data)}").status_code == 404
