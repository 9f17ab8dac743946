"""Chef Supermarket end to end. No knife or berks client exists here: these tests replay the request
sequence of Berkshelf exactly (berkshelf lib/berkshelf/api_client/connection.rb and
community_rest.rb), against real depot processes: `GET <source>/universe`, resolve against it, then per
cookbook `GET <location_path>/cookbooks/<name>/versions/<1_2_3>` and stream its `file` (following
the redirect to the tarball)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from typing import Any

import pytest
import requests

from depot_process import DepotProcess, free_port
from http_util import get_many

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
UA = {"User-Agent": "Berkshelf v8.0.7", "Accept": "application/json"}


def make_cookbook(name: str, version: str, deps: dict[str, str] | None = None, payload: str = "") -> bytes:
    buf = io.BytesIO()
    meta = {"name": name, "version": version, "description": "test", "maintainer": "depot", "license": "Apache-2.0",
            "dependencies": deps or {}, "platforms": {}}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for file, data in ((f"{name}/metadata.json", json.dumps(meta).encode()),
                           (f"{name}/recipes/default.rb", f"# {name} {version}\n# {payload}\n".encode())):
            info = tarfile.TarInfo(file)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload(url: str, body: bytes, **kw: Any) -> requests.Response:
    return requests.post(f"{url}/api/v1/cookbooks", files={"cookbook": ("c.json", b'{"category":"Other"}'),
                                                           "tarball": ("c.tar.gz", body)}, timeout=60, **kw)


def berks_install(source: str, cookbooks: list[str]) -> dict[str, bytes]:
    """Berkshelf's sequence: universe, then each resolved cookbook's version document and file."""
    http = requests.Session()
    universe = http.get(f"{source}/universe", headers=UA, timeout=30)
    assert universe.status_code == 200, universe.text
    graph = universe.json()
    out: dict[str, bytes] = {}
    todo = list(cookbooks)
    while todo:
        name = todo.pop(0)
        if name in out:
            continue
        version = max(graph[name], key=lambda v: tuple(int(p) for p in v.split(".")))
        entry = graph[name][version]
        assert entry["location_type"] == "opscode"
        found = http.get(f"{entry['location_path']}/cookbooks/{name}/versions/{version.replace('.', '_')}",
                         headers=UA, timeout=30)
        assert found.status_code == 200, found.text
        tarball = http.get(found.json()["file"], timeout=60)                   # follows the 302
        assert tarball.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(tarball.content), mode="r:gz") as tar:
            assert json.load(tar.extractfile(f"{name}/metadata.json"))["version"] == version
        out[name] = tarball.content
        todo += list(entry["dependencies"])
    return out


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"chef-local": {"format": "chef", "type": "hosted"},
                          "chef": {"format": "chef", "type": "group", "members": ["chef-local"],
                                   "deploy_to": "chef-local"}})


def test_upload_then_berkshelf_sequence_from_hosted_and_group(depot: DepotProcess) -> None:
    base = make_cookbook("depot_base", "1.1.0")
    assert upload(f"{depot.url}/chef", make_cookbook("depot_base", "1.0.0")).status_code == 201       # group
    assert upload(f"{depot.url}/chef-local", base).status_code == 201
    assert upload(f"{depot.url}/chef-local", make_cookbook("depot_app", "2.0.0", {"depot_base": ">= 1.0.0"})) \
        .status_code == 201
    universe = requests.get(f"{depot.url}/chef-local/universe", timeout=10).json()
    assert universe["depot_app"]["2.0.0"] == {
        "location_type": "opscode", "location_path": f"{depot.url}/chef-local/api/v1",
        "download_url": f"{depot.url}/chef-local/api/v1/cookbooks/depot_app/versions/2.0.0/download",
        "dependencies": {"depot_base": ">= 1.0.0"}}
    for repo in ("chef-local", "chef"):
        got = berks_install(f"{depot.url}/{repo}", ["depot_app"])
        assert set(got) == {"depot_app", "depot_base"} and got["depot_base"] == base
    through_group = requests.get(f"{depot.url}/chef/files/depot_base/depot_base-1.1.0.tar.gz", timeout=10)
    assert through_group.content == base and through_group.headers["X-Cache"] == "HIT"     # stored: never a MISS
    doc = requests.get(f"{depot.url}/chef/api/v1/cookbooks/depot_base", timeout=10).json()
    assert doc["latest_version"] == f"{depot.url}/chef/api/v1/cookbooks/depot_base/versions/1.1.0"
    assert len(doc["versions"]) == 2


def test_bad_tarballs_are_refused_and_nothing_stored(depot: DepotProcess) -> None:
    no_meta = io.BytesIO()
    with tarfile.open(fileobj=no_meta, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("bad/recipes/default.rb"), io.BytesIO(b""))
    for body, why in [(b"garbage", "not a gzipped tar"), (b"\x1f\x8b\x08\x00garbage", "not a valid"),
                      (no_meta.getvalue(), "no metadata.json"), (make_cookbook("bad", "one"), "not x.y.z")]:
        bad = upload(f"{depot.url}/chef-local", body)
        assert bad.status_code == 400 and why in bad.json()["error_messages"][0], bad.text
        assert bad.json()["error_code"] == "INVALID_DATA"
    assert requests.get(f"{depot.url}/chef-local/universe", timeout=10).json() == {}
    missing = requests.get(f"{depot.url}/chef-local/api/v1/cookbooks/bad", timeout=10)
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
    assert upload(f"{depot.url}/chef-local", make_cookbook("fixed", "1.0.0")).status_code == 201
    assert upload(f"{depot.url}/chef-local", make_cookbook("fixed", "1.0.0", payload="x")).status_code == 409


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any) -> None:
    upstream = depot_factory({"chef": {"format": "chef", "type": "hosted"}}, name="up")
    base = make_cookbook("relay_base", "1.0.0", payload=os.urandom(20_000).hex())
    assert upload(f"{upstream.url}/chef", base).status_code == 201
    assert upload(f"{upstream.url}/chef", make_cookbook("relay_app", "1.0.0", {"relay_base": "~> 1.0"})) \
        .status_code == 201
    front = depot_factory({"remote": {"format": "chef", "type": "proxy", "upstream": f"{upstream.url}/chef"},
                           "grp": {"format": "chef", "type": "group", "members": ["remote"]}}, name="front")
    universe = requests.get(f"{front.url}/grp/universe", timeout=10).json()
    assert universe["relay_base"]["1.0.0"]["location_path"] == f"{front.url}/grp/api/v1"
    for round_ in range(2):
        since = len(front.log())
        assert berks_install(f"{front.url}/remote", ["relay_app"])["relay_base"] == base
        if round_ == 1:
            lines = [line for line in front.log()[since:].splitlines() if "depot.access" in line]
            cached = [line for line in lines if " 302 " not in line]          # the redirects are computed
            assert len(cached) == 5 and all(line.endswith('"HIT"') for line in cached), lines
    upstream.stop()
    time.sleep(0.5)
    assert berks_install(f"{front.url}/remote", ["relay_app"])["relay_base"] == base
    assert berks_install(f"{front.url}/grp", ["relay_app"])["relay_base"] == base


def test_twenty_concurrent_clients_on_one_uncached_tarball(upstream: Any, depot_factory: Any) -> None:
    body = make_cookbook("herd", "1.0.0", payload=os.urandom(200_000).hex())
    upstream.put("api/v1/cookbooks/herd/versions/1.0.0/download", body)
    upstream.put("api/v1/cookbooks/herd/versions/1_0_0", json.dumps({"version": "1.0.0", "file": "x"}).encode())
    depot = depot_factory({"remote": {"format": "chef", "type": "proxy", "upstream": upstream.url}})
    url = f"{depot.url}/remote/files/herd/herd-1.0.0.tar.gz"
    path = "/api/v1/cookbooks/herd/versions/1.0.0/download"
    upstream.mode(path, "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode(path, "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {body}
    assert upstream.count(path) == 1


def test_anonymous_upload_gets_a_challenge_and_a_read_token_cannot_upload(depot_factory: Any) -> None:
    secure = depot_factory({"chef": {"format": "chef", "type": "hosted"}}, secure=True)
    anonymous = upload(f"{secure.url}/chef", make_cookbook("sec", "1.0.0"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    read = secure.run_cli("token", "create", "--repo", "chef", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = upload(f"{secure.url}/chef", make_cookbook("sec", "1.0.0"), headers={"Authorization": f"Bearer {read}"})
    assert denied.status_code == 403 and denied.json()["error_messages"]
    assert upload(f"{secure.url}/chef", make_cookbook("sec", "1.0.0"), auth=ADMIN).status_code == 201


def test_policy_hides_denied_versions_from_every_listing_and_refuses_them(depot_factory: Any) -> None:
    upstream = depot_factory({"chef": {"format": "chef", "type": "hosted"}}, name="up")
    books = {version: make_cookbook("dpt_base", version) for version in ("1.0.0", "1.1.0")}
    for book in books.values():
        assert upload(f"{upstream.url}/chef", book).status_code == 201
    front = depot_factory({"remote": {"format": "chef", "type": "proxy", "upstream": f"{upstream.url}/chef"},
                           "grp": {"format": "chef", "type": "group", "members": ["remote"]}},
                          extra={"policy": {"deny": ["dpt_base@>=1.1"]}}, name="front")
    for repo in ("remote", "grp"):                                       # the proxy's answer and the merged one
        universe = requests.get(f"{front.url}/{repo}/universe", headers=UA, timeout=10).json()
        assert list(universe["dpt_base"]) == ["1.0.0"], repo
        assert berks_install(f"{front.url}/{repo}", ["dpt_base"])["dpt_base"] == books["1.0.0"]
    cookbook = requests.get(f"{front.url}/remote/api/v1/cookbooks/dpt_base", headers=UA, timeout=10).json()
    assert cookbook["latest_version"].endswith("/versions/1.0.0")
    assert [v.rsplit("/", 1)[-1] for v in cookbook["versions"]] == ["1.0.0"]
    for path in ("api/v1/cookbooks/dpt_base/versions/1_1_0", "files/dpt_base/dpt_base-1.1.0.tar.gz"):
        refused = requests.get(f"{front.url}/remote/{path}", headers=UA, timeout=10)
        assert refused.status_code == 403, path
        assert "dpt_base@>=1.1" in refused.json()["error_messages"][0] and refused.headers["X-Depot-Policy"]


def test_policy_cooldown_refuses_a_version_published_upstream_too_recently(upstream: Any,
                                                                          depot_factory: Any) -> None:
    """Supermarket's version documents carry published_at: a download of a version younger than
    the cooldown is refused with the rule and the time it will be allowed."""
    books = {version: make_cookbook("dpt_new", version) for version in ("1.0.0", "2.0.0")}
    for version, published in (("1.0.0", "2020-01-01T00:00:00.000Z"), ("2.0.0", "2099-01-01T00:00:00.000Z")):
        upstream.put(f"api/v1/cookbooks/dpt_new/versions/{version}/download", books[version])
        doc = {"version": version, "published_at": published, "dependencies": {},
               "file": f"{upstream.url}/api/v1/cookbooks/dpt_new/versions/{version}/download"}
        upstream.put(f"api/v1/cookbooks/dpt_new/versions/{version.replace('.', '_')}", json.dumps(doc).encode())
    front = depot_factory({"remote": {"format": "chef", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"cooldown": "3d"}})
    old = requests.get(f"{front.url}/remote/files/dpt_new/dpt_new-1.0.0.tar.gz", timeout=10)
    assert old.status_code == 200 and old.content == books["1.0.0"]
    for path in ("files/dpt_new/dpt_new-2.0.0.tar.gz", "api/v1/cookbooks/dpt_new/versions/2_0_0"):
        refused = requests.get(f"{front.url}/remote/{path}", timeout=10)
        assert refused.status_code == 403 and "cooldown" in refused.json()["error_messages"][0], path
        assert refused.headers["X-Depot-Policy"].startswith("cooldown until 2099-01-0")
    assert upstream.count("/api/v1/cookbooks/dpt_new/versions/2.0.0/download") == 0


def _goiardi_upload(server: str, name: str, version: str) -> None:
    """A cookbook into a Chef server the way knife uploads one (no auth: goiardi's default mode):
    sandbox of the file checksums, each file PUT, sandbox committed, then the cookbook version."""
    recipe = f"# {name} {version}\n".encode()
    meta = json.dumps({"name": name, "version": version, "dependencies": {}, "description": "test", "maintainer": "d",
                       "license": "MIT", "platforms": {}, "providing": {}, "recipes": {}}).encode()
    files = {hashlib.md5(data).hexdigest(): data for data in (recipe, meta)}  # noqa: S324 (Chef's checksums)
    headers = {"Accept": "application/json", "X-Chef-Version": "12.0.0"}
    sandbox = requests.post(f"{server}/sandboxes", json={"checksums": {c: None for c in files}}, headers=headers,
                            timeout=10).json()
    for checksum, data in files.items():
        url = sandbox["checksums"][checksum].get("url")
        if url:
            assert requests.put(url, data=data, headers={**headers, "Content-Type": "application/x-binary",
                                "Content-MD5": base64.b64encode(bytes.fromhex(checksum)).decode()},
                                timeout=10).status_code == 200
    assert requests.put(f"{server}/sandboxes/{sandbox['sandbox_id']}", json={"is_completed": True},
                        headers=headers, timeout=10).status_code == 200
    recipe_md5, meta_md5 = list(files)
    cookbook = {"name": f"{name}-{version}", "cookbook_name": name, "version": version, "chef_type": "cookbook_version",
                "json_class": "Chef::CookbookVersion", "frozen?": False, "metadata": json.loads(meta),
                "recipes": [{"name": "default.rb", "path": "recipes/default.rb", "checksum": recipe_md5,
                             "specificity": "default"}],
                "root_files": [{"name": "metadata.json", "path": "metadata.json", "checksum": meta_md5,
                                "specificity": "default"}]}
    assert requests.put(f"{server}/cookbooks/{name}/{version}", json=cookbook, headers=headers,
                        timeout=10).status_code == 201


def test_goiardi_peer_universe_through_a_proxy(depot_factory: Any, tmp_path: Any) -> None:
    """The optional peer: Debian's goiardi (a Chef server) serves /universe, which a chef proxy in front
    of it answers with every location at depot and the policy applied. A Chef server has no
    Supermarket tarball download (its cookbooks are files listed in a Chef server document, and it
    answers 200 with nothing at Supermarket paths): a download is a clear 502, never an empty
    cookbook cached."""
    goiardi = shutil.which("goiardi")
    assert goiardi, "goiardi is missing: apt-get install goiardi (tests/clients/chef.apt)"
    port = free_port()
    proc = subprocess.Popen([goiardi, "-I", "127.0.0.1", "-P", str(port), "-H", "127.0.0.1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        server = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(f"{server}/universe", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        for version in ("1.0.0", "1.1.0"):
            _goiardi_upload(server, "gdi_base", version)
        assert requests.get(f"{server}/universe", timeout=10).json()["gdi_base"]["1.0.0"]["location_type"] == \
            "chef_server"
        front = depot_factory({"remote": {"format": "chef", "type": "proxy", "upstream": server}},
                              extra={"policy": {"deny": ["gdi_base@>=1.1"]}})
        universe = requests.get(f"{front.url}/remote/universe", headers=UA, timeout=10).json()
        assert universe == {"gdi_base": {"1.0.0": {
            "location_type": "opscode", "location_path": f"{front.url}/remote/api/v1", "dependencies": {},
            "download_url": f"{front.url}/remote/api/v1/cookbooks/gdi_base/versions/1.0.0/download"}}}
        for _ in range(2):         # no Supermarket download there: a clear error, and no empty cookbook cached
            download = requests.get(f"{front.url}/remote/files/gdi_base/gdi_base-1.0.0.tar.gz", timeout=10)
            assert download.status_code == 502 and "Supermarket" in download.json()["error_messages"][0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
