"""Fuzzing (hypothesis) of every parser and path/name validator, and of a running depot over HTTP.

Pure parsers may only fail with their documented error types (FormatError and its OciError,
ValueError from the pypi_index/npm parsers and units, ConfigError from the configuration);
anything else would escape as a 500 or a traceback. The HTTP pass sends random methods, paths,
headers and bodies to one depot with a hosted and a proxy repository of each format (proxies
point at a closed port): no 5xx except 502/504 from a proxy, the server stays up, and nothing
is written outside its data directory.

`DEPOT_FUZZ_EXAMPLES` sets the examples per test (default: a CI-friendly 300);
`bench/fuzz_long.sh` runs many more.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depot_process import DepotProcess, free_port
from depot.proxy.config import ConfigError, validate
from depot.proxy.units import parse_duration, parse_size
from depot.registry import generic, npm_packument, npm_publish, oci_manifest, pypi_index, pypi_upload
from depot.registry.base import FormatError

EXAMPLES = int(os.environ.get("DEPOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------------------- strategies

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4),
                    max_leaves=20)
YAMLISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10),
                                                                                    inner, max_size=4),
                       max_leaves=12)
DEEP = st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth + b"]" * depth)
BODIES = st.one_of(st.binary(max_size=512), JSON.map(lambda doc: json.dumps(doc).encode()), DEEP)
PATHLIKE = st.lists(st.sampled_from(["a", "..", ".", "", "%2e%2e", "x.tgz", "~", "+", "@s", "\x00", "é",
                                     "a/b", "\\", "-", "sha256:" + "0" * 64]) | st.text(max_size=8),
                    max_size=6).map("/".join)


def only(errors: tuple[type[BaseException], ...], func: Any, *args: Any) -> Any:
    """Call func; return its result, or None when it raised one of `errors` (others escape)."""
    try:
        return func(*args)
    except errors:
        return None


# ---------------------------------------------------------------------------- generic

@FUZZ
@given(PATHLIKE | st.text())
def test_generic_validate_path(path: str) -> None:
    checked = only((FormatError,), generic.validate_path, path)
    if checked is not None:
        parts = checked.split("/")
        assert all(p not in ("", ".", "..") for p in parts) and "\x00" not in checked
        base = Path("/data/hosted")
        assert base in (base / checked).resolve().parents


# ---------------------------------------------------------------------------- pypi

FORM_KEYS = st.sampled_from([":action", "protocol_version", "name", "version", "filetype", "requires_python",
                             "sha256_digest", "md5_digest", "blake2_256_digest", "metadata_version"])


@FUZZ
@given(st.dictionaries(FORM_KEYS, st.text(max_size=70) | st.sampled_from(["file_upload", "1", "sdist",
                                                                        "bdist_wheel", "1.0", "pkg"])),
       st.none() | st.text(max_size=40) | st.sampled_from(["pkg-1.0.tar.gz", "pkg-1.0-py3-none-any.whl"]))
def test_pypi_upload_form(fields: dict[str, str], filename: str | None) -> None:
    upload = only((FormatError,), pypi_upload.validate_form, fields, filename)
    if upload is not None:
        assert pypi_index.safe_filename(upload.filename) and upload.project == pypi_index.normalize_project(upload.name)


@FUZZ
@given(st.binary(max_size=2048))
def test_pypi_wheel_metadata_of_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-wheel.whl"
    path.write_bytes(b"PK\x03\x04" + data if data[:1] == b"Z" else data)
    upload = pypi_upload.Upload("pkg", "pkg", "1.0", "pkg-1.0-py3-none-any.whl", "bdist_wheel")
    only((FormatError,), pypi_upload.wheel_metadata, path, upload)


@FUZZ
@given(BODIES | st.text(max_size=300).map(str.encode), st.sampled_from(["https://up.example/simple/p/", "",
                                                                        "http://[::1/"]))
def test_pypi_index_parsers(body: bytes, page_url: str) -> None:
    page = only((ValueError,), pypi_index.parse_page, body, page_url, "p")
    if page is not None:
        pypi_index.render_html(page, lambda r: pypi_index.relative_link("p", r))
        assert pypi_index.load_page(pypi_index.dump_page(page), "p").files == page.files
    only((ValueError,), pypi_index.parse_index, body)
    only((ValueError,), pypi_index.load_names, body)


@FUZZ
@given(st.text(max_size=80), st.none() | st.text(max_size=20))
def test_pypi_names_and_negotiation(text: str, query_format: str | None) -> None:
    name = pypi_index.normalize_project(text)
    assert name is None or name == pypi_index.normalize_project(name)
    assert pypi_index.choose_variant(text, query_format) in (None, "json", "html")
    pypi_index.file_version(text)
    pypi_index.valid_file_id(text)
    pypi_index.sort_versions([text, "1.0", text.strip()])
    safe = pypi_index.safe_filename(text)
    assert not safe or ("/" not in text and text not in (".", ".."))


# ---------------------------------------------------------------------------- npm

def publish_doc(name: str, version: str, data: bytes, dist: dict[str, Any], tags: Any) -> dict[str, Any]:
    """A publish body as npm sends it, with the parts a strategy chooses."""
    return {"_id": name, "name": name, "dist-tags": tags,
            "versions": {version: {"name": name, "version": version, "dist": dist}},
            "_attachments": {f"{name}-{version}.tgz": {"content_type": "application/octet-stream",
                                                       "data": base64.b64encode(data).decode(),
                                                       "length": len(data)}}}


@FUZZ
@given(st.sampled_from(["dpkg", "@s/dpkg"]) | st.text(max_size=12), st.sampled_from(["1.0.0"]) | st.text(max_size=8),
       st.binary(max_size=64), st.dictionaries(st.sampled_from(["integrity", "shasum", "tarball"]), JSON),
       JSON)
def test_npm_publish_structured(name: str, version: str, data: bytes, dist: dict[str, Any], tags: Any) -> None:
    doc = publish_doc(name, version, data, dist, tags)
    for body in (doc, json.dumps(doc).encode()):
        published = only((FormatError,), npm_publish.parse_publish, body, name)
        if published is not None:
            assert published.filename == npm_packument.tarball_filename(name, version)


@FUZZ
@given(BODIES, st.text(max_size=20))
def test_npm_publish_and_tag_bodies(body: bytes, url_name: str) -> None:
    only((FormatError,), npm_publish.parse_publish, body, url_name)
    only((FormatError,), npm_publish.parse_json_body, body)
    only((FormatError,), npm_publish.parse_tag_body, body)
    only((ValueError,), npm_packument.loads, body)


@FUZZ
@given(JSON | st.text(max_size=40))
def test_npm_name_version_tag_checks(value: Any) -> None:
    for check in (npm_publish.check_name, npm_publish.check_version, npm_publish.check_tag):
        only((FormatError,), check, value)
    if isinstance(value, str):
        only((FormatError,), npm_publish.parse_sri, value)
        only((FormatError,), npm_publish.verify_digests, b"x", value, value)
        name = npm_packument.parse_name(value)
        assert name is None or ".." not in name.split("/")
        filename = npm_packument.tarball_basename(value)
        assert filename is None or "/" not in filename
        npm_packument.wants_abbreviated(value)
        npm_packument.highest_version([value, "1.0.0"])


# ---------------------------------------------------------------------------- oci

DESCRIPTOR = st.fixed_dictionaries({}, optional={"mediaType": JSON, "digest": st.sampled_from(
    ["sha256:" + "a" * 64, "sha512:abc", "bad"]) | JSON, "size": st.integers() | JSON, "urls": JSON})
MANIFEST = st.fixed_dictionaries({"schemaVersion": st.sampled_from([2, 2.0, 1]) | JSON}, optional={
    "mediaType": st.sampled_from(list(oci_manifest.MANIFEST_TYPES)) | JSON, "config": DESCRIPTOR | JSON,
    "layers": st.lists(DESCRIPTOR | JSON, max_size=3) | JSON, "manifests": st.lists(DESCRIPTOR, max_size=3) | JSON,
    "subject": DESCRIPTOR | JSON, "annotations": JSON, "artifactType": JSON})


@FUZZ
@given(MANIFEST.map(lambda doc: json.dumps(doc).encode()) | BODIES,
       st.none() | st.sampled_from(list(oci_manifest.MANIFEST_TYPES) + ["application/json"]) | st.text(max_size=20))
def test_oci_parse_manifest(body: bytes, content_type: str | None) -> None:
    found = only((FormatError,), oci_manifest.parse_manifest, body, content_type)
    if found is not None:
        assert all(oci_manifest.DIGEST_RE.fullmatch(d) for d in found.blobs + found.manifests)
        json.dumps(found.descriptor())


@FUZZ
@given(PATHLIKE | st.text(max_size=80), st.none() | st.text(max_size=6), st.none() | st.text(max_size=6))
def test_oci_names_digests_references(text: str, n: str | None, last: str | None) -> None:
    name = only((FormatError,), oci_manifest.validate_name, text)
    assert name is None or ".." not in name.split("/")
    digest = only((FormatError,), oci_manifest.validate_digest, text)
    assert digest is None or "/" not in oci_manifest.hex_of(digest)
    only((FormatError,), oci_manifest.validate_reference, text)
    read = only((FormatError,), oci_manifest.read_reference, text)
    assert read is None or read == text
    if digest is not None:
        assert oci_manifest.sri_of(digest) is None or oci_manifest.sri_of(digest).startswith("sha512-")
    only((FormatError,), oci_manifest.page, [text, "a", "b"], n, last)
    only((FormatError,), oci_manifest.tags_page, "/v2/r", "img", [text, "a"], n, last)
    header, variant = oci_manifest.accept_variant(text)
    assert all(t.strip() in oci_manifest.MANIFEST_TYPES for t in header.split(","))


# ---------------------------------------------------------------------------- units and config

@FUZZ
@given(YAMLISH | st.integers(min_value=-10**400, max_value=10**400)
       | st.from_regex(r"\A\s*\d{1,400}(\.\d{0,5})?\s*(ms|s|m|h|d|w|[KMGT]i?B|B)?\s*\Z"))
def test_units(value: Any) -> None:
    for parse in (parse_duration, parse_size):
        only((ValueError,), parse, value)


REPO = st.fixed_dictionaries({"format": st.sampled_from(["generic", "pypi", "npm", "oci"]) | YAMLISH,
                              "type": st.sampled_from(["hosted", "proxy", "group"]) | YAMLISH},
                             optional={key: YAMLISH for key in (
                                 "upstream", "metadata_ttl", "negative_ttl", "members", "deploy_to",
                                 "metadata_patterns", "allow_overwrite", "mirror", "username", "password",
                                 "password_env", "password_file", "token_env", "token_file", "options",
                                 "anonymous_read", "access", "max_upload")})
CONFIG = st.fixed_dictionaries({}, optional={
    "listen": st.just("127.0.0.1:8080") | YAMLISH, "data_dir": YAMLISH, "public_url": YAMLISH,
    "trusted_proxies": YAMLISH, "workers": YAMLISH, "log_level": YAMLISH, "client_timeout": YAMLISH,
    "access_log": YAMLISH, "cache": st.dictionaries(st.sampled_from(["max_size", "memory_size"]), YAMLISH) | YAMLISH,
    "upstream": st.dictionaries(st.sampled_from(["connect_timeout", "read_timeout", "retries", "ca_file"]),
                                YAMLISH) | YAMLISH,
    "repositories": st.dictionaries(st.sampled_from(["a", "b", "v2", "Bad"]), REPO, min_size=1, max_size=2)
    | st.dictionaries(st.sampled_from(["a", "b"]), REPO | YAMLISH, max_size=2) | YAMLISH,
    "open_access": YAMLISH, "tls": YAMLISH, "forward_proxy": YAMLISH,
    "keepalive_timeout": YAMLISH, "header_timeout": YAMLISH,
    "health": st.dictionaries(st.sampled_from(["min_free", "other"]),
                              st.sampled_from(["5%", "1GiB", "-1%", "nan%", "100%", " %"]) | YAMLISH) | YAMLISH})


@FUZZ
@given(CONFIG | YAMLISH.filter(lambda doc: isinstance(doc, dict)))
def test_config_validate(document: dict[str, Any]) -> None:
    only((ConfigError,), validate, document)


@pytest.mark.parametrize("document", [
    {"trusted_proxies": None}, {"workers": float("inf")}, {"cache": {"max_size": "9" * 400}},
    {"repositories": {"a": {"format": [], "type": "hosted"}}},
    {"repositories": {"a": {"format": "generic", "type": "hosted", "metadata_patterns": 5}}},
    {"repositories": {"a": {"format": "generic", "type": "hosted", "password_file": 5}}},
    {"repositories": {"a": {"format": "generic", "type": "hosted", "password_file": "a\x00b"}}},
    {"upstream": {"ca_file": "x" * 5000}}, {"upstream": {"ca_file": "a\x00b"}},
    {"tls": {"cert": "x" * 5000, "key": "k"}}, {"storage": {"kind": "s3", "secret_key_file": "x" * 5000}},
    {"repositories": {"a": {"format": "generic", "type": "hosted", "metadata_ttl": 10**400}}},
    {"client_timeout": 0}, {"keepalive_timeout": float("inf")}, {"header_timeout": "1e400"},
    {"health": {"min_free": "nan%"}}, {"health": {"min_free": 1.5e400}},
])
def test_config_errors_found_by_fuzzing(document: dict[str, Any]) -> None:
    """Documents that once escaped validate() as TypeError/OverflowError/ValueError."""
    with pytest.raises(ConfigError):
        validate(document)


# ---------------------------------------------------------------------------- HTTP

PROXY_PREFIXES = ("/gen-p/", "/py-p/", "/npm-p/", "/v2/oci-p/")
# every endpoint depot has, with `{}` where a random segment goes
TEMPLATES = (
    "PUT /gen-h/{}/{}", "GET /gen-h/{}", "GET /gen-p/{}/{}", "DELETE /gen-h/{}", "HEAD /gen-p/{}",
    "POST /py-h/", "POST /py-h/legacy/", "GET /py-h/simple/", "GET /py-h/simple/{}/", "GET /py-p/simple/{}/",
    "GET /py-p/simple/{}", "GET /py-h/files/{}/{}/{}", "GET /py-p/files/{}/{}/{}", "POST /py-h/{}/{}/yank",
    "DELETE /py-h/{}/{}/yank", "DELETE /py-h/{}/{}", "PUT /npm-h/{}", "GET /npm-h/{}", "GET /npm-p/{}",
    "GET /npm-h/{}/{}", "GET /npm-p/{}/-/{}", "PUT /npm-h/-/user/org.couchdb.user:{}", "POST /npm-h/-/v1/login",
    "GET /npm-h/-/v1/search?text={}&size={}&from={}", "GET /npm-h/-/whoami", "GET /npm-p/-/ping",
    "PUT /npm-h/-/package/{}/dist-tags/{}", "GET /npm-h/-/package/{}/dist-tags", "PUT /npm-h/{}/-rev/{}",
    "DELETE /npm-h/{}/-rev/{}", "DELETE /npm-h/{}/-/{}/-rev/{}", "POST /npm-h/-/npm/v1/security/advisories/bulk",
    "GET /v2/", "PUT /v2/oci-h/{}/manifests/{}", "GET /v2/oci-h/{}/manifests/{}", "GET /v2/oci-p/{}/manifests/{}",
    "DELETE /v2/oci-h/{}/manifests/{}", "POST /v2/oci-h/{}/blobs/uploads/?digest={}&mount={}&from={}",
    "PATCH /v2/oci-h/img/blobs/uploads/{}", "PUT /v2/oci-h/img/blobs/uploads/{}?digest={}",
    "GET /v2/oci-h/{}/blobs/{}", "GET /v2/oci-p/{}/blobs/{}", "GET /v2/oci-h/{}/tags/list?n={}&last={}",
    "GET /v2/oci-p/{}/tags/list?n={}&last={}", "GET /v2/oci-h/{}/referrers/{}?artifactType={}",
    "GET /v2/oci-p/{}/referrers/{}?artifactType={}", "HEAD /v2/oci-p/{}/blobs/{}", "HEAD /v2/oci-h/{}/manifests/{}",
    "POST /v2/oci-h/{}/blobs/uploads/?digest-algorithm={}", "PUT /v2/oci-h/{}/manifests/{}?tag={}&tag={}",
    "GET /v2/_catalog?n={}&last={}", "GET /-/token?scope={}&service={}", "GET /v2/token?scope={}", "GET /-/api/audit?limit={}",
    "GET /-/api/audit?limit={}&offset={}",
    "GET /-/api/stats", "GET /-/api/repositories", "GET /-/ui/", "GET /-/ui/repositories/{}?path={}",
    "GET /-/metrics", "GET /{}/{}", "GET /{}",
)
SEGMENT = (st.sampled_from(["pkg", "img", "a/b", "1.0", "1.0.0", "latest", "v1", "sha256:" + "a" * 64, "a" * 64,
                            "sha512:" + "b" * 128, "sha512", ".INVALID_MANIFEST_NAME",
                            "@s%2fpkg", "@s/pkg", "..", "%2e%2e", "%2F", "a..b", "-1", "0", "9" * 25, "", "x.tgz",
                            "pkg-1.0.tar.gz", "pkg-1.0-py3-none-any.whl", "repository:oci-h/img:pull,push",
                            "gen-h", "oci-p"]) | st.text(max_size=12)).map(
    lambda seg: quote(seg, safe="/%@:+~!$&'()*,;="))
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"])


@st.composite
def targets(draw: st.DrawFn) -> tuple[str, str]:
    """(method, path): an endpoint template filled with random segments, sometimes another method."""
    method, template = draw(st.sampled_from(TEMPLATES)).split(" ", 1)
    path = template.format(*(draw(SEGMENT) for _ in range(template.count("{}"))))
    if draw(st.integers(0, 9)) == 0:
        method = draw(METHODS)
    return method, path


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
HEADER_VALUES = {
    "Authorization": st.sampled_from(["Basic ", "Bearer ", "", "dpt_", "Bearer a.b.c"]).flatmap(
        lambda scheme: st.one_of(HEADER_TEXT, st.binary(max_size=30).map(
            lambda raw: base64.b64encode(raw).decode())).map(lambda rest: scheme + rest)),
    "Content-Type": st.sampled_from(["application/json", "multipart/form-data; boundary=xx",
                                     "application/octet-stream", oci_manifest.OCI_MANIFEST,
                                     oci_manifest.OCI_INDEX]) | HEADER_TEXT,
    "Accept": st.sampled_from([pypi_index.JSON_TYPE, npm_packument.ABBREVIATED_TYPE, "*/*", "text/html;q=x"])
    | HEADER_TEXT,
    "Range": st.sampled_from(["bytes=0-", "bytes=5-1", "bytes=-0", "bytes=0-0,2-3", "bytes=99999999999999999999-"])
    | HEADER_TEXT,
    "Content-Range": HEADER_TEXT, "If-None-Match": HEADER_TEXT, "If-Modified-Since": HEADER_TEXT,
    "X-Checksum-Sha256": HEADER_TEXT, "X-NuGet-ApiKey": HEADER_TEXT, "X-Forwarded-Host": HEADER_TEXT,
    "X-Forwarded-Proto": HEADER_TEXT, "npm-command": HEADER_TEXT,
}
HEADERS = st.lists(st.sampled_from(sorted(HEADER_VALUES)), unique=True, max_size=4).flatmap(
    lambda names: st.fixed_dictionaries({name: HEADER_VALUES[name] for name in names}))
MULTIPART = st.dictionaries(FORM_KEYS, st.text(max_size=20), max_size=6).map(lambda fields: (
    "".join(f'--xx\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
    + '--xx\r\nContent-Disposition: form-data; name="content"; filename="p-1.0.tar.gz"\r\n\r\nbody\r\n--xx--\r\n'
).encode("utf-8", "replace"))
REQUESTS = st.tuples(targets(), HEADERS, st.none() | BODIES | MULTIPART)


def fuzz_repositories(dead_upstream: str) -> dict[str, Any]:
    """A hosted and a proxy repository of each format; the proxies' upstream is a closed port."""
    repos: dict[str, Any] = {}
    for short, fmt in (("gen", "generic"), ("py", "pypi"), ("npm", "npm"), ("oci", "oci")):
        repos[f"{short}-h"] = {"format": fmt, "type": "hosted"}
        repos[f"{short}-p"] = {"format": fmt, "type": "proxy", "upstream": dead_upstream}
    return repos


