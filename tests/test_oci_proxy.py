"""format oci, pull-through details against a Debian docker-registry upstream (or the counting
fake upstream): the Accept variant of a tag, tag-list and referrers cache keys, HEAD of an
unstored blob, the referrers tag-schema fallback, revalidation inside single flight, and the
idle timeout of upload bodies (issue 10 items 7, 11, 15 and its closing note; issue 11)."""
from __future__ import annotations

import json
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from depot_process import DepotProcess
from oci_fixtures import EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, Layout, artifact_manifest, digest_of
from test_oci import ALL_TYPES, Registry, error_code, host, skopeo
from depot.registry.oci_manifest import DOCKER_MANIFEST

MiB = 2**20


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    up = Registry(tmp_path_factory.mktemp("registry"))
    yield up
    up.stop()


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[DepotProcess]:
    repos = {"hub": {"format": "oci", "type": "proxy", "upstream": registry.url, "negative_ttl": "1h"},
             "local": {"format": "oci", "type": "hosted"},
             "all": {"format": "oci", "type": "group", "members": ["local", "hub"], "deploy_to": "local"}}
    process = DepotProcess(tmp_path_factory.mktemp("depot"), repos, workers=2)
    yield process
    process.stop()


def hits(registry: Registry, method: str, path: str) -> int:
    """Requests with this method and exact path (query included) in the registry's access log."""
    text = registry.log_path.read_text(errors="replace")
    return len(re.findall(rf'"{method} {re.escape(path)} HTTP', text))


def push_upstream(registry: Registry, layout: Layout, tag: str, image: str) -> None:
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.root}:{tag}",
           f"docker://127.0.0.1:{registry.port}/{image}:{tag}")


def stored_blob(depot: DepotProcess, digest: str) -> bool:
    hexd = digest.split(":")[1]
    return (depot.data_dir / "blobs" / "sha256" / hexd[:2] / hexd[2:4] / hexd).exists()


# ---------------------------------------------------------------- issue 10 item 7
def test_accept_json_does_not_poison_the_tag_for_docker_clients(depot, registry, tmp_path):
    """`Accept: application/json` used to go upstream verbatim under the shared variant "all":
    the registry's 404 (no OCI manifest for a JSON-only client) was then negative-cached and
    served to every docker client for negative_ttl."""
    built = Layout(tmp_path / "l")
    built.tag(built.image({"a.txt": b"accept poisoning\n"}), "v1")
    push_upstream(registry, built, "v1", "test/poison")
    url = f"{depot.url}/v2/hub/test/poison/manifests/v1"
    odd = requests.get(url, headers={"Accept": "application/json"})
    assert odd.status_code == 200                   # as a hosted repository answers it
    normal = requests.get(url, headers={"Accept": ALL_TYPES})
    assert normal.status_code == 200 and normal.headers["Docker-Content-Digest"] == built.refs[0]["digest"]
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host(depot)}/hub/test/poison:v1"))
    assert inspected["Digest"] == built.refs[0]["digest"]
    assert hits(registry, "GET", "/v2/test/poison/manifests/v1") == 1   # both shared one variant


def test_a_content_negotiation_404_is_not_remembered_as_missing(depot, registry, tmp_path):
    """A client taking only Docker schema 2 gets the upstream's 404 for an OCI-only tag, but that
    404 is no "tag missing" (negative_ttl is 1h here): once the tag has a Docker form, the same
    client gets it, and OCI clients never saw the 404."""
    built = Layout(tmp_path / "l")
    built.tag(built.image({"b.txt": b"negotiated\n"}), "v1")
    push_upstream(registry, built, "v1", "test/negotiate")
    url = f"{depot.url}/v2/hub/test/negotiate/manifests/v1"
    narrow = requests.get(url, headers={"Accept": DOCKER_MANIFEST})
    assert narrow.status_code == 404 and error_code(narrow) == "MANIFEST_UNKNOWN"
    assert requests.get(url, headers={"Accept": ALL_TYPES}).status_code == 200
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{built.root}:v1",
           f"docker://127.0.0.1:{registry.port}/test/negotiate:v1")
    again = requests.get(url, headers={"Accept": DOCKER_MANIFEST})
    assert again.status_code == 200 and again.headers["Content-Type"].startswith(DOCKER_MANIFEST)


