"""Pure tests of the PyPI index and upload helpers (no server)."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from depot.registry.base import FormatError
from depot.registry import pypi_index as ix
from depot.registry import pypi_upload as up

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_M = "c" * 64
PAGE_URL = "http://up.test/simple/demo/"


# ------------------------------------------------------------------ names and negotiation

@pytest.mark.parametrize("raw, expected", [
    ("Demo", "demo"), ("demo_pkg", "demo-pkg"), ("Demo.Pkg--X", "demo-pkg-x"), ("a", "a"),
    ("zope.interface", "zope-interface"),
    ("", None), ("-demo", None), ("demo-", None), ("de/mo", None), ("..", None), ("a b", None),
    ("%2e%2e", None), ("x" * 201, None),
])
def test_normalize_project(raw: str, expected: str | None) -> None:
    assert ix.normalize_project(raw) == expected


@pytest.mark.parametrize("accept, query, expected", [
    (None, None, "html"),
    ("", None, "html"),
    ("*/*", None, "html"),
    ("text/html", None, "html"),
    ("application/vnd.pypi.simple.v1+json", None, "json"),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
     None, "json"),
    ("application/vnd.pypi.simple.v1+html; q=0.1, application/vnd.pypi.simple.v1+json", None, "json"),
    ("application/vnd.pypi.simple.latest+json", None, "json"),
    ("application/vnd.pypi.simple.v1+json;q=0, text/html", None, "html"),
    ("application/json", None, None),
    ("image/png", None, None),
    ("text/html", "application/vnd.pypi.simple.v1+json", "json"),
    (None, "nonsense", None),
])
def test_choose_variant(accept: str | None, query: str | None, expected: str | None) -> None:
    assert ix.choose_variant(accept, query) == expected


# ------------------------------------------------------------------ parsing upstream pages

HTML_PAGE = f"""<!DOCTYPE html><html><body>
<a href="../../packages/demo-1.0-py3-none-any.whl#sha256={SHA_A}" data-requires-python="&gt;=3.8"
   data-dist-info-metadata="sha256={SHA_M}">demo-1.0-py3-none-any.whl</a>
<a href="https://files.example/x/demo-1.0.tar.gz#md5=0123456789abcdef0123456789abcdef"
   data-yanked="broken build">demo-1.0.tar.gz</a>