def snapshot(root: Path, skip: Path) -> set[str]:
    """Every path under root (files and directories) except those under `skip`."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip not in (p, *p.parents)}


@pytest.fixture(scope="module")
def fuzz_depot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DepotProcess]:
    """One depot (open access, so bodies reach the parsers), its data dir three levels down."""
    work = tmp_path_factory.mktemp("fuzz")
    depot = DepotProcess(work / "outer" / "inner" / "depot", fuzz_repositories(f"http://127.0.0.1:{free_port()}/"),
                         extra={"upstream": {"retries": 0, "connect_timeout": 1, "read_timeout": 2}})
    before = snapshot(work, depot.data_dir)
    yield depot
    try:
        assert depot.proc is not None and depot.proc.poll() is None, "depot died:\n" + depot.log()[-3000:]
        assert http_status("GET", "/-/healthz", {}, None, depot) == 200
        assert snapshot(work, depot.data_dir) == before, "files appeared outside the data dir"
        assert "Traceback" not in depot.log(), "an exception escaped a handler:\n" + depot.log()[-3000:]
    finally:
        depot.stop()


def http_status(method: str, path: str, headers: dict[str, str], body: bytes | None,
                depot: DepotProcess) -> int:
    """Send one raw request (the path exactly as given); return the status after reading the body."""
    conn = http.client.HTTPConnection("127.0.0.1", depot.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@FUZZ
@given(REQUESTS)
def test_http_fuzz(fuzz_depot: DepotProcess,
                   request_parts: tuple[tuple[str, str], dict[str, str], bytes | None]) -> None:
    (method, path), headers, body = request_parts
    try:
        status = http_status(method, path, headers, body, fuzz_depot)
    except (ConnectionError, http.client.HTTPException) as exc:
        raise AssertionError(f"{method} {path}: no answer ({exc!r})\n{fuzz_depot.log()[-2000:]}") from None
    proxy_failure = status in (502, 504) and path.startswith(PROXY_PREFIXES)
    assert status < 500 or proxy_failure, f"{method} {path} {headers} -> {status}\n{fuzz_depot.log()[-2000:]}"


def test_fuzz_depot_survived(fuzz_depot: DepotProcess) -> None:
    """The server answers after the fuzzing (the fixture also checks the file tree at teardown)."""
    assert http_status("GET", "/-/healthz", {}, None, fuzz_depot) == 200


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def npm_publish_body(integrity: Any) -> bytes:
    return json.dumps(publish_doc("dpkg", "1.0.0", b"tarball", {"integrity": integrity}, {"latest": "1.0.0"})).encode()


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/-/api/audit?limit=x", None),

    ("PUT", "/npm-h/dpkg", npm_publish_body(["sha512-x"])),
    ("PUT", "/npm-h/dpkg", DEEP_JSON),
    ("PUT", "/npm-h/-/user/org.couchdb.user:someone", b"[]"),
    ("PUT", "/npm-h/-/user/org.couchdb.user:someone", DEEP_JSON),
    ("PUT", "/npm-h/-/package/dpkg/dist-tags/beta", DEEP_JSON),
    ("PUT", "/v2/oci-h/img/manifests/v1", DEEP_JSON),
])
def test_requests_that_once_were_500(fuzz_depot: DepotProcess, method: str, path: str, body: bytes | None) -> None:
    """Found by this fuzzing: an uncaught exception (500) before the fix; a 4xx now."""
    headers = {"Content-Type": oci_manifest.OCI_MANIFEST if "/v2/" in path else "application/json"}
    assert 400 <= http_status(method, path, headers, body, fuzz_depot) < 500


def test_malformed_multipart_upload_is_400(fuzz_depot: DepotProcess) -> None:
    """Found by the HTTP fuzz: a multipart body without its boundary was a 500."""
    headers = {"Content-Type": "multipart/form-data; boundary=xx"}
    assert http_status("POST", "/py-h/", headers, b"no boundary here", fuzz_depot) == 400


# ------------------------------------------------------------------ with access control on
SECURE_TEMPLATES = (
    "GET /-/token?scope={}&service={}", "GET /-/token?scope=repository:{}:{}", "GET /-/api/audit?limit={}&offset={}",
    "GET /-/metrics", "GET /-/api/repositories", "GET /-/api/stats", "GET /-/ui/repositories/{}",
    "PUT /npm-h/-/user/org.couchdb.user:{}", "POST /v2/oci-h/{}/blobs/uploads/", "GET /v2/oci-h/{}/tags/list",
    "PUT /gen-h/{}", "GET /gen-h/{}", "GET /v2/_catalog",
)
SECURE_HEADERS = st.fixed_dictionaries({"Authorization": HEADER_VALUES["Authorization"] | st.sampled_from(
    ["Basic " + base64.b64encode(f"admin:{DepotProcess.ADMIN_PASSWORD}".encode()).decode(),
     "Basic " + base64.b64encode(b"admin:wrong-password").decode(), "Basic " + base64.b64encode(b"nobody:x").decode()])})


@st.composite
def secure_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    method, template = draw(st.sampled_from(SECURE_TEMPLATES)).split(" ", 1)
    path = template.format(*(draw(SEGMENT) for _ in range(template.count("{}"))))
    return method, path, draw(st.just({}) | SECURE_HEADERS), draw(st.none() | BODIES)


@pytest.fixture(scope="module")
def secure_fuzz_depot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DepotProcess]:
    """A depot with access control (lockout, JWTs, visibility filters) for the auth endpoints."""
    depot = DepotProcess(tmp_path_factory.mktemp("fuzz-secure"), fuzz_repositories(f"http://127.0.0.1:{free_port()}/"),
                         secure=True, extra={"login": {"max_failures": 3, "lockout": "2s"},
                                             "upstream": {"retries": 0, "connect_timeout": 1}})
    yield depot
    try:
        assert http_status("GET", "/-/healthz", {}, None, depot) == 200
        assert "Traceback" not in depot.log(), "an exception escaped a handler:\n" + depot.log()[-3000:]
    finally:
        depot.stop()


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 20))
@given(secure_requests())
def test_http_fuzz_with_access_control(secure_fuzz_depot: DepotProcess,
                                       request_parts: tuple[str, str, dict[str, str], bytes | None]) -> None:
    method, path, headers, body = request_parts
    status = http_status(method, path, headers, body, secure_fuzz_depot)
    assert status < 500 or (status in (502, 504) and path.startswith(PROXY_PREFIXES)), \
        f"{method} {path} {headers} -> {status}\n{secure_fuzz_depot.log()[-2000:]}"