# ---------------------------------------------------------------- issue 10 item 15
def test_tag_list_is_fetched_once_whatever_the_query(depot, registry, tmp_path):
    built = Layout(tmp_path / "l")
    desc = built.image({"c.txt": b"tags\n"})
    for tag in ("a", "b", "c"):
        built.tag(desc, tag)
        push_upstream(registry, built, tag, "test/tags")
    base = f"{depot.url}/v2/hub/test/tags/tags/list"
    first = requests.get(f"{base}?n=2")
    assert first.json() == {"name": "hub/test/tags", "tags": ["a", "b"]}
    assert first.headers["Link"] == '</v2/hub/test/tags/tags/list?n=2&last=b>; rel="next"'
    assert requests.get(f"{base}?n=2&last=b").json()["tags"] == ["c"]
    assert requests.get(f"{base}?last=a").json()["tags"] == ["b", "c"]
    for query in ("", "?junk=1", "?n=3&n=3", "?last=zz&cachebuster=2"):
        assert requests.get(base + query).status_code == 200
    assert requests.get(base).json()["tags"] == ["a", "b", "c"]
    assert sum(hits(registry, "GET", "/v2/test/tags/tags/list" + q) for q in
               ("", "?n=2", "?n=2&last=b", "?last=a", "?junk=1")) == 1
    bad = requests.get(f"{base}?n=x")
    assert bad.status_code == 400 and error_code(bad) == "PAGINATION_NUMBER_INVALID"


# ---------------------------------------------------------------- closing note: HEAD of a blob
def test_head_of_an_unstored_blob_asks_upstream_head_and_stores_nothing(depot, registry, tmp_path):
    built = Layout(tmp_path / "l")
    desc = built.image({"big.bin": os.urandom(4 * MiB)})          # a 4 MiB layer
    built.tag(desc, "v1")
    push_upstream(registry, built, "v1", "test/headonly")
    layer = json.loads(built.read(desc["digest"]))["layers"][0]
    url = f"{depot.url}/v2/hub/test/headonly/blobs/{layer['digest']}"
    heads = hits(registry, "HEAD", f"/v2/test/headonly/blobs/{layer['digest']}")    # skopeo's own
    head = requests.head(url)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == layer["size"]
    assert head.headers["Docker-Content-Digest"] == layer["digest"]
    assert hits(registry, "GET", f"/v2/test/headonly/blobs/{layer['digest']}") == 0
    assert hits(registry, "HEAD", f"/v2/test/headonly/blobs/{layer['digest']}") == heads + 1
    assert not stored_blob(depot, layer["digest"])
    missing = requests.head(f"{depot.url}/v2/hub/test/headonly/blobs/{digest_of(b'never pushed')}")
    assert missing.status_code == 404
    got = requests.get(url)                                             # a GET still fills the cache
    assert got.status_code == 200 and digest_of(got.content) == layer["digest"]
    assert stored_blob(depot, layer["digest"])
    assert requests.head(url).headers["X-Cache"] == "HIT"


def test_repeated_heads_of_an_unstored_blob_reuse_the_size_within_metadata_ttl(upstream, depot_factory):
    blob = os.urandom(100_000)
    path = f"/v2/test/app/blobs/{digest_of(blob)}"
    upstream.put(path, blob)
    depot = depot_factory({"up": {"format": "oci", "type": "proxy", "upstream": upstream.url,
                                  "metadata_ttl": "1s"}})
    url = f"{depot.url}/v2/up/test/app/blobs/{digest_of(blob)}"
    answers = [requests.head(url) for _ in range(3)]
    assert [a.headers["Content-Length"] for a in answers] == [str(len(blob))] * 3
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "HIT", "HIT"]
    assert (upstream.count(path, "HEAD"), upstream.count(path, "GET")) == (1, 0)
    time.sleep(1.2)
    assert requests.head(url).headers["X-Cache"] == "MISS" and upstream.count(path, "HEAD") == 2


