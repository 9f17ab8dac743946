"""OCI blob uploads across several depot nodes on one PostgreSQL and one Ceph RGW bucket (issue 13):
the requests of one chunked upload may reach any node, with no sticky sessions."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from urllib.parse import urlsplit

import requests
from oci_fixtures import EMPTY_CONFIG, OCI_MANIFEST, digest_of
from test_scale import cluster  # noqa: F401  (the fixture: nodes on a fresh database and bucket prefix)

MiB = 1024 * 1024
IMAGES = {"repositories": {"images": {"format": "oci", "type": "hosted"}}}


def test_a_chunked_upload_alternating_between_nodes_is_one_verified_blob(cluster, tmp_path):  # noqa: F811
    """POST on node A, PATCHes alternately on B and A, status asked on either, PUT on B; the
    manifest goes to A and skopeo pulls the image from B (before: 404 BLOB_UPLOAD_UNKNOWN)."""
    a, b = cluster(2, workers=2, extra=IMAGES)
    nodes = (a, b)
    layer = os.urandom(5 * MiB + 4321)
    started = requests.post(f"{a.url}/v2/images/big/blobs/uploads/", timeout=30)
    assert started.status_code == 202, started.text
    path = urlsplit(started.headers["Location"]).path
    step, offset, turn = 3 * MiB // 2, 0, 1
    while offset + step < len(layer):
        node, other = nodes[turn % 2], nodes[(turn + 1) % 2]
        chunk = layer[offset:offset + step]
        sent = requests.patch(f"{node.url}{path}", data=chunk, timeout=60,
                              headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                                       "Content-Type": "application/octet-stream"})
        assert sent.status_code == 202, (node.url, sent.text)
        offset += len(chunk)
        assert sent.headers["Range"] == f"0-{offset - 1}"
        status = requests.get(f"{other.url}{path}", timeout=30)     # the other node knows it at once
        assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
        turn += 1
    stale = requests.patch(f"{a.url}{path}", data=b"x", timeout=30, headers={"Content-Range": "0-0"})
    assert stale.status_code == 416 and stale.headers["Range"] == f"0-{offset - 1}"
    done = requests.put(f"{b.url}{path}?digest={digest_of(layer)}", data=layer[offset:], timeout=60,
                        headers={"Content-Range": f"{offset}-{len(layer) - 1}"})
    assert done.status_code == 201, done.text
    assert requests.get(f"{a.url}{path}", timeout=30).status_code == 404       # the session ended everywhere
    for node in nodes:
        got = requests.get(f"{node.url}/v2/images/big/blobs/{digest_of(layer)}", timeout=60)
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(layer).digest()

    config = b"{}"
    assert requests.post(f"{b.url}/v2/images/big/blobs/uploads/?digest={digest_of(config)}", data=config,
                         timeout=30).status_code == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": EMPTY_CONFIG, "digest": digest_of(config), "size": 2},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": digest_of(layer), "size": len(layer)}]}).encode()
    put = requests.put(f"{a.url}/v2/images/big/manifests/v1", data=manifest, timeout=30,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is required (apt-get install -y skopeo)"
    out = tmp_path / "out"
    pulled = subprocess.run([skopeo, "copy", "--src-tls-verify=false", f"docker://127.0.0.1:{b.port}/images/big:v1",
                             f"oci:{out}:v1"], capture_output=True, text=True, timeout=180)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "blobs" / "sha256" / digest_of(layer).split(":")[1]).read_bytes() == layer


def test_an_upload_session_started_on_one_node_is_seen_and_cancelled_on_another(cluster):  # noqa: F811
    a, b = cluster(2, extra=IMAGES)
    started = requests.post(f"{b.url}/v2/images/hello/blobs/uploads/", timeout=30)
    assert started.status_code == 202, started.text
    path = urlsplit(started.headers["Location"]).path
    assert requests.patch(f"{b.url}{path}", data=b"abc", timeout=30).status_code == 202
    status = requests.get(f"{a.url}{path}", timeout=30)
    assert status.status_code == 204 and status.headers["Range"] == "0-2"
    assert requests.delete(f"{a.url}{path}", timeout=30).status_code == 204
    assert requests.get(f"{b.url}{path}", timeout=30).status_code == 404
    gone = requests.put(f"{b.url}{path}?digest={digest_of(b'abc')}", timeout=30)
    assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
