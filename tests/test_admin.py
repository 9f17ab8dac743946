"""The administration API over every format: publish with the real clients (twine, npm, skopeo,
curl), list/search/show/delete through /-/api/v1, and the clients stop resolving what was deleted;
callers only ever see the repositories they may read."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from admin_helpers import admin_token, api, cli_json, curl, make_user, pip_download, seg, skopeo, twine
from depot_process import DepotProcess
from npm_fixtures import NpmCli, make_package
from oci_fixtures import hello_layout
from pypi_fixtures import build_dist

REPOS = {
    "py": {"format": "pypi", "type": "hosted"},
    "npmr": {"format": "npm", "type": "hosted"},
    "oci": {"format": "oci", "type": "hosted"},
    "files": {"format": "generic", "type": "hosted", "access": {"bob": "read"}},
    "private": {"format": "generic", "type": "hosted"},
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("admin")
    depot = DepotProcess(work / "depot", REPOS, secure=True)
    admin = ("admin", depot.ADMIN_PASSWORD)
    try:
        make_user(depot, "bob")
        dists = [build_dist(work / "build", "adm-pkg", v) for v in ("1.0", "2.0")]
        for dist in dists:
            twine(f"{depot.url}/py/", *admin, *dist.files)
        npm = NpmCli(work / "npm", f"{depot.url}/npmr/", token=admin_token(depot))
        for version in ("1.0.0", "1.1.0"):
            npm.ok("publish", cwd=make_package(work / "pkgs", "@adm/lib", version))
        layout, _single, _index = hello_layout(work / "layout")
        creds = f"{admin[0]}:{admin[1]}"
        for tag in ("v1", "multi"):
            skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds,
                   f"oci:{layout.root}:{tag}", f"docker://127.0.0.1:{depot.port}/oci/team/app:{tag}")
        for repo, path, body in (("files", "tools/a.txt", "a"), ("files", "tools/b.txt", "b"),
                                 ("private", "secret.txt", "s")):
            src = work / f"{repo}-{path.replace('/', '_')}"
            src.write_text(body)
            assert curl("-u", creds, "-T", str(src), f"{depot.url}/{repo}/{path}").stdout == "201"
        yield SimpleNamespace(depot=depot, admin=admin, dists=dists, npm=npm, creds=creds, work=work, layout=layout)
    finally:
        depot.stop()


def names(page: dict[str, Any]) -> set[tuple[str, str]]:
    return {(item["repository"], item["name"]) for item in page["items"]}


def test_packages_of_every_format_listed_searched_and_shown(seeded: SimpleNamespace) -> None:
    depot, admin = seeded.depot, seeded.admin
    listing = api(depot, "GET", "packages", admin).json()
    assert names(listing) == {("py", "adm-pkg"), ("npmr", "@adm/lib"), ("oci", "team/app"),
                              ("files", "tools/a.txt"), ("files", "tools/b.txt"), ("private", "secret.txt")}
    by_name = {item["name"]: item for item in listing["items"]}
    assert by_name["adm-pkg"]["versions"] == 2 and by_name["adm-pkg"]["format"] == "pypi"
    assert by_name["@adm/lib"]["versions"] == 2 and by_name["@adm/lib"]["latest"] == "1.1.0"
    assert by_name["team/app"]["versions"] == 2
    assert names(api(depot, "GET", "packages", admin, q="adm").json()) == {("py", "adm-pkg"), ("npmr", "@adm/lib")}
    assert names(api(depot, "GET", "packages", admin, format="oci").json()) == {("oci", "team/app")}
    sizes = [i["size"] for i in api(depot, "GET", "packages", admin, sort="-size").json()["items"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 6
    assert api(depot, "GET", "packages", admin, sort="bogus").json()["title"] == "Bad sort"
    # cursor pagination: two at a time, every package exactly once
    seen, cursor = [], None
    while True:
        page = api(depot, "GET", "packages", admin, limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += [(i["repository"], i["name"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(names(listing)) and len(seen) == len(set(seen))
    shown = api(depot, "GET", "packages/py/adm-pkg", admin).json()
    assert [v["version"] for v in shown["versions"]] == ["1.0", "2.0"]
    files = api(depot, "GET", "packages/py/adm-pkg/1.0", admin).json()["files"]
    wheel = seeded.dists[0].wheel
    assert {"path": f"adm-pkg/{wheel.name}", "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "size": wheel.stat().st_size} in [{k: f[k] for k in ("path", "sha256", "size")} for f in files]
    tags = api(depot, "GET", f"images/oci/{seg('team/app')}/tags", admin).json()["items"]
    assert {t["tag"] for t in tags} == {"v1", "multi"} and all(t["digest"].startswith("sha256:") for t in tags)
    assert {t["tag"]: t["platforms"] for t in tags} == {"v1": ["linux/amd64"], "multi": ["linux/amd64", "linux/arm64"]}
    assert api(depot, "GET", "images", admin).json()["items"] == [{"repository": "oci", "name": "team/app", "tags": 2}]


def test_a_caller_sees_only_what_they_may_read(seeded: SimpleNamespace) -> None:
    depot = seeded.depot
    bob = ("bob", "password-123")
    assert names(api(depot, "GET", "packages", bob).json()) == {("files", "tools/a.txt"), ("files", "tools/b.txt")}
    assert names(api(depot, "GET", "packages").json()) == set()            # anonymous: nothing hosted is public
    for path in ("packages/private/secret.txt", "packages/private/secret.txt/-", "images/oci/team%2Fapp/tags"):
        answer = api(depot, "GET", path, bob)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert "secret" not in answer.text or path.startswith("packages/private")
    assert api(depot, "GET", "packages", bob, repository="private").status_code == 404
    denied = api(depot, "DELETE", "packages/files/tools%2Fb.txt/-", bob)
    assert denied.status_code == 403 and denied.json()["status"] == 403
    assert api(depot, "DELETE", "packages/files/tools%2Fb.txt/-").status_code == 401
    assert curl("-u", seeded.creds, f"{depot.url}/files/tools/b.txt").stdout == "200"   # still there


def test_deleting_through_the_api_stops_every_client(seeded: SimpleNamespace, tmp_path: Path) -> None:
    depot, admin, creds = seeded.depot, seeded.admin, seeded.creds
    index = f"http://{creds}@127.0.0.1:{depot.port}/py/simple/"
    assert pip_download(index, tmp_path / "before", "adm-pkg==1.0").returncode == 0
    gone = api(depot, "DELETE", "packages/py/adm-pkg/1.0", admin)
    assert gone.status_code == 200 and len(gone.json()["deleted"]) >= 2
    assert pip_download(index, tmp_path / "after", "adm-pkg==1.0").returncode != 0
    assert pip_download(index, tmp_path / "after", "adm-pkg==2.0").returncode == 0

    assert seeded.npm.run("view", "@adm/lib@1.0.0", "version").stdout.strip() == "1.0.0"
    assert api(depot, "DELETE", f"packages/npmr/{seg('@adm/lib')}/1.0.0", admin).status_code == 200
    assert seeded.npm.run("view", "@adm/lib@1.0.0", "version").stdout.strip() == ""
    assert seeded.npm.run("view", "@adm/lib@1.1.0", "version").stdout.strip() == "1.1.0"

    ref = f"docker://127.0.0.1:{depot.port}/oci/team/app"
    skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:v1")
    assert api(depot, "DELETE", f"packages/oci/{seg('team/app')}/v1", admin).status_code == 200
    assert skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:v1", check=False).returncode != 0
    skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:multi")

    assert api(depot, "DELETE", "packages/files/tools%2Fa.txt/-", admin).status_code == 200
    assert curl("-u", creds, f"{depot.url}/files/tools/a.txt").stdout == "404"
    audit = [json.loads(line) for line in (depot.data_dir / "audit.log").read_text().splitlines()]
    deletes = [a for a in audit if a["action"] == "delete" and a.get("via") == "admin-api"]
    assert {(a["repository"], a["package"]) for a in deletes} >= {("py", "adm-pkg"), ("npmr", "@adm/lib"),
                                                                 ("oci", "team/app"), ("files", "tools/a.txt")}
    assert all(a["actor"] == "admin" for a in deletes)


def test_cli_parity_shares_the_api_model(seeded: SimpleNamespace) -> None:
    depot = seeded.depot
    listed = cli_json(depot, "packages", "list", "--repository", "files")
    api_listed = api(depot, "GET", "packages", seeded.admin, repository="files").json()
    assert [i["name"] for i in listed["items"]] == [i["name"] for i in api_listed["items"]]
    shown = cli_json(depot, "packages", "show", "files", "tools/b.txt")
    assert shown["name"] == "tools/b.txt" and shown["versions"][0]["size"] == 1
    tags = cli_json(depot, "images", "tags", "oci", "team/app")
    assert {t["tag"] for t in tags["items"]} <= {"v1", "multi"}
    missing = depot.run_cli("packages", "show", "files", "nope", check=False)
    assert missing.returncode == 1 and "no package" in missing.stderr


def test_bulk_tag_deletion_by_regex_with_a_dry_run(seeded: SimpleNamespace) -> None:
    depot, creds = seeded.depot, seeded.creds
    ref = f"docker://127.0.0.1:{depot.port}/oci/team/app"
    for tag in ("dev-1", "dev-2"):
        skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds,
               f"oci:{seeded.layout.root}:multi", f"{ref}:{tag}")
    path = f"images/oci/{seg('team/app')}/tags"
    dry = api(depot, "DELETE", path, seeded.admin, regex="^dev-", dry_run="true").json()
    assert dry == {"dry_run": True, "tags": ["dev-1", "dev-2"]}
    assert cli_json(depot, "images", "delete", "oci", "team/app", "--regex", "^dev-", "--dry-run")["tags"] == \
        ["dev-1", "dev-2"]
    skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:dev-1")   # still there
    assert api(depot, "DELETE", path, ("bob", "password-123"), regex="^dev-").status_code == 404   # bob can't read oci
    done = cli_json(depot, "images", "delete", "oci", "team/app", "--regex", "^dev-")
    assert done == {"dry_run": False, "tags": ["dev-1", "dev-2"]}
    for tag in ("dev-1", "dev-2"):
        assert skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:{tag}",
                      check=False).returncode != 0
    skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"{ref}:multi")   # shares their manifest
    assert api(depot, "DELETE", path, seeded.admin, regex="(").status_code == 400


def test_deleting_a_crate_version_drops_it_from_the_sparse_index(depot_factory) -> None:
    import requests

    from cargo_fixtures import crate_bytes, index_path, publish_frame
    depot = depot_factory({"crates": {"format": "cargo", "type": "hosted"}})
    for version in ("0.1.0", "0.2.0"):
        answer = requests.put(f"{depot.url}/crates/api/v1/crates/new", timeout=10, data=publish_frame(
            {"name": "adm-crate", "vers": version, "deps": [], "features": {}}, crate_bytes("adm-crate", version)))
        assert answer.status_code == 200, answer.text
    assert [v["version"] for v in api(depot, "GET", "packages/crates/adm-crate").json()["versions"]] == ["0.1.0", "0.2.0"]
    assert api(depot, "DELETE", "packages/crates/adm-crate/0.1.0").status_code == 200
    lines = requests.get(f"{depot.url}/crates/{index_path('adm-crate')}", timeout=10).text.splitlines()
    assert [json.loads(line)["vers"] for line in lines] == ["0.2.0"]
    again = requests.put(f"{depot.url}/crates/api/v1/crates/new", timeout=10, data=publish_frame(
        {"name": "adm-crate", "vers": "0.1.0", "deps": [], "features": {}}, crate_bytes("adm-crate", "0.1.0", "x")))
    assert again.status_code >= 400                         # a deleted version number is never reused


def test_deleting_a_go_module_version_keeps_its_number_reserved(depot_factory) -> None:
    import requests

    from go_fixtures import escape, library, module_zip
    module = "example.com/admhello"
    depot = depot_factory({"go-local": {"format": "go", "type": "hosted"}})
    base = f"{depot.url}/go-local/{escape(module)}/@v"
    one = module_zip(module, "v1.0.0", library(module, "v1.0.0", "one"))
    assert requests.put(f"{base}/v1.0.0.zip", data=one, timeout=30).status_code == 201
    shown = api(depot, "GET", f"packages/go-local/{seg(module)}/v1.0.0").json()
    assert sorted(f["path"].rsplit(".", 1)[1] for f in shown["files"]) == ["info", "mod", "zip"]
    assert api(depot, "DELETE", f"packages/go-local/{seg(module)}/v1.0.0").status_code == 200
    assert requests.get(f"{base}/list", timeout=10).status_code == 404            # go stops resolving it
    other = module_zip(module, "v1.0.0", library(module, "v1.0.0", "two"))
    assert requests.put(f"{base}/v1.0.0.zip", data=other, timeout=30).status_code == 409