<a href="/abs/demo-0.9.tar.gz" data-yanked>demo-0.9.tar.gz</a>
<a href="demo-0.8.zip#sha256=nothex" data-core-metadata="true">demo-0.8.zip</a>
<a href="javascript:alert(1)">demo-0.7.tar.gz</a>
<a href="../../packages/..%2F..%2Fetc%2Fpasswd">x</a>
<a href="../../packages/demo-1.0-py3-none-any.whl">duplicate</a>
</body></html>"""


def test_parse_html_page() -> None:
    page = ix.parse_page(HTML_PAGE.encode(), PAGE_URL, "demo")
    by_name = {r.filename: r for r in page.files}
    assert list(by_name) == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "demo-0.9.tar.gz", "demo-0.8.zip"]
    wheel = by_name["demo-1.0-py3-none-any.whl"]
    assert wheel.url == "http://up.test/packages/demo-1.0-py3-none-any.whl"
    assert wheel.hashes == {"sha256": SHA_A} and wheel.requires_python == ">=3.8"
    assert wheel.core_metadata == {"sha256": SHA_M} and wheel.yanked is False
    sdist = by_name["demo-1.0.tar.gz"]
    assert sdist.url == "https://files.example/x/demo-1.0.tar.gz"
    assert sdist.hashes == {"md5": "0123456789abcdef0123456789abcdef"} and sdist.yanked == "broken build"
    assert by_name["demo-0.9.tar.gz"].url == "http://up.test/abs/demo-0.9.tar.gz"
    assert by_name["demo-0.9.tar.gz"].yanked is True
    assert by_name["demo-0.8.zip"].hashes == {} and by_name["demo-0.8.zip"].core_metadata is True
    assert ix.file_id(by_name["demo-0.8.zip"]).startswith("url-")


def test_parse_json_page_relative_and_validation() -> None:
    doc = {"meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0"], "files": [
        {"filename": "demo-1.0.tar.gz", "url": "../../f/demo-1.0.tar.gz", "hashes": {"sha256": SHA_B},
         "requires-python": ">=3.9", "yanked": "bad", "core-metadata": False, "size": 10,
         "upload-time": "2024-01-01T00:00:00.000000Z"},
        {"filename": "demo-1.0-py3-none-any.whl", "url": "https://h.example/w.whl",
         "hashes": {"sha256": SHA_A}, "dist-info-metadata": {"sha256": SHA_M}},
        {"filename": "../evil", "url": "http://h.example/evil", "hashes": {}},
        {"filename": "demo-2.tar.gz", "url": "file:///etc/passwd", "hashes": {}},
        {"filename": "demo-0.1.tar.gz", "url": "/x/demo-0.1.tar.gz", "yanked": ""},
        {"filename": 5, "url": "x"},
        "garbage",
    ]}
    page = ix.parse_page(json.dumps(doc).encode(), PAGE_URL, "demo")
    assert [r.filename for r in page.files] == ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "demo-0.1.tar.gz"]
    sdist, wheel, old = page.files
    assert old.yanked is True and old.url == "http://up.test/x/demo-0.1.tar.gz"
    assert sdist.url == "http://up.test/f/demo-1.0.tar.gz" and sdist.size == 10
    assert sdist.yanked == "bad" and sdist.requires_python == ">=3.9"
    assert wheel.core_metadata == {"sha256": SHA_M}
    assert page.versions == ["1.0"]


def test_dump_load_roundtrip() -> None:
    page = ix.parse_page(HTML_PAGE.encode(), PAGE_URL, "demo")
    again = ix.load_page(ix.dump_page(page), "demo")
    assert again.files == page.files


# ------------------------------------------------------------------ rendering

def _page() -> ix.ProjectPage:
    return ix.ProjectPage("demo", [
        ix.FileRecord("demo-1.0-py3-none-any.whl", "http://up/w", {"sha256": SHA_A}, ">=3.8",
                      False, {"sha256": SHA_M}, 12, "2024-01-01T00:00:00Z"),
        ix.FileRecord("demo-0.9.tar.gz", "http://up/s", {"sha256": SHA_B}, '<4,>"3"', "old & bad"),
    ])


def test_render_html() -> None:
    body = ix.render_html(_page(), lambda r: ix.relative_link("demo", r)).decode()
    assert f'href="../../files/demo/{SHA_A}/demo-1.0-py3-none-any.whl#sha256={SHA_A}"' in body
    assert 'data-requires-python="&gt;=3.8"' in body
    assert f'data-core-metadata="sha256={SHA_M}"' in body and f'data-dist-info-metadata="sha256={SHA_M}"' in body
    assert 'data-requires-python="&lt;4,&gt;&quot;3&quot;"' in body
    assert 'data-yanked="old &amp; bad"' in body
    # what we render, we parse back the same (relative links resolved)
    back = ix.parse_page(body.encode(), "http://d/r/simple/demo/", "demo")
    assert [(r.filename, r.hashes, r.requires_python, r.yanked, r.core_metadata) for r in back.files] == [
        ("demo-1.0-py3-none-any.whl", {"sha256": SHA_A}, ">=3.8", False, {"sha256": SHA_M}),
        ("demo-0.9.tar.gz", {"sha256": SHA_B}, '<4,>"3"', "old & bad", False)]
    assert back.files[0].url == f"http://d/r/files/demo/{SHA_A}/demo-1.0-py3-none-any.whl"


def test_render_json() -> None:
    doc = json.loads(ix.render_json(_page(), lambda r: ix.relative_link("demo", r)))
    assert doc["meta"] == {"api-version": "1.1"} and doc["name"] == "demo"
    assert doc["versions"] == ["0.9", "1.0"]
    wheel = doc["files"][0]
    assert wheel["url"] == f"../../files/demo/{SHA_A}/demo-1.0-py3-none-any.whl"
    assert wheel["hashes"] == {"sha256": SHA_A} and wheel["core-metadata"] == {"sha256": SHA_M}
    assert wheel["dist-info-metadata"] == {"sha256": SHA_M} and wheel["size"] == 12
    assert doc["files"][1]["yanked"] == "old & bad" and "core-metadata" not in doc["files"][1]


def test_render_index_and_parse_index() -> None:
    html_body = ix.render_index_html(["a-b", "c"])
    assert b'<a href="a-b/">a-b</a>' in html_body
    assert ix.parse_index(html_body) == ["a-b", "c"]
    assert ix.parse_index(ix.render_index_json(["Z_z", "c"])) == ["c", "z-z"]


def test_merge_first_member_wins() -> None:
    first = ix.ProjectPage("demo", [ix.FileRecord("demo-1.0.tar.gz", "http://hosted/1", {"sha256": SHA_A})])
    second = ix.ProjectPage("demo", [ix.FileRecord("demo-1.0.tar.gz", "http://up/1", {"sha256": SHA_B}),
                                     ix.FileRecord("demo-2.0.tar.gz", "http://up/2", {"sha256": SHA_M})],
                            versions=["1.0", "2.0", "3.0rc1"])
    merged = ix.merge_pages("demo", [first, second])
    assert [(r.filename, r.url) for r in merged.files] == [("demo-1.0.tar.gz", "http://hosted/1"),
                                                           ("demo-2.0.tar.gz", "http://up/2")]
    assert merged.versions == ["1.0", "2.0", "3.0rc1"]


def test_find_file_and_metadata_record() -> None:
    page = _page()
    wheel = ix.find_file(page, SHA_A, "demo-1.0-py3-none-any.whl")
    assert wheel is not None
    assert ix.find_file(page, SHA_B, "demo-1.0-py3-none-any.whl") is None
    assert ix.find_file(page, SHA_A, "other.whl") is None
    meta = ix.metadata_record(wheel)
    assert meta is not None and meta.url == "http://up/w.metadata" and meta.sha256 == SHA_M
    assert ix.metadata_record(page.files[1]) is None


@pytest.mark.parametrize("value, ok", [
    (SHA_A, True), ("url-" + SHA_B, True), ("A" * 64, False), ("a" * 63, False), ("url-x", False), ("", False),
])
def test_valid_file_id(value: str, ok: bool) -> None:
    assert ix.valid_file_id(value) is ok


# ------------------------------------------------------------------ upload form

GOOD = {":action": "file_upload", "protocol_version": "1", "name": "Demo_Pkg", "version": "1.0",
        "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1", "sha256_digest": SHA_A}


@pytest.mark.parametrize("changes, filename, message", [
    ({":action": "submit"}, "demo_pkg-1.0-py3-none-any.whl", "unsupported :action"),
    ({"name": "bad name!"}, "demo_pkg-1.0-py3-none-any.whl", "invalid project name"),
    ({"name": ""}, "demo_pkg-1.0-py3-none-any.whl", "invalid project name"),
    ({"version": "one.two"}, "demo_pkg-1.0-py3-none-any.whl", "invalid version"),
    ({"filetype": "bdist_egg"}, "demo_pkg-1.0-py3-none-any.whl", "unsupported filetype"),
    ({}, None, "missing file"),
    ({}, "other-1.0-py3-none-any.whl", "does not match project"),
    ({}, "demo_pkg-2.0-py3-none-any.whl", "does not match version"),
    ({}, "demo_pkg-1.0.tar.gz", "not a wheel filename"),
    ({"filetype": "sdist"}, "demo_pkg-1.0-py3-none-any.whl", "not an sdist filename"),
    ({}, "../demo_pkg-1.0-py3-none-any.whl", "invalid filename"),
    ({}, "demo_pkg-1.0-py3.whl", "invalid filename"),
    ({"sha256_digest": "xyz"}, "demo_pkg-1.0-py3-none-any.whl", "invalid sha256_digest"),
    ({"requires_python": "newest please"}, "demo_pkg-1.0-py3-none-any.whl", "invalid requires_python"),
])
def test_validate_form_rejects(changes: dict[str, str], filename: str | None, message: str) -> None:
    with pytest.raises(FormatError) as info:
        up.validate_form({**GOOD, **changes}, filename)
    assert info.value.status == 400 and message in info.value.message


@pytest.mark.parametrize("changes, filename", [
    ({}, "demo_pkg-1.0-py3-none-any.whl"),
    ({}, "Demo.Pkg-1.0-py3-none-any.whl"),
    ({"version": "1.0.0"}, "demo_pkg-1.0-py3-none-any.whl"),
    ({"filetype": "sdist"}, "demo_pkg-1.0.tar.gz"),
    ({"filetype": "sdist"}, "demo-pkg-1.0.zip"),
    ({"requires_python": ">=3.8"}, "demo_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
])
def test_validate_form_accepts(changes: dict[str, str], filename: str) -> None:
    upload = up.validate_form({**GOOD, **changes}, filename)
    assert upload.project == "demo-pkg" and upload.digests["sha256"] == SHA_A


def test_check_digests() -> None:
    upload = up.validate_form(GOOD, "demo_pkg-1.0-py3-none-any.whl")
    up.check_digests(upload, SHA_A)
    with pytest.raises(FormatError, match="sha256_digest does not match"):
        up.check_digests(upload, SHA_B)
    hasher = up.Hasher()
    hasher.update(b"x")
    md5 = up.validate_form({**GOOD, "md5_digest": "0" * 32}, "demo_pkg-1.0-py3-none-any.whl")
    with pytest.raises(FormatError, match="md5_digest"):
        up.check_digests(md5, SHA_A, hasher)


def _wheel(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "w.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


META = b"Metadata-Version: 2.1\nName: Demo.Pkg\nVersion: 1.0\n\nlong description\n"


@pytest.mark.parametrize("members, error", [
    ({"demo_pkg-1.0.dist-info/METADATA": META, "demo_pkg/__init__.py": b""}, None),
    ({"demo_pkg/__init__.py": b""}, "no .dist-info/METADATA"),
    ({"other-1.0.dist-info/METADATA": META}, "no .dist-info/METADATA"),
    ({"x/demo_pkg-1.0.dist-info/METADATA": META}, "no .dist-info/METADATA"),
    ({"demo_pkg-1.0.dist-info/METADATA": META.replace(b"Name: Demo.Pkg", b"Name: other")}, "Name"),
    ({"demo_pkg-1.0.dist-info/METADATA": META.replace(b"Version: 1.0", b"Version: 2.0")}, "Version"),
])
def test_wheel_metadata(tmp_path: Path, members: dict[str, bytes], error: str | None) -> None:
    upload = up.validate_form(GOOD, "demo_pkg-1.0-py3-none-any.whl")
    path = _wheel(tmp_path, members)
    if error is None:
        assert up.wheel_metadata(path, upload) == META
    else:
        with pytest.raises(FormatError, match=error):
            up.wheel_metadata(path, upload)


def test_wheel_metadata_not_a_zip(tmp_path: Path) -> None:
    upload = up.validate_form(GOOD, "demo_pkg-1.0-py3-none-any.whl")
    path = tmp_path / "w.whl"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(FormatError, match="invalid wheel"):
        up.wheel_metadata(path, upload)


def test_wheel_metadata_member_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "MAX_ZIP_MEMBERS", 3)
    upload = up.validate_form(GOOD, "demo_pkg-1.0-py3-none-any.whl")
    members = {f"demo_pkg/m{i}.py": b"" for i in range(5)}
    members["demo_pkg-1.0.dist-info/METADATA"] = META
    with pytest.raises(FormatError, match="too many members"):
        up.wheel_metadata(_wheel(tmp_path, members), upload)


def test_no_public_hosts_in_sources() -> None:
    # the default upstream comes from pip's own configuration, never from our code
    root = Path(__file__).resolve().parent.parent
    for path in [root / "registry" / "pypi.py", root / "registry" / "pypi_index.py"]:
        text = path.read_text()
        assert "pythonhosted" not in text and "pypi.o" + "rg" not in text


# ------------------------------------------------------------------ default upstream

def _pip_default() -> str:
    from pip._internal.models.index import PyPI as PipDefault
    return PipDefault.simple_url


@pytest.mark.parametrize("index_env, config_text, expected", [
    ("http://env.test/simple/ http://second.test/", None, "http://env.test/simple/"),
    (None, "[global]\nindex-url = http://config.test/simple/\n", "http://config.test/simple/"),
    (None, "[install]\nindex-url = http://install.test/simple/\n", "http://install.test/simple/"),
    (None, "", None),
])
def test_default_upstream_follows_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      index_env: str | None, config_text: str | None,
                                      expected: str | None) -> None:
    from depot.registry.pypi import pip_index_url
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    if index_env:
        monkeypatch.setenv("PIP_INDEX_URL", index_env)
    config = tmp_path / "pip.conf"
    config.write_text(config_text or "")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config) if config_text else os.devnull)
    assert pip_index_url.__wrapped__() == (expected or _pip_default())


# ------------------------------------------------------------------ merged answers

class _Counted:
    """A member's Ctx as PyPI._answer sees it: only its pull counter."""

    def __init__(self, seen: list[tuple[str, str]], name: str) -> None:
        self.pull = self
        self._seen, self._name = seen, name

    def count_served(self, request: object, result: str) -> None:
        self._seen.append((self._name, result))


