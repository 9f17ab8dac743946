"""Issue 11: with `--workers 2`, a manifest PUT racing a manifest deletion (which drops the blob
records no manifest references any more) must never leave a stored manifest whose layers GC then
deletes. Both run under the repository's lock, exclusive across workers (and nodes)."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import requests
from oci_fixtures import EMPTY_CONFIG, OCI_MANIFEST, digest_of

ROUNDS = 40


def push_blob(base: str, data: bytes) -> str:
    digest = digest_of(data)
    response = requests.post(f"{base}/blobs/uploads/?digest={digest}", data=data, timeout=30)
    assert response.status_code == 201, response.text
    return digest


def manifest(config: str, layer: str, size: int, note: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                                   "size": size}],
                       "annotations": {"note": note}}).encode()


def put(base: str, ref: str, body: bytes) -> int:
    return requests.put(f"{base}/manifests/{ref}", data=body, timeout=30,
                        headers={"Content-Type": OCI_MANIFEST}).status_code


def test_manifest_put_racing_a_deletion_never_loses_its_layers_to_gc(depot_factory):
    depot = depot_factory({"box": {"format": "oci", "type": "hosted"}}, workers=2)
    base = f"{depot.url}/v2/box/race"
    kept: list[tuple[str, str, bytes]] = []       # (tag, layer digest, layer bytes) of every 201
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(ROUNDS):
            config = push_blob(base, b"{}")          # a deletion may have dropped it last round
            layer = os.urandom(64 * 1024)
            digest = push_blob(base, layer)
            old = manifest(config, digest, len(layer), f"old {round_}")
            assert put(base, f"old{round_}", old) == 201
            deleting = pool.submit(requests.delete, f"{base}/manifests/{digest_of(old)}", timeout=30)
            new = manifest(config, digest, len(layer), f"new {round_}")
            putting = pool.submit(put, base, f"new{round_}", new)
            assert deleting.result().status_code == 202
            status = putting.result()
            assert status in (201, 400), status     # 400: MANIFEST_BLOB_UNKNOWN, the layer went first
            if status == 201:
                kept.append((f"new{round_}", digest, layer))
    assert kept, "no manifest PUT won a race: the test proves nothing"
    done = depot.run_cli("gc", "--grace", "0s")
    assert done.returncode == 0, done.stderr
    for tag, digest, layer in kept:
        assert requests.get(f"{base}/manifests/{tag}", timeout=30, headers={"Accept": OCI_MANIFEST}).ok
        blob = requests.get(f"{base}/blobs/{digest}", timeout=30)
        assert blob.status_code == 200 and blob.content == layer, f"{tag}: its layer was lost"