# ---------------------------------------------------------------- closing note: referrers fallback
def put_manifest(base: str, body: bytes, ref: str, media_type: str = OCI_MANIFEST) -> None:
    response = requests.put(f"{base}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
    assert response.status_code == 201, response.text


def push_blob(base: str, data: bytes) -> str:
    digest = digest_of(data)
    started = requests.post(f"{base}/blobs/uploads/")
    location = started.headers["Location"]
    location = location if location.startswith("http") else base.split("/v2/")[0] + location
    sep = "&" if "?" in location else "?"
    assert requests.put(f"{location}{sep}digest={digest}", data=data).status_code == 201
    return digest


def test_proxy_referrers_fall_back_to_the_tag_schema(depot, registry, tmp_path):
    """docker-registry 2.8 has no referrers API (404): depot reads the `sha256-<hex>` tag that
    clients maintain there instead, filters it itself, and answers 200 like a hosted repository."""
    built = Layout(tmp_path / "l")
    subject = built.image({"d.txt": b"signed image\n"})
    built.tag(subject, "v1")
    push_upstream(registry, built, "v1", "test/signed")
    base = f"{registry.url}/v2/test/signed"
    config = {"mediaType": EMPTY_CONFIG, "digest": push_blob(base, b"{}"), "size": 2}
    layer = {"mediaType": "application/vnd.example.sig", "digest": push_blob(base, b"sig"), "size": 3}
    signature = artifact_manifest(config, [layer], "application/vnd.example.sig", subject)
    put_manifest(base, signature, digest_of(signature))
    descriptor = {"mediaType": OCI_MANIFEST, "digest": digest_of(signature), "size": len(signature),
                  "artifactType": "application/vnd.example.sig"}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}).encode()
    put_manifest(base, index, subject["digest"].replace(":", "-"), OCI_INDEX)

    url = f"{depot.url}/v2/hub/test/signed/referrers/{subject['digest']}"
    listed = requests.get(url)
    assert listed.status_code == 200 and listed.headers["Content-Type"].startswith(OCI_INDEX)
    assert listed.json()["manifests"] == [descriptor]
    filtered = requests.get(url + "?artifactType=application/x-other")
    assert filtered.json()["manifests"] == [] and filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert requests.get(url + "?artifactType=application/vnd.example.sig").json()["manifests"] == [descriptor]
    through_group = requests.get(f"{depot.url}/v2/all/test/signed/referrers/{subject['digest']}")
    assert through_group.json()["manifests"] == [descriptor]
    nothing = requests.get(f"{depot.url}/v2/hub/test/signed/referrers/{digest_of(b'no subject')}")
    assert nothing.status_code == 200 and nothing.json()["manifests"] == []
    assert hits(registry, "GET", f"/v2/test/signed/referrers/{subject['digest']}") == 1   # one key, any filter


# ---------------------------------------------------------------- issue 11: revalidation
def concurrently(count: int, call: Any) -> list[Any]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_concurrent_revalidations_of_a_tag_cost_one_upstream_head(upstream, depot_factory):
    layer = b"layer"
    config = {"mediaType": EMPTY_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    manifest = artifact_manifest(config, [{"mediaType": "x/y", "digest": digest_of(layer), "size": 5}], "x/t")
    path = "/v2/test/app/manifests/v1"
    upstream.mode(path, "status", status=200, body=manifest.decode(), delay=0.5,   # 16 overlap in it
                  headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest_of(manifest)})
    depot = depot_factory({"dh": {"format": "oci", "type": "proxy", "upstream": upstream.url,
                                  "metadata_ttl": "1s"}}, workers=2)
    url = f"{depot.url}/v2/dh/test/app/manifests/v1"
    assert requests.get(url, headers={"Accept": ALL_TYPES}).headers["X-Cache"] == "MISS"
    time.sleep(1.3)
    answers = concurrently(16, lambda: requests.get(url, headers={"Accept": ALL_TYPES}, timeout=30))
    assert all(a.status_code == 200 and a.content == manifest for a in answers)
    assert {a.headers["X-Cache"] for a in answers} <= {"REVALIDATED", "HIT"}
    assert upstream.count(path, "HEAD") == 1
    assert upstream.count(path, "GET") == 1


# ---------------------------------------------------------------- issue 10 item 11 (OCI part)
def stalled(depot: DepotProcess, request_line: str) -> tuple[bytes, float]:
    """Send headers announcing 1000 bytes, then 11 of them, then nothing: (answer, seconds)."""
    with socket.create_connection(("127.0.0.1", depot.port), timeout=30) as sock:
        sock.sendall(f"{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: 1000\r\n\r\nfirst bytes".encode())
        started = time.monotonic()
        answer = sock.recv(4096)
        return answer, time.monotonic() - started


def test_stalled_upload_bodies_are_cut_after_client_timeout(depot_factory):
    depot = depot_factory({"box": {"format": "oci", "type": "hosted"}}, extra={"client_timeout": "2s"})
    base = f"{depot.url}/v2/box/test/slow"
    blob = digest_of(b"x" * 1000)
    session = requests.post(f"{base}/blobs/uploads/").headers["Location"]
    another = requests.post(f"{base}/blobs/uploads/").headers["Location"]
    for line in (f"PATCH {session}", f"PUT {another}?digest={blob}",
                 f"POST /v2/box/test/slow/blobs/uploads/?digest={blob}", "PUT /v2/box/test/slow/manifests/v1"):
        answer, waited = stalled(depot, line)
        assert answer.startswith(b"HTTP/1.1 408"), (line, answer[:200])
        assert 1.5 < waited < 15, (line, waited)
    assert requests.head(f"{base}/blobs/{blob}").status_code == 404
    assert requests.get(f"{base}/manifests/v1").status_code == 404
    assert not list((Path(depot.data_dir) / "blobs" / "sha256").rglob("*"))
