"""format oci against the distribution spec where its conformance tests found depot lacking
(issue 19): reads of a reference that cannot be a tag, sha512 digests end to end (raw HTTP: no
client here pushes sha512), HEAD Content-Length of empty blobs, and a pull-through repository
answering pulls exactly as a hosted one does (a Debian docker-registry upstream)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterator

import pytest
import requests

from depot_process import DepotProcess
from oci_fixtures import EMPTY_CONFIG, OCI_MANIFEST, Layout, artifact_manifest, digest_of, layer_tgz
from test_oci import ALL_TYPES, Registry, error_code, host, index_digest, skopeo


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    up = Registry(tmp_path_factory.mktemp("registry"))
    yield up
    up.stop()


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[DepotProcess]:
    repos = {"local": {"format": "oci", "type": "hosted"},
             "other": {"format": "oci", "type": "hosted"},
             "hub": {"format": "oci", "type": "proxy", "upstream": registry.url},
             "all": {"format": "oci", "type": "group", "members": ["local", "hub"], "deploy_to": "local"}}
    process = DepotProcess(tmp_path_factory.mktemp("depot"), repos, workers=2)
    yield process
    process.stop()


def stored_files(depot: DepotProcess) -> int:
    return sum(1 for p in (depot.data_dir / "blobs" / "sha256").rglob("*") if p.is_file())


# ---------------------------------------------------------------- 1. invalid reference reads
@pytest.mark.parametrize("repo", ["local", "hub", "all"])
def test_reading_a_reference_that_cannot_be_a_tag_is_manifest_unknown(depot, repo):
    url = f"{depot.url}/v2/{repo}/test/x/manifests/.INVALID_MANIFEST_NAME"
    got = requests.get(url)
    assert got.status_code == 404 and error_code(got) == "MANIFEST_UNKNOWN"
    assert requests.head(url).status_code == 404
    put = requests.put(url, data=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code in (400, 405)
    if repo != "hub":                         # a proxy repository takes no pushes at all
        assert put.status_code == 400 and error_code(put) == "MANIFEST_INVALID"


# ---------------------------------------------------------------- 2. sha512
def upload_monolithic(base: str, data: bytes, digest: str) -> requests.Response:
    return requests.post(f"{base}/blobs/uploads/?digest={digest}", data=data,
                         headers={"Content-Type": "application/octet-stream"})


def upload_chunked(base: str, data: bytes, digest: str) -> requests.Response:
    location = requests.post(f"{base}/blobs/uploads/").headers["Location"]
    half = len(data) // 2
    patched = requests.patch(location, data=data[:half], headers={"Content-Range": f"0-{half - 1}"})
    assert patched.status_code == 202
    return requests.put(f"{patched.headers['Location']}?digest={digest}", data=data[half:],
                        headers={"Content-Range": f"{half}-{len(data) - 1}"})


def test_sha512_blobs_manifests_mounts_and_referrers(depot):
    """Pushed and pulled by sha512, verified, answered with the sha512 unchanged; stored once
    (by sha256) whatever algorithm names the bytes."""
    base = f"{depot.url}/v2/local/test/sha512"
    config, layer = b"{}", os.urandom(70_000)
    for data, push in ((config, upload_monolithic), (layer, upload_chunked)):
        done = push(base, data, sha512(data))
        assert done.status_code == 201, done.text
        assert done.headers["Docker-Content-Digest"] == sha512(data)
        assert done.headers["Location"].endswith(f"/blobs/{sha512(data)}")
    got = requests.get(f"{base}/blobs/{sha512(layer)}")
    assert got.status_code == 200 and got.content == layer
    assert got.headers["Docker-Content-Digest"] == sha512(layer)
    head = requests.head(f"{base}/blobs/{sha512(layer)}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(layer)
    files = stored_files(depot)
    assert upload_monolithic(base, layer, digest_of(layer)).status_code == 201       # same bytes by sha256
    assert stored_files(depot) == files

    wrong = upload_monolithic(base, b"other bytes", sha512(b"promised bytes"))
    assert wrong.status_code == 400 and error_code(wrong) == "DIGEST_INVALID"
    wrong_chunked = upload_chunked(base, b"other bytes!", sha512(b"promised bytes"))
    assert wrong_chunked.status_code == 400 and error_code(wrong_chunked) == "DIGEST_INVALID"
    assert stored_files(depot) == files
    assert requests.head(f"{base}/blobs/{sha512(b'other bytes')}").status_code == 404

    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": EMPTY_CONFIG, "digest": sha512(config), "size": 2},
                           "layers": [{"mediaType": "application/octet-stream", "digest": sha512(layer),
                                       "size": len(layer)}]}).encode()
    put = requests.put(f"{base}/manifests/{sha512(manifest)}?tag=t512", data=manifest,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == sha512(manifest)
    for ref in (sha512(manifest), "t512"):
        pulled = requests.get(f"{base}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert pulled.status_code == 200 and pulled.content == manifest
        assert pulled.headers["Docker-Content-Digest"] == sha512(manifest)
    mismatch = requests.put(f"{base}/manifests/{sha512(b'x')}", data=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert mismatch.status_code == 400 and error_code(mismatch) == "DIGEST_INVALID"

    mounted = requests.post(f"{depot.url}/v2/other/test/copy/blobs/uploads/"
                            f"?mount={sha512(layer)}&from=local/test/sha512")
    assert mounted.status_code == 201 and mounted.headers["Docker-Content-Digest"] == sha512(layer)
    assert requests.get(f"{depot.url}/v2/other/test/copy/blobs/{sha512(layer)}").content == layer

    subject = {"mediaType": OCI_MANIFEST, "digest": sha512(manifest), "size": len(manifest)}
    referrer = artifact_manifest({"mediaType": EMPTY_CONFIG, "digest": sha512(config), "size": 2}, [],
                                 "application/vnd.example.sbom", subject)
    put = requests.put(f"{base}/manifests/{sha512(referrer)}", data=referrer, headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201 and put.headers["OCI-Subject"] == sha512(manifest)
    listed = requests.get(f"{base}/referrers/{sha512(manifest)}").json()["manifests"]
    assert [d["digest"] for d in listed] == [sha512(referrer)]


def test_proxy_passes_sha512_through_and_verifies_it(upstream, depot_factory):
    good, bad = b"a sha512 layer", b"tampered bytes"
    upstream.put(f"v2/test/app/blobs/{sha512(good)}", good)
    upstream.put(f"v2/test/app/blobs/{sha512(b'promised')}", bad)
    depot = depot_factory({"up": {"format": "oci", "type": "proxy", "upstream": upstream.url}})
    got = requests.get(f"{depot.url}/v2/up/test/app/blobs/{sha512(good)}")
    assert got.status_code == 200 and got.content == good
    assert got.headers["Docker-Content-Digest"] == sha512(good)
    again = requests.get(f"{depot.url}/v2/up/test/app/blobs/{sha512(good)}")
    assert again.headers["X-Cache"] == "HIT" and upstream.count(f"/v2/test/app/blobs/{sha512(good)}") == 1
    for _ in range(2):
        try:        # the body streams while it is checked: a mismatch cuts the connection short
            tampered = requests.get(f"{depot.url}/v2/up/test/app/blobs/{sha512(b'promised')}")
            assert tampered.status_code != 200 or tampered.content != bad
        except requests.exceptions.ChunkedEncodingError:
            pass
    assert upstream.count(f"/v2/test/app/blobs/{sha512(b'promised')}") == 2      # never cached
    assert not (depot.data_dir / "blobs" / "sha256" / hashlib.sha256(bad).hexdigest()[:2]).exists()


# ---------------------------------------------------------------- 3. HEAD of an empty blob
def test_head_of_an_empty_blob_carries_content_length_zero(depot, registry):
    base = f"{depot.url}/v2/local/test/empty"
    empty = digest_of(b"")
    assert upload_monolithic(base, b"", empty).status_code == 201
    location = requests.post(f"{registry.url}/v2/test/empty/blobs/uploads/").headers["Location"]
    sep = "&" if "?" in location else "?"
    assert requests.put(f"{location}{sep}digest={empty}", data=b"").status_code == 201
    for url in (f"{base}/blobs/{empty}", f"{depot.url}/v2/hub/test/empty/blobs/{empty}"):
        assert requests.get(url).headers["Content-Length"] == "0"
        for _ in range(3):        # first answer, memory-cache answer, hot-path answer
            head = requests.head(url)
            assert head.status_code == 200 and head.headers.get("Content-Length") == "0", head.headers


# ---------------------------------------------------------------- 4. proxy parity
def answer(response: requests.Response) -> dict[str, Any]:
    """What a client relies on in an answer (not X-Cache, ETag, Date…)."""
    out: dict[str, Any] = {"status": response.status_code}
    names = ["Docker-Content-Digest", "OCI-Filters-Applied"]
    if "/tags/list" not in response.url and response.status_code < 400:   # (names and messages differ)
        names.append("Content-Length")
    for name in names:
        if name in response.headers:
            out[name] = response.headers[name]
    if "Content-Type" in response.headers:
        out["Content-Type"] = response.headers["Content-Type"].split(";")[0]
    if response.status_code >= 400 and response.request.method == "GET":
        out["code"] = error_code(response)
    elif response.request.method == "GET":
        out["body"] = response.content if "tags" not in response.url else response.json()["tags"]
    return out


def test_a_pull_through_repository_answers_pulls_as_a_hosted_one_does(depot, registry, tmp_path):
    built = Layout(tmp_path / "l")
    single = built.image({"p.txt": b"parity\n"}, shared=layer_tgz({"base": b"base\n"}))
    built.tag(single, "v1")
    built.tag(single, "v2")
    for tag in ("v1", "v2"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:{tag}", f"docker://{host(depot)}/local/test/par:{tag}")
        skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:{tag}",
               f"docker://127.0.0.1:{registry.port}/test/par:{tag}")
    layers = json.loads(built.read(single["digest"]))["layers"]
    requests_to_compare: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "manifests/v1", {"Accept": ALL_TYPES}), ("HEAD", "manifests/v1", {"Accept": ALL_TYPES}),
        ("GET", f"manifests/{single['digest']}", {"Accept": OCI_MANIFEST}),
        ("HEAD", f"manifests/{single['digest']}", {}),
        ("GET", f"blobs/{layers[1]['digest']}", {}), ("HEAD", f"blobs/{layers[0]['digest']}", {}),
        ("GET", f"blobs/{layers[1]['digest']}", {"Range": "bytes=0-9"}),
        ("GET", "tags/list", {}), ("GET", "tags/list?n=1", {}), ("GET", "tags/list?n=1&last=v1", {}),
        ("GET", f"referrers/{single['digest']}", {}),
        ("GET", f"referrers/{single['digest']}?artifactType=x/y", {}),
        ("GET", "manifests/nosuchtag", {"Accept": ALL_TYPES}), ("HEAD", "manifests/nosuchtag", {}),
        ("GET", f"blobs/{digest_of(b'none')}", {}), ("HEAD", f"blobs/{digest_of(b'none')}", {}),
        ("GET", "manifests/.bad", {}), ("GET", "blobs/sha256:bad", {}),
    ]
    for method, tail, headers in requests_to_compare:
        hosted = requests.request(method, f"{depot.url}/v2/local/test/par/{tail}", headers=headers)
        proxied = requests.request(method, f"{depot.url}/v2/hub/test/par/{tail}", headers=headers)
        expected, got = answer(hosted), answer(proxied)
        if "tags" in tail and "body" in expected:
            assert json.loads(hosted.content)["name"] == "local/test/par"
            assert json.loads(proxied.content)["name"] == "hub/test/par"
        assert got == expected, (method, tail)
    unknown = requests.get(f"{depot.url}/v2/hub/test/nosuchimage/tags/list")
    assert unknown.status_code == 404 and error_code(unknown) == "NAME_UNKNOWN"
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{host(depot)}/hub/test/par:v2", f"oci:{out}:v2")
    assert index_digest(out, "v2") == single["digest"]
    assert json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host(depot)}/hub/test/par"))["Tags"] \
        == ["v1", "v2"]


def test_tag_parameters_are_confirmed_with_oci_tag_and_digest_algorithm_is_checked(depot):
    """A push by digest with `?tag=` MUST answer an OCI-Tag per tag it created (without it the
    spec's tests take tag parameters as unsupported and push sha512 content by tag instead)."""
    base = f"{depot.url}/v2/local/test/tagparams"
    config = b"{}"
    assert upload_monolithic(base, config, digest_of(config)).status_code == 201
    body = artifact_manifest({"mediaType": EMPTY_CONFIG, "digest": digest_of(config), "size": 2}, [], "x/tags")
    put = requests.put(f"{base}/manifests/{sha512(body)}?tag=1.2.3&tag=1.2&tag=latest", data=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    confirmed = [t.strip() for value in put.raw.headers.getlist("OCI-Tag") for t in value.split(",")]
    assert sorted(confirmed) == ["1.2", "1.2.3", "latest"]
    assert requests.get(f"{base}/tags/list").json()["tags"] == ["1.2", "1.2.3", "latest"]
    head = requests.head(f"{base}/manifests/latest")
    assert head.headers["Docker-Content-Digest"] == sha512(body)
    assert requests.post(f"{base}/blobs/uploads/?digest-algorithm=sha512").status_code == 202
    unsupported = requests.post(f"{base}/blobs/uploads/?digest-algorithm=md5")
    assert unsupported.status_code == 400 and error_code(unsupported) == "UNSUPPORTED"
