"""Pure parts of format oci: names, digests, manifests, paging, Accept variants, the token flow."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
from aiohttp import web

from oci_fixtures import EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, artifact_manifest, digest_of
from depot.registry.oci_manifest import (DEFAULT_ACCEPT, DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_TYPES, OciError,
                                         accept_variant, error_body, page, parse_manifest, read_reference,
                                         validate_digest, validate_name, validate_reference)
from depot.registry.oci_proxy import ratelimit_value, upstream_image
from depot.registry.oci_uploads import RangeInvalid, parse_content_range
from depot.registry.repo import UpstreamAuth
from depot.upstreams.client import UpstreamClient
from depot.upstreams.docker_auth import Challenge, DockerAuth, parse_challenge, token_lifetime

D1, D2, D3 = digest_of(b"1"), digest_of(b"2"), digest_of(b"3")


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(OciError) as info:
        call(*args)
    return info.value.code or ""


@pytest.mark.parametrize("name", ["a", "library/alpine", "a.b_c__d-e--f/g0", "x/y/z"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a..b", "a/", "/a", "a//b", "-a", "a_", "a___b", "a" * 256])
def test_invalid_names(name):
    assert code_of(validate_name, name) == "NAME_INVALID"


def test_digests_and_references():
    assert validate_digest(D1) == D1
    assert code_of(validate_digest, "sha256:xyz") == "DIGEST_INVALID"
    assert code_of(validate_digest, "sha256:" + "A" * 64) == "DIGEST_INVALID"
    assert validate_digest("sha512:" + "a" * 128) == "sha512:" + "a" * 128     # image-spec registered
    assert code_of(validate_digest, "sha512:" + "a" * 64) == "DIGEST_INVALID"
    assert code_of(validate_digest, "sha384:" + "a" * 96) == "UNSUPPORTED"
    assert validate_reference("v1.0_rc-1") == "v1.0_rc-1"
    assert code_of(validate_reference, ".hidden") == "MANIFEST_INVALID"
    assert code_of(validate_reference, "x" * 129) == "MANIFEST_INVALID"


def test_reads_of_a_reference_that_cannot_be_a_tag_are_manifest_unknown():
    """The spec's tests read `.INVALID_MANIFEST_NAME` and expect 404 MANIFEST_UNKNOWN; a PUT of it
    stays 400 MANIFEST_INVALID (validate_reference above)."""
    with pytest.raises(OciError) as info:
        read_reference(".INVALID_MANIFEST_NAME")
    assert (info.value.status, info.value.code) == (404, "MANIFEST_UNKNOWN")
    assert read_reference("v1") == "v1" and read_reference(D1) == D1
    assert code_of(read_reference, "sha256:zzz") == "DIGEST_INVALID"


def test_sha512_manifests_are_known_by_their_sha512_and_stored_by_sha256():
    body = image_manifest()
    found = parse_manifest(body, OCI_MANIFEST, "sha512")
    assert found.digest == "sha512:" + hashlib.sha512(body).hexdigest()
    assert found.sha256 == hashlib.sha256(body).hexdigest()
    config = {"mediaType": EMPTY_CONFIG, "digest": "sha512:" + "b" * 128, "size": 2}
    assert parse_manifest(artifact_manifest(config, [], "x/y"), None).blobs == [config["digest"]]


def test_error_body_shape():
    body = json.loads(error_body("BLOB_UNKNOWN", "nope", {"digest": D1}))
    assert body == {"errors": [{"code": "BLOB_UNKNOWN", "message": "nope", "detail": {"digest": D1}}]}


def image_manifest(media_type: str = OCI_MANIFEST, **extra: Any) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 1},
           "layers": [{"mediaType": "x", "digest": D2, "size": 1}, {"mediaType": "x", "digest": D2, "size": 1},
                      {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                       "digest": D3, "size": 1, "urls": ["https://example.com/l"]}], **extra}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifest_references(media_type):
    body = image_manifest(media_type)
    found = parse_manifest(body, media_type)
    assert found.media_type == media_type and found.digest == digest_of(body) and found.size == len(body)
    assert found.blobs == [D1, D2]          # foreign layer skipped, duplicates once
    assert found.artifact_type == "application/vnd.oci.image.config.v1+json"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_references_children(media_type):
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": D1, "size": 3}, {"mediaType": OCI_MANIFEST, "digest": D2, "size": 4}]})
    found = parse_manifest(body.encode(), media_type)
    assert found.manifests == [D1, D2] and found.blobs == []


def test_subject_and_artifact_type():
    config = {"mediaType": EMPTY_CONFIG, "digest": D1, "size": 2}
    body = artifact_manifest(config, [], "application/vnd.example.sig",
                             {"mediaType": OCI_MANIFEST, "digest": D3, "size": 10})
    found = parse_manifest(body, None)
    assert found.subject == D3 and found.artifact_type == "application/vnd.example.sig"
    assert found.descriptor() == {"mediaType": OCI_MANIFEST, "digest": digest_of(body), "size": len(body),
                                  "artifactType": "application/vnd.example.sig"}


@pytest.mark.parametrize("body,content_type", [
    (b"{not json", OCI_MANIFEST),
    (b"[]", OCI_MANIFEST),
    (json.dumps({"schemaVersion": 1}).encode(), OCI_MANIFEST),
    (image_manifest(), DOCKER_MANIFEST),                                   # type mismatch
    (image_manifest("application/vnd.docker.distribution.manifest.v1+json"), None),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "bad", "size": 1},
                 "layers": []}).encode(), OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                 "config": {"digest": D1, "size": -1}, "layers": []}).encode(), OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}).encode(), OCI_INDEX),
])
def test_invalid_manifests(body, content_type):
    assert code_of(parse_manifest, body, content_type) == "MANIFEST_INVALID"


def test_paging():
    assert page(["c", "a", "b"], None, None) == (["a", "b", "c"], False)
    assert page(["c", "a", "b"], "2", None) == (["a", "b"], True)
    assert page(["c", "a", "b"], "2", "b") == (["c"], False)
    assert page(["a"], "0", None) == ([], True)
    assert code_of(page, ["a"], "x", None) == "PAGINATION_NUMBER_INVALID"


def test_accept_variants():
    everything = ", ".join(reversed(MANIFEST_TYPES)) + ", application/vnd.docker.distribution.manifest.v1+json"
    assert accept_variant(everything)[1] == "all"
    assert accept_variant("")[1] == "all" and accept_variant("*/*")[0] == ", ".join(MANIFEST_TYPES)
    header, variant = accept_variant(f"{OCI_MANIFEST};q=0.9")
    assert header == OCI_MANIFEST and variant not in ("all", accept_variant(DOCKER_MANIFEST)[1])


@pytest.mark.parametrize("accept", ["application/json", "text/html, */*", "application/x-garbage;q=1"])
def test_an_accept_naming_no_manifest_type_asks_upstream_what_the_all_variant_asks(accept):
    """Issue 10 item 7: `Accept: application/json` was sent upstream verbatim under the shared
    variant "all", so its 404 was then served to every docker client. The variant is now a
    function of exactly what goes upstream."""
    assert accept_variant(accept) == (DEFAULT_ACCEPT, "all")
    header, variant = accept_variant(f"application/json, {OCI_MANIFEST}")
    assert header == OCI_MANIFEST and variant == accept_variant(OCI_MANIFEST)[1]


def test_content_range_and_helpers():
    assert parse_content_range("0-99") == (0, 99)
    assert parse_content_range("bytes 100-199/*") == (100, 199)
    assert parse_content_range(None) is None
    with pytest.raises(RangeInvalid):
        parse_content_range("9-1")
    assert upstream_image("https://registry-1.docker.io", "alpine") == "library/alpine"
    assert upstream_image("https://registry-1.docker.io", "me/app") == "me/app"
    assert upstream_image("http://127.0.0.1:5000", "alpine") == "alpine"
    assert ratelimit_value("76;w=21600") == 76 and ratelimit_value(None) is None


def test_challenge_parsing():
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull"'
    assert parse_challenge(header) == Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")
    assert parse_challenge('Basic realm="x"').scheme == "basic"
    assert parse_challenge(None).scheme == "basic"
    assert token_lifetime({"expires_in": 300}, 0) == 290
    assert token_lifetime({}, 0) == 50


def test_token_flow_against_a_real_token_server():
    """Challenge discovery, anonymous and credentialed tokens, caching until expiry."""
    calls: list[dict[str, Any]] = []

    async def v2(request: web.Request) -> web.Response:
        realm = f"http://{request.host}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})

    async def token(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        calls.append({"scope": request.query.get("scope"), "service": request.query.get("service"),
                      "user": base64.b64decode(auth[6:]).decode().split(":")[0] if auth else None})
        return web.json_response({"token": f"tok{len(calls)}", "expires_in": 300})

    async def run() -> list[dict[str, str]]:
        app = web.Application()
        app.router.add_get("/v2/", v2)
        app.router.add_get("/token", token)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client = UpstreamClient()
        auth = DockerAuth(client)
        base = f"http://127.0.0.1:{port}"
        try:
            return [await auth.headers(base, "library/alpine", UpstreamAuth()),
                    await auth.headers(base, "library/alpine", UpstreamAuth()),
                    await auth.headers(base, "me/app", UpstreamAuth("me", "secret"))]
        finally:
            await client.close()
            await runner.cleanup()

    first, again, mine = asyncio.run(run())
    assert first == again == {"Authorization": "Bearer tok1"}
    assert mine == {"Authorization": "Bearer tok2"}
    assert calls == [{"scope": "repository:library/alpine:pull", "service": "reg", "user": None},
                     {"scope": "repository:me/app:pull", "service": "reg", "user": "me"}]


def test_forget_drops_only_that_upstreams_tokens():
    auth = DockerAuth(UpstreamClient())
    auth.challenges["http://a"] = (Challenge("bearer", "http://a/token", "a"), 60)
    auth.challenges["http://b"] = (Challenge("bearer", "http://b/token", "b"), 60)
    auth.tokens[("http://a/token", "a", "repository:x:pull", "")] = ("ta", 60)
    auth.tokens[("http://b/token", "b", "repository:x:pull", "")] = ("tb", 60)
    auth.forget("http://a")
    assert list(auth.challenges.keys()) == ["http://b"]
    assert [v[0] for v in auth.tokens.values()] == ["tb"]