@pytest.mark.parametrize("statuses, expected", [
    (["MISS", "STALE"], "STALE"), (["STALE", "MISS"], "STALE"), (["HIT", "MISS"], "MISS"),
    (["REVALIDATED", "HIT"], "REVALIDATED"), (["HIT", "HIT"], "HIT"), ([], "HIT"),
])
def test_group_page_x_cache_follows_the_engine_precedence(statuses: list[str], expected: str) -> None:
    """A group page merged from members reports the engine's one precedence (a STALE member, an
    upstream failing, shows even when another member fetched: npm and every other format agree)."""
    from types import SimpleNamespace

    from aiohttp.test_utils import make_mocked_request

    from depot.registry.pypi import PyPI
    from depot.registry.repo import RepoConfig

    seen: list[tuple[str, str]] = []
    members = [(RepoConfig(f"m{i}", "pypi", "proxy", upstream="http://up.test/simple/"), status)
               for i, status in enumerate(statuses)]
    group = SimpleNamespace(is_proxy=False, is_group=True)
    ctx = SimpleNamespace(repo=group, request=make_mocked_request("GET", "/g/simple/demo/"),
                          for_repo=lambda repo: _Counted(seen, repo.name))
    response = PyPI()._answer(ctx, b"<html></html>", "html", members)  # type: ignore[arg-type]
    assert response.headers["X-Cache"] == expected
    assert seen == [(repo.name, status.lower()) for repo, status in members]   # each member counted
