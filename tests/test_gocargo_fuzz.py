"""Fuzzing (hypothesis) of the Go and Cargo parsers and of their endpoints on a running depot.

The parsers may only fail with their documented errors (ModuleError, CargoError); over HTTP,
random paths, headers and bodies get no 5xx except 502/504 from a proxy whose upstream is a
closed port, and the server stays up with no traceback in its log (as tests/test_fuzz.py does
for the original formats).
"""
from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depot_process import DepotProcess, free_port
from depot.registry import cargo_index as ci
from depot.registry import go_module as gm
from test_fuzz import BODIES, FUZZ, HEADERS, http_status

NAMES = st.text(st.sampled_from("abcXYZ019-_.!~/@+ "), max_size=12)


@FUZZ
@given(st.binary(max_size=600) | st.builds(lambda a, b: struct.pack("<I", len(a)) + a + struct.pack("<I", len(b)) + b,
                                           st.binary(max_size=80), st.binary(max_size=80)))
def test_cargo_frame_parser_only_raises_cargo_errors(body: bytes) -> None:
    try:
        upload = ci.parse_frame(body)
        ci.index_line(upload)
        ci.check_crate(upload)
    except ci.CargoError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["name", "vers", "deps", "features", "links", "rust_version"]),
                       st.none() | st.text(max_size=8) | st.lists(st.dictionaries(
                           st.sampled_from(["name", "version_req", "explicit_name_in_toml", "features"]),
                           st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=2)), max_size=2)
                       | st.dictionaries(st.text(max_size=4), st.lists(st.text(max_size=6), max_size=2))))
def test_publish_metadata_only_raises_cargo_errors(meta: dict[str, Any]) -> None:
    try:
        ci.index_line(ci.Upload(ci.check_name(meta.get("name")), ci.check_version(meta.get("vers")), meta, b""))
    except ci.CargoError:
        pass


@FUZZ
@given(st.lists(st.tuples(NAMES, st.binary(max_size=20)), max_size=5), NAMES, NAMES)
def test_module_zip_checks_only_raise_module_errors(entries: list[tuple[str, bytes]], path: str,
                                                     version: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries:
            if name:
                archive.writestr(name, data)
    for text in (path, version):
        try:
            gm.unescape(text)
            gm.check_path(text)
            gm.check_path_major(text, version)
        except gm.ModuleError:
            pass
    try:
        zipped = gm.check_zip(buf.getvalue(), path, version)
        gm.check_go_mod(zipped.go_mod, path, version)
    except gm.ModuleError:
        pass


@FUZZ
@given(st.binary(max_size=300), st.lists(st.binary(max_size=120), max_size=3))
def test_index_documents_never_crash(body: bytes, bodies: list[bytes]) -> None:
    ci.index_lines(body)
    ci.merge_index([body, *bodies])
    try:
        ci.set_yanked(body, "1.0.0", True)
        ci.add_line(body, {"name": "a", "vers": "1.0.0"})
    except ci.CargoError:
        pass


def test_crate_with_a_link_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        link = tarfile.TarInfo("a-1.0.0/Cargo.toml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(ci.CargoError, match="links"):
        ci.check_crate(ci.Upload("a", "1.0.0", {}, raw.getvalue()))


# ------------------------------------------------------------------------------------ over HTTP

SEGMENT = st.sampled_from(["example.com/m", "!m", "v1.0.0", "v1", "master", "..", "%2e%2e", "a", "ab", "abc",
                           "se/rd/serde", "1.0.0", "x" * 70, "sum.golang.org", "8/0/000.p/1", "", "%00"]) \
    | st.text(st.sampled_from("abcXYZ019-_.!~/@+%"), max_size=12)
TEMPLATES = (
    "GET /go-h/{}/@v/list", "GET /go-p/{}/@v/list", "GET /go-g/{}/@latest", "GET /go-h/{}/@v/{}.info",
    "GET /go-p/{}/@v/{}.zip", "GET /go-g/{}/@v/{}.mod", "PUT /go-h/{}/@v/{}.zip", "PUT /go-g/{}/@v/{}.zip",
    "DELETE /go-h/{}/@v/{}.zip", "PUT /go-h/{}", "GET /go-p/sumdb/{}/supported", "GET /go-g/sumdb/{}/lookup/{}",
    "GET /go-p/sumdb/{}/tile/{}", "GET /cg-h/config.json", "GET /cg-g/config.json", "GET /cg-p/{}/{}/{}",
    "GET /cg-g/{}/{}", "GET /cg-h/1/{}", "GET /cg-p/api/v1/crates/{}/{}/download",
    "GET /cg-g/api/v1/crates/{}/{}/download", "PUT /cg-h/api/v1/crates/new", "PUT /cg-g/api/v1/crates/new",
    "DELETE /cg-h/api/v1/crates/{}/{}/yank", "PUT /cg-g/api/v1/crates/{}/{}/unyank",
    "GET /cg-h/api/v1/crates/{}/owners", "PUT /cg-h/api/v1/crates/{}/owners", "GET /cg-g/api/v1/crates?q={}&per_page={}",
)


@st.composite
def targets(draw: st.DrawFn) -> tuple[str, str]:
    method, template = draw(st.sampled_from(TEMPLATES)).split(" ", 1)
    path = template.format(*(draw(SEGMENT) for _ in range(template.count("{}"))))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]))
    return method, path.replace(" ", "%20")


@pytest.fixture(scope="module")
def fuzz_depot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DepotProcess]:
    dead = f"http://127.0.0.1:{free_port()}/"
    repos: dict[str, Any] = {}
    for short, fmt in (("go", "go"), ("cg", "cargo")):
        repos[f"{short}-h"] = {"format": fmt, "type": "hosted"}
        repos[f"{short}-p"] = {"format": fmt, "type": "proxy", "upstream": dead}
        repos[f"{short}-g"] = {"format": fmt, "type": "group", "members": [f"{short}-h", f"{short}-p"],
                               "deploy_to": f"{short}-h"}
    depot = DepotProcess(tmp_path_factory.mktemp("gocargo-fuzz") / "depot", repos,
                         extra={"upstream": {"retries": 0, "connect_timeout": 1, "read_timeout": 2}})
    yield depot
    try:
        assert depot.proc is not None and depot.proc.poll() is None, "depot died:\n" + depot.log()[-3000:]
        assert "Traceback" not in depot.log(), "an exception escaped a handler:\n" + depot.log()[-3000:]
    finally:
        depot.stop()


@FUZZ
@given(targets(), HEADERS, st.none() | BODIES)
def test_http_fuzz_go_and_cargo(fuzz_depot: DepotProcess, target: tuple[str, str], headers: dict[str, str],
                                body: bytes | None) -> None:
    method, path = target
    status = http_status(method, path, headers, body, fuzz_depot)
    upstream_failure = status in (502, 504) and path.startswith(("/go-p/", "/go-g/", "/cg-p/", "/cg-g/"))
    assert status < 500 or upstream_failure, f"{method} {path} {headers} -> {status}\n{fuzz_depot.log()[-2000:]}"
