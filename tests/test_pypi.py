"""PyPI end to end: real pip, uv and twine against a real depot and a local static upstream.

One depot (proxy `remote`, hosted `local`, group `all`) and one counting upstream serve the
whole module; the packages are tiny real wheels/sdists built once (tests/pypi_fixtures.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import requests

from depot_process import DepotProcess
from http_util import get
from pypi_fixtures import build_many, sha256_file, wheel_metadata, write_simple_project
from upstream import start_upstream

BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("PIP_", "UV_", "TWINE_", "DEPOT_"))}
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
TTL = 2.0
ADMIN = DepotProcess.ADMIN_PASSWORD

SPECS = [
    ("dpt-leaf", "1.0", ()), ("dpt-mid", "1.0", ("dpt-leaf>=1.0",)), ("Dpt.App", "1.0", ("dpt-mid",)),
    ("dpt-herd", "1.0", ()), ("dpt-late", "1.0", ()), ("dpt-late", "2.0", ()),
    ("dpt-priv", "1.0", ("dpt-mid",)), ("dpt-priv", "1.1", ("dpt-mid",)), ("dpt-yank", "1.0", ()),
    ("dpt-fresh", "1.0", ()), ("dpt-uvpub", "1.0", ("dpt-leaf",)),
]
UPSTREAM_PROJECTS = ("dpt-leaf", "dpt-mid", "dpt-app", "dpt-herd", "dpt-late")


def repositories(upstream_url: str) -> dict[str, Any]:
    return {
        "remote": {"format": "pypi", "type": "proxy", "upstream": upstream_url + "/simple/",
                   "metadata_ttl": TTL, "negative_ttl": 1},
        "local": {"format": "pypi", "type": "hosted"},
        "all": {"format": "pypi", "type": "group", "members": ["local", "remote"], "deploy_to": "local"},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_upstream: Any) -> Iterator[SimpleNamespace]:
    for tool in ("uv", "twine"):
        assert (BIN / tool).exists(), f"{tool} is missing: pip install -e '.[test]'"
    work = tmp_path_factory.mktemp("pypi")
    dists = build_many(work / "build", SPECS)
    for project in UPSTREAM_PROJECTS:
        write_simple_project(module_upstream.root, project, dists[(project, "1.0")].files)
    server = DepotProcess(work / "depot", repositories(module_upstream.url))
    yield SimpleNamespace(up=module_upstream, depot=server, dists=dists, work=work)
    server.stop()


# ---------------------------------------------------------------- client helpers

def run(argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
                *args], check=check)


def pip_install(index: str, target: Path, *reqs: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return pip("install", "--index-url", index, "--trusted-host", "127.0.0.1", "--no-compile",
               "--target", str(target), *reqs, check=check)


def twine(url: str, *files: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "twine"), "upload", "--repository-url", url, "-u", "admin", "-p", ADMIN,
                "--non-interactive", "--disable-progress-bar", *map(str, files)], check=check)


def installed(target: Path) -> set[str]:
    names = (p.name.removesuffix(".dist-info").split("-") for p in target.glob("*.dist-info"))
    return {f"{name.lower()}=={version}" for name, version in names}


def upstream_file_gets(up: Any) -> dict[str, int]:
    return {k: v for k, v in up.counts().items() if k.startswith("GET /packages/")}


def access_lines(depot: DepotProcess, since: int) -> list[str]:
    return [line for line in depot.log()[since:].splitlines() if "depot.access" in line]


# ---------------------------------------------------------------- proxy

def test_pip_install_tree_through_proxy_then_hits(env: SimpleNamespace, tmp_path: Path) -> None:
    index = f"{env.depot.url}/remote/simple/"
    pip_install(index, tmp_path / "t1", "Dpt.App")
    assert installed(tmp_path / "t1") == {"dpt_app==1.0", "dpt_mid==1.0", "dpt_leaf==1.0"}
    files_before = upstream_file_gets(env.up)
    assert files_before, "the first install must have fetched files upstream"
    mark = len(env.depot.log())
    pip_install(index, tmp_path / "t2", "Dpt.App")
    assert upstream_file_gets(env.up) == files_before          # no file went upstream again
    file_lines = [l for l in access_lines(env.depot, mark) if "/remote/files/" in l]
    assert len(file_lines) >= 3 and all(l.endswith('"HIT"') for l in file_lines), file_lines
    # pip worked from PEP 658 metadata: every wheel's .metadata was asked for and served
    assert any(".whl.metadata" in l for l in access_lines(env.depot, 0))


def test_uv_install_through_proxy(env: SimpleNamespace, tmp_path: Path) -> None:
    run([str(BIN / "uv"), "pip", "install", "--no-config", "--no-cache", "--python", sys.executable,
         "--target", str(tmp_path / "t"), "--index-url", f"{env.depot.url}/remote/simple/", "Dpt.App"])
    assert installed(tmp_path / "t") == {"dpt_app==1.0", "dpt_mid==1.0", "dpt_leaf==1.0"}


def test_pip_require_hashes_through_proxy(env: SimpleNamespace, tmp_path: Path) -> None:
    lines = [f"{name}==1.0 --hash=sha256:{sha256_file(env.dists[(name, '1.0')].wheel)}"
             for name in ("dpt-mid", "dpt-leaf")]
    (tmp_path / "req.txt").write_text("\n".join(lines) + "\n")
    pip_install(f"{env.depot.url}/remote/simple/", tmp_path / "t", "--require-hashes", "-r",
                str(tmp_path / "req.txt"))
    assert installed(tmp_path / "t") == {"dpt_mid==1.0", "dpt_leaf==1.0"}


def test_simple_api_negotiation_redirects_and_metadata(env: SimpleNamespace) -> None:
    base = f"{env.depot.url}/remote/simple"
    leaf = env.dists[("dpt-leaf", "1.0")]
    page = get(f"{base}/dpt-leaf/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Cache"] in ("MISS", "HIT", "REVALIDATED") and "Accept" in page.headers["Vary"]
    html = page.body.decode()
    assert f"#sha256={sha256_file(leaf.wheel)}" in html and 'data-requires-python="&gt;=3.8"' in html
    assert f'data-core-metadata="sha256={hashlib.sha256(wheel_metadata(leaf.wheel)).hexdigest()}"' in html
    assert "../../files/dpt-leaf/" in html and "127.0.0.1" not in html       # relative links only
    doc = json.loads(get(f"{base}/dpt-leaf/", headers={"Accept": JSON_TYPE}).body)
    assert doc["meta"]["api-version"] == "1.1" and doc["versions"] == ["1.0"]
    wheel = next(f for f in doc["files"] if f["filename"] == leaf.wheel.name)
    assert wheel["hashes"]["sha256"] == sha256_file(leaf.wheel) and wheel["requires-python"] == ">=3.8"
    meta = get(f"{base}/dpt-leaf/{wheel['url']}.metadata")
    assert meta.status == 200 and meta.body == wheel_metadata(leaf.wheel)
    assert hashlib.sha256(meta.body).hexdigest() == wheel["core-metadata"]["sha256"]
    for raw in ("Dpt_Leaf/", "DPT.leaf", "dpt-leaf"):
        moved = requests.get(f"{base}/{raw}", allow_redirects=False, timeout=10)
        assert moved.status_code == 301 and moved.headers["Location"].endswith("/remote/simple/dpt-leaf/")
    assert get(f"{base}/dpt-leaf/", headers={"Accept": "image/png"}).status == 406
    assert get(f"{base}/no-such-project/").status == 404
    assert get(f"{base}/-bad-/").status == 404


def test_file_head_and_range(env: SimpleNamespace) -> None:
    leaf = env.dists[("dpt-leaf", "1.0")]
    url = f"{env.depot.url}/remote/files/dpt-leaf/{sha256_file(leaf.wheel)}/{leaf.wheel.name}"
    body = leaf.wheel.read_bytes()
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(body)
    part = get(url, headers={"Range": "bytes=-22"})
    assert part.status == 206 and part.body == body[-22:] and part.headers["X-Cache"] == "HIT"


def test_upstream_down_serves_stale_cache(env: SimpleNamespace, tmp_path: Path) -> None:
    index = f"{env.depot.url}/remote/simple/"
    pip_install(index, tmp_path / "warm", "Dpt.App")
    time.sleep(TTL + 0.2)                                     # every page is now stale
    env.up.mode("*", "status", status=500)
    try:
        page = get(f"{index}dpt-mid/")
        assert page.status == 200 and page.headers["X-Cache"] == "STALE"
        pip_install(index, tmp_path / "t", "Dpt.App")
        assert installed(tmp_path / "t") == {"dpt_app==1.0", "dpt_mid==1.0", "dpt_leaf==1.0"}
    finally:
        env.up.mode("*", "normal")


def test_new_upstream_version_visible_after_metadata_ttl(env: SimpleNamespace, tmp_path: Path) -> None:
    page_url = f"{env.depot.url}/remote/simple/dpt-late/"
    first = get(page_url, headers={"Accept": JSON_TYPE})
    assert json.loads(first.body)["versions"] == ["1.0"]
    write_simple_project(env.up.root, "dpt-late", env.dists[("dpt-late", "2.0")].files)
    started = time.monotonic()
    cached = get(page_url, headers={"Accept": JSON_TYPE})
    if time.monotonic() - started < TTL - 0.5:
        assert json.loads(cached.body)["versions"] == ["1.0"]     # still within metadata_ttl
    time.sleep(TTL + 0.2)
    assert json.loads(get(page_url, headers={"Accept": JSON_TYPE}).body)["versions"] == ["1.0", "2.0"]
    pip_install(f"{env.depot.url}/remote/simple/", tmp_path / "t", "dpt-late")
    assert installed(tmp_path / "t") == {"dpt_late==2.0"}


def test_parallel_pip_downloads_fetch_the_file_once(env: SimpleNamespace, tmp_path: Path) -> None:
    herd = env.dists[("dpt-herd", "1.0")]
    path = f"/packages/{herd.wheel.name}"
    env.up.mode(path, "slow", headers_delay=2.5, chunk=256, delay=0.05)
    index = f"{env.depot.url}/remote/simple/"

    def download(i: int) -> subprocess.CompletedProcess[str]:
        return pip("download", "--no-deps", "--only-binary", ":all:", "--index-url", index,
                   "--trusted-host", "127.0.0.1", "-d", str(tmp_path / f"d{i}"), "dpt-herd==1.0")

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(download, range(20)))
    finally:
        env.up.mode(path, "normal")
    digests = {sha256_file(tmp_path / f"d{i}" / herd.wheel.name) for i in range(20)}
    assert digests == {sha256_file(herd.wheel)}
    assert env.up.count(path) == 1
    served = [l for l in env.depot.log().splitlines() if f"/{herd.wheel.name} " in l]
    assert sum(l.endswith('"MISS"') for l in served) >= 2, served   # clients joined the one fetch


def test_crafted_file_urls_never_reach_another_host(env: SimpleNamespace, tmp_path: Path) -> None:
    evil = start_upstream(tmp_path / "evil")
    try:
        evil.put("packages/dpt_leaf-1.0.tar.gz", b"evil")
        evil_url = f"{evil.url}/packages/dpt_leaf-1.0.tar.gz"
        leaf = env.dists[("dpt-leaf", "1.0")]
        sha = sha256_file(leaf.sdist)
        url_id = "url-" + hashlib.sha256(evil_url.encode()).hexdigest()
        base = f"{env.depot.url}/remote/files"
        crafted = [
            f"{base}/dpt-leaf/{url_id}/dpt_leaf-1.0.tar.gz",
            f"{base}/dpt-leaf/{sha}/{requests.utils.quote(evil_url, safe='')}",
            f"{base}/dpt-leaf/{sha}/dpt_leaf-1.0.tar.gz?url={evil_url}",
            f"{base}/dpt-leaf/{'0' * 64}/dpt_leaf-1.0.tar.gz",
            f"{base}/dpt-leaf/{sha}/..%2F..%2F..%2Fetc%2Fpasswd",
            f"{base}/{requests.utils.quote(evil.url, safe='')}/{sha}/dpt_leaf-1.0.tar.gz",
            f"{env.depot.url}/remote/simple/{requests.utils.quote(evil_url, safe='')}/",
        ]
        for url in crafted:
            status = requests.get(url, timeout=10, allow_redirects=False).status_code
            assert status in (400, 404) or (status == 200 and url.endswith(f"?url={evil_url}")), (url, status)
        ok = requests.get(f"{base}/dpt-leaf/{sha}/dpt_leaf-1.0.tar.gz?url={evil_url}", timeout=10)
        assert ok.content == leaf.sdist.read_bytes()          # the query string is simply ignored
        assert evil.counts() == {}
    finally:
        evil.stop()


# ---------------------------------------------------------------- hosted and group

def test_twine_upload_then_pip_install_from_group(env: SimpleNamespace, tmp_path: Path) -> None:
    priv = env.dists[("dpt-priv", "1.0")]
    twine(f"{env.depot.url}/all/", *priv.files)                      # through the group: deploy_to
    page = get(f"{env.depot.url}/local/simple/dpt-priv/").body.decode()
    assert priv.wheel.name in page and priv.sdist.name in page
    pip_install(f"{env.depot.url}/all/simple/", tmp_path / "t", "dpt-priv")
    assert installed(tmp_path / "t") == {"dpt_priv==1.0", "dpt_mid==1.0", "dpt_leaf==1.0"}
    again = twine(f"{env.depot.url}/local/", priv.wheel, check=False)
    assert again.returncode == 0, again.stderr       # as on PyPI: the identical file again is a success
    group_page = get(f"{env.depot.url}/all/simple/dpt-priv/")
    assert group_page.status == 200 and group_page.headers["X-Cache"]


def test_publish_is_visible_immediately(env: SimpleNamespace, tmp_path: Path) -> None:
    fresh = env.dists[("dpt-fresh", "1.0")]
    for repo in ("local", "all"):
        assert get(f"{env.depot.url}/{repo}/simple/dpt-fresh/").status == 404   # remote: negative entry
    twine(f"{env.depot.url}/local/", *fresh.files)
    for repo in ("local", "all"):
        assert fresh.wheel.name in get(f"{env.depot.url}/{repo}/simple/dpt-fresh/").body.decode()
    newer = env.dists[("dpt-priv", "1.1")]
    twine(f"{env.depot.url}/local/", *newer.files)
    pip_install(f"{env.depot.url}/all/simple/", tmp_path / "t", "dpt-priv==1.1", "dpt-fresh")
    assert {"dpt_priv==1.1", "dpt_fresh==1.0"} <= installed(tmp_path / "t")


def test_uv_publish_and_legacy_path(env: SimpleNamespace, tmp_path: Path) -> None:
    dist = env.dists[("dpt-uvpub", "1.0")]
    run([str(BIN / "uv"), "publish", "--no-config", "--publish-url", f"{env.depot.url}/all/",
         "-u", "admin", "-p", ADMIN, str(dist.wheel)])
    twine(f"{env.depot.url}/local/legacy/", dist.sdist)
    page = get(f"{env.depot.url}/local/simple/dpt-uvpub/").body.decode()
    assert dist.wheel.name in page and dist.sdist.name in page
    run([str(BIN / "uv"), "pip", "install", "--no-config", "--no-cache", "--python", sys.executable,
         "--target", str(tmp_path / "t"), "--index-url", f"{env.depot.url}/all/simple/", "dpt-uvpub"])
    assert installed(tmp_path / "t") == {"dpt_uvpub==1.0", "dpt_leaf==1.0"}


def _post(url: str, fields: dict[str, str], filename: str, content: bytes) -> requests.Response:
    return requests.post(url, data={":action": "file_upload", "protocol_version": "1", **fields},
                         files={"content": (filename, content, "application/octet-stream")},
                         auth=("admin", ADMIN), timeout=30)


@pytest.mark.parametrize("fields, filename, message", [
    ({"name": "bad name!", "version": "1.0"}, "bad-1.0.tar.gz", "invalid project name"),
    ({"name": "dpt-bad", "version": "yesterday"}, "dpt_bad-yesterday.tar.gz", "invalid version"),
    ({"name": "dpt-bad", "version": "1.0"}, "dpt_other-1.0.tar.gz", "does not match project"),
    ({"name": "dpt-bad", "version": "1.0"}, "dpt_bad-2.0.tar.gz", "does not match version"),
    ({"name": "dpt-bad", "version": "1.0", "sha256_digest": "0" * 64}, "dpt_bad-1.0.tar.gz",
     "sha256_digest does not match"),
    ({"name": "dpt-bad", "version": "1.0", "filetype": "bdist_wheel"}, "dpt_bad-1.0-py3-none-any.whl",
     "invalid wheel"),
])
def test_bad_uploads_are_refused(env: SimpleNamespace, fields: dict[str, str], filename: str,
                                 message: str) -> None:
    form = {"filetype": "sdist", "pyversion": "source", "metadata_version": "2.1", **fields}
    response = _post(f"{env.depot.url}/local/", form, filename, b"not really a package")
    assert response.status_code == 400 and message in response.text and message in response.reason
    assert get(f"{env.depot.url}/local/simple/dpt-bad/").status == 404


def test_twine_shows_the_reason(env: SimpleNamespace, tmp_path: Path) -> None:
    leaf = env.dists[("dpt-leaf", "1.0")]
    wrong = tmp_path / "dpt_leaf-9.9-py3-none-any.whl"         # METADATA inside says 1.0
    wrong.write_bytes(leaf.wheel.read_bytes())
    result = twine(f"{env.depot.url}/local/", wrong, check=False)
    assert result.returncode != 0 and "400" in result.stdout + result.stderr
    assert "does not match version" in result.stdout + result.stderr


def test_yank_unyank_and_delete(env: SimpleNamespace, tmp_path: Path) -> None:
    dist = env.dists[("dpt-yank", "1.0")]
    twine(f"{env.depot.url}/local/", *dist.files)
    page_url = f"{env.depot.url}/all/simple/dpt-yank/"
    assert requests.post(f"{env.depot.url}/all/dpt-yank/1.0/yank", data="broken build", auth=("admin", ADMIN),
                         timeout=10).ok
    assert 'data-yanked="broken build"' in get(page_url).body.decode()
    yanked = json.loads(get(page_url, headers={"Accept": JSON_TYPE}).body)["files"]
    assert {f["yanked"] for f in yanked} == {"broken build"}
    assert pip_install(f"{env.depot.url}/all/simple/", tmp_path / "a", "dpt-yank", check=False).returncode != 0
    assert requests.delete(f"{env.depot.url}/local/dpt-yank/1.0/yank", auth=("admin", ADMIN), timeout=10).ok
    assert "data-yanked" not in get(page_url).body.decode()
    assert requests.delete(f"{env.depot.url}/local/Dpt_Yank/1.0", auth=("admin", ADMIN), timeout=10).ok
    assert get(page_url).status == 404
    assert requests.delete(f"{env.depot.url}/local/dpt-yank/1.0", auth=("admin", ADMIN), timeout=10).status_code == 404


def test_proxy_of_a_depot_hosted_repo(env: SimpleNamespace, depot_factory: Any, tmp_path: Path) -> None:
    # depot answers JSON (PEP 691) with relative URLs; a second depot proxies it
    second = depot_factory({"chain": {"format": "pypi", "type": "proxy",
                                      "upstream": f"{env.depot.url}/all/simple/"}})
    pip_install(f"{second.url}/chain/simple/", tmp_path / "t", "dpt-priv==1.0")
    assert installed(tmp_path / "t") == {"dpt_priv==1.0", "dpt_mid==1.0", "dpt_leaf==1.0"}
    listing = get(f"{second.url}/chain/simple/", headers={"Accept": JSON_TYPE})
    assert {"name": "dpt-priv"} in json.loads(listing.body)["projects"]


def test_access_control_on_a_secure_depot(env: SimpleNamespace, depot_factory: Any, tmp_path: Path) -> None:
    secure = depot_factory({"local": {"format": "pypi", "type": "hosted"}}, secure=True)
    leaf = env.dists[("dpt-leaf", "1.0")]
    denied = run([str(BIN / "twine"), "upload", "--repository-url", f"{secure.url}/local/", "-u", "admin",
                  "-p", "wrong", "--non-interactive", "--disable-progress-bar", str(leaf.wheel)], check=False)
    assert denied.returncode != 0 and "401" in denied.stdout + denied.stderr
    twine(f"{secure.url}/local/", leaf.wheel)
    assert requests.post(f"{secure.url}/local/dpt-leaf/1.0/yank", timeout=10).status_code == 401
    assert pip_install(f"{secure.url}/local/simple/", tmp_path / "anon", "dpt-leaf", check=False).returncode != 0
    authed = secure.url.replace("http://", f"http://admin:{ADMIN}@")
    pip_install(f"{authed}/local/simple/", tmp_path / "t", "dpt-leaf")
    assert installed(tmp_path / "t") == {"dpt_leaf==1.0"}


# ---------------------------------------------------------------- upload limits and reuse

def _sdist_form(name: str, version: str) -> dict[str, str]:
    return {"name": name, "version": version, "filetype": "sdist", "pyversion": "source",
            "metadata_version": "2.1"}


def test_upload_honours_max_upload_and_malformed_multipart_is_400(depot_factory: Any) -> None:
    small = depot_factory({"local": {"format": "pypi", "type": "hosted", "max_upload": "1MiB"}})
    url = f"{small.url}/local/"
    refused = _post(url, _sdist_form("dpt-big", "1.0"), "dpt_big-1.0.tar.gz", os.urandom(2 * 2**20))
    assert refused.status_code == 413, refused.text
    assert get(f"{small.url}/local/simple/dpt-big/").status == 404          # nothing stored
    fits = _post(url, _sdist_form("dpt-big", "1.0"), "dpt_big-1.0.tar.gz", os.urandom(2**19))
    assert fits.status_code == 200, fits.text
    body = b'--xyz\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n--xyz--\r\n'
    for ctype in ("multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=abc"):
        answer = requests.post(url, data=body, headers={"Content-Type": ctype}, auth=("admin", ADMIN), timeout=30)
        assert answer.status_code == 400, (ctype, answer.status_code, answer.text)


def test_deleted_file_name_is_never_reused_with_other_bytes(env: SimpleNamespace) -> None:
    url, form = f"{env.depot.url}/local/", _sdist_form("dpt-reuse", "1.0")
    assert _post(url, form, "dpt_reuse-1.0.tar.gz", b"the first bytes").status_code == 200
    assert requests.delete(f"{url}dpt-reuse/1.0", auth=("admin", ADMIN), timeout=10).ok
    other = _post(url, form, "dpt_reuse-1.0.tar.gz", b"other bytes under the same name")
    assert other.status_code == 400 and "cannot be reused" in other.text
    assert get(f"{env.depot.url}/local/simple/dpt-reuse/").status == 404
    again = _post(url, form, "dpt_reuse-1.0.tar.gz", b"the first bytes")     # the same file: fine
    assert again.status_code == 200, again.text


def test_project_pages_do_not_depend_on_the_host(env: SimpleNamespace) -> None:
    """Issue 10 item 15, checked for PyPI: links are relative, so neither the stored page nor
    what a client gets depends on the Host it used (a guard: this held before the issue)."""
    url = f"{env.depot.url}/remote/simple/dpt-herd/"
    for accept in ("text/html", JSON_TYPE):
        bodies = {get(url, headers={"Host": f"mirror{i}.example", "Accept": accept}).body for i in range(4)}
        assert len(bodies) == 1 and b"mirror" not in next(iter(bodies))
