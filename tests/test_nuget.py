"""NuGet with the real clients against real depot processes: NuGet.exe 5.8 on mono (v3 service
index) and Debian's nuget 2.8 (v2 OData feed). Each run has a private HOME and -NoCache; the
proxy's upstream is a second depot filled by the real client, or a counting static tree; never
the internet. No dotnet SDK here: its restore sequence is replayed over HTTP.
"""
from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_util import get_many  # noqa: E402
from nuget_fixtures import (installed, nuget28, nuget28_tty, nuget58, nupkg, require_clients,  # noqa: E402
                            write_nupkg)

REPOS = {
    "nuget-local": {"format": "nuget", "type": "hosted", "anonymous_read": True},
    "nuget": {"format": "nuget", "type": "group", "members": ["nuget-local"], "deploy_to": "nuget-local"},
}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def push_raw(url: str, package: bytes, token: str | None = None) -> requests.Response:
    """A push as NuGet clients send it: PUT multipart/form-data with one part."""
    headers = {"X-NuGet-ApiKey": token} if token else {}
    return requests.put(f"{url}/api/v2/package", files={"package": ("package.nupkg", package)}, headers=headers,
                        timeout=30)


@pytest.fixture
def env(depot_factory: Any, tmp_path: Path) -> SimpleNamespace:
    require_clients()
    depot = depot_factory(REPOS, secure=True)
    return SimpleNamespace(depot=depot, tmp=tmp_path, url=f"{depot.url}/nuget",
                           writer=make_token(depot, "--repo", "nuget-local", "--perm", "write"))


def test_push_and_install_with_nuget58_over_v3_through_group(env: SimpleNamespace) -> None:
    index = requests.get(f"{env.url}/v3/index.json", timeout=10).json()
    types = {r["@type"]: r["@id"] for r in index["resources"]}
    assert types["RegistrationsBaseUrl/3.0.0-rc"] == types["RegistrationsBaseUrl/3.0.0-beta"] == \
        types["RegistrationsBaseUrl"] == f"{env.url}/v3/registration-semver1/"      # SemVer 1 clients' hive
    assert types["RegistrationsBaseUrl/3.6.0"] == f"{env.url}/v3/registration/"
    assert types["PackagePublish/2.0.0"] == f"{env.url}/api/v2/package"
    source = f"{env.url}/v3/index.json"
    for package in (write_nupkg(env.tmp / "pk", "Acme.Hello", "1.0.0", payload="hello"),
                    write_nupkg(env.tmp / "pk", "Acme.Two", "2.0.0", deps={"Acme.Hello": "1.0.0"}, payload="two")):
        pushed = nuget58(env.tmp / "push", "push", str(package), "-Source", source, "-ApiKey", env.writer)
        assert "Your package was pushed" in pushed.stdout
    out = env.tmp / "out"
    nuget58(env.tmp / "install", "install", "Acme.Two", "-Version", "2.0.0", "-Source", source,
            "-OutputDirectory", str(out), "-NoCache")
    assert installed(out, "Acme.Two", "2.0.0").read_text() == "two"
    assert installed(out, "Acme.Hello", "1.0.0").read_text() == "hello"
    flat = requests.get(f"{env.url}/v3-flatcontainer/acme.hello/index.json", timeout=10).json()
    assert flat == {"versions": ["1.0.0"]}


def test_push_and_install_with_nuget28_over_v2(env: SimpleNamespace) -> None:
    folder = env.tmp / "pk"
    for package in (write_nupkg(folder, "Acme.Hello", "1.0.0", payload="hello"),
                    write_nupkg(folder, "Acme.Two", "2.0.0", deps={"Acme.Hello": "1.0.0"}, payload="two")):
        pushed = nuget28(env.tmp / "push", "push", package.name, "-Source", f"{env.url}/api/v2/package",
                         "-ApiKey", env.writer, cwd=folder)
        assert "Your package was pushed" in pushed.stdout
    out = env.tmp / "out"
    done = nuget28(env.tmp / "install", "install", "Acme.Two", "-Version", "2.0.0", "-Source", f"{env.url}/api/v2/",
                   "-OutputDirectory", str(out), "-NoCache")
    assert "Successfully installed 'Acme.Two 2.0.0'" in done.stdout
    assert installed(out, "Acme.Hello", "1.0.0").read_text() == "hello"
    entry = requests.get(f"{env.url}/api/v2/Packages(Id='Acme.Two',Version='2.0.0')", timeout=10)
    assert entry.headers["Content-Type"].startswith("application/atom+xml")
    assert "<d:Dependencies>Acme.Hello:1.0.0:.NETStandard2.0</d:Dependencies>" in entry.text


def listed(output: str) -> list[tuple[str, str]]:
    """(id, version) lines of `nuget list` output."""
    return [tuple(line.split()) for line in output.splitlines()  # type: ignore[misc]
            if len(line.split()) == 2 and line.startswith("Acme.")]


def test_nuget28_list_pages_through_every_package(env: SimpleNamespace, depot_factory: Any) -> None:
    """nuget 2.8 `list` asks Search() 30 packages a page, ordered by id, until a page is empty:
    every package exactly once, on hosted (through the group) and on a proxy of it."""
    ids = [f"Acme.P{n:02d}" for n in range(37)]
    for package_id in ids:
        assert push_raw(env.url, nupkg(package_id, "1.0.0"), env.writer).status_code == 201
    assert push_raw(env.url, nupkg("Acme.P05", "1.1.0"), env.writer).status_code == 201
    latest = [(i, "1.1.0" if i == "Acme.P05" else "1.0.0") for i in ids]
    assert listed(nuget28_tty(env.tmp / "list", "list", "-Source", f"{env.url}/api/v2/")) == latest
    every = listed(nuget28_tty(env.tmp / "all", "list", "-AllVersions", "-Source", f"{env.url}/api/v2/"))
    assert sorted(every) == sorted(latest + [("Acme.P05", "1.0.0")])
    proxy = depot_factory({"nuget-remote": {"format": "nuget", "type": "proxy",
                                            "upstream": f"{env.url}/v3/index.json"}}, name="proxy")
    assert listed(nuget28_tty(env.tmp / "proxy", "list", "-Source", f"{proxy.url}/nuget-remote/api/v2/")) == latest


def test_versions_normalised_ids_lowercased_and_duplicates_refused(env: SimpleNamespace) -> None:
    assert push_raw(env.url, nupkg("Acme.Norm", "01.2.0.0+build.7"), env.writer).status_code == 201
    assert requests.get(f"{env.url}/v3-flatcontainer/acme.norm/index.json", timeout=10).json() == \
        {"versions": ["1.2.0"]}
    registration = requests.get(f"{env.url}/v3/registration/ACME.NORM/index.json", timeout=10).json()
    leaf = registration["items"][0]["items"][0]
    assert leaf["catalogEntry"]["version"] == "1.2.0" and leaf["catalogEntry"]["id"] == "Acme.Norm"
    assert leaf["packageContent"] == f"{env.url}/v3-flatcontainer/acme.norm/1.2.0/acme.norm.1.2.0.nupkg"
    assert requests.get(leaf["packageContent"], timeout=10).status_code == 200
    again = nuget58(env.tmp / "push", "push", str(write_nupkg(env.tmp / "pk", "Acme.Norm", "1.2.0")), "-Source",
                    f"{env.url}/v3/index.json", "-ApiKey", env.writer, check=False)
    assert again.returncode != 0 and "409" in again.stdout + again.stderr and "already exists" in again.stderr


def test_unlist_hides_from_search_and_relist_brings_back(env: SimpleNamespace) -> None:
    for version in ("1.0.0", "1.1.0"):
        assert push_raw(env.url, nupkg("Acme.Hello", version), env.writer).status_code == 201
    deleter = make_token(env.depot, "--repo", "nuget-local", "--perm", "delete")
    nuget58(env.tmp / "del", "delete", "Acme.Hello", "1.1.0", "-Source", f"{env.url}/v3/index.json",
            "-ApiKey", deleter)
    leaves = requests.get(f"{env.url}/v3/registration/acme.hello/index.json", timeout=10).json()["items"][0]["items"]
    assert [(x["catalogEntry"]["version"], x["catalogEntry"]["listed"]) for x in leaves] == \
        [("1.0.0", True), ("1.1.0", False)]
    search = requests.get(f"{env.url}/v3/query?q=acme", timeout=10).json()
    assert search["totalHits"] == 1 and search["data"][0]["version"] == "1.0.0"
    relisted = requests.post(f"{env.url}/api/v2/package/Acme.Hello/1.1.0", headers={"X-NuGet-ApiKey": deleter},
                             timeout=10)
    assert relisted.status_code == 200
    assert requests.get(f"{env.url}/v3/query?q=acme", timeout=10).json()["data"][0]["version"] == "1.1.0"
    complete = requests.get(f"{env.url}/v3/autocomplete?id=acme.hello", timeout=10).json()
    assert complete["data"] == ["1.0.0", "1.1.0"]


def test_registration_paged_past_128_versions(env: SimpleNamespace) -> None:
    versions = [f"1.0.{n}" for n in range(130)]
    for version in versions:
        assert push_raw(env.url, nupkg("Acme.Many", version, payload=version), env.writer).status_code == 201
    index = requests.get(f"{env.url}/v3/registration/acme.many/index.json", timeout=10).json()
    assert index["count"] == 3 and all("items" not in page for page in index["items"])
    assert [p["count"] for p in index["items"]] == [64, 64, 2]
    last = requests.get(index["items"][2]["@id"], timeout=10).json()
    assert [leaf["catalogEntry"]["version"] for leaf in last["items"]] == ["1.0.128", "1.0.129"]
    small = requests.get(f"{env.url}/v3/registration/acme.many/1.0.5.json", timeout=10).json()
    assert small["packageContent"].endswith("/acme.many/1.0.5/acme.many.1.0.5.nupkg")
    out = env.tmp / "out"
    nuget58(env.tmp / "install", "install", "Acme.Many", "-Version", "1.0.129", "-Source",
            f"{env.url}/v3/index.json", "-OutputDirectory", str(out), "-NoCache")
    assert installed(out, "Acme.Many", "1.0.129").read_text() == "1.0.129"


def test_dotnet_restore_request_sequence_replayed(env: SimpleNamespace) -> None:
    """dotnet restore: service index → RegistrationsBaseUrl/3.6.0 (or the flat container's
    index.json) → packageContent / flat-container .nupkg."""
    package = nupkg("Acme.Restore", "3.0.0-beta.1")
    assert push_raw(env.url, package, env.writer).status_code == 201
    resources = {r["@type"]: r["@id"] for r in requests.get(f"{env.url}/v3/index.json", timeout=10).json()["resources"]}
    registration = requests.get(resources["RegistrationsBaseUrl/3.6.0"] + "acme.restore/index.json", timeout=10).json()
    entry = registration["items"][0]["items"][0]
    assert entry["catalogEntry"]["version"] == "3.0.0-beta.1"
    assert requests.get(entry["packageContent"], timeout=10).content == package
    flat = resources["PackageBaseAddress/3.0.0"]
    assert requests.get(flat + "acme.restore/index.json", timeout=10).json() == {"versions": ["3.0.0-beta.1"]}
    nupkg_answer = requests.get(flat + "acme.restore/3.0.0-beta.1/acme.restore.3.0.0-beta.1.nupkg", timeout=10)
    assert nupkg_answer.content == package
    nuspec = requests.get(flat + "acme.restore/3.0.0-beta.1/acme.restore.nuspec", timeout=10)
    assert b"<id>Acme.Restore</id>" in nuspec.content
    assert requests.get(flat + "acme.nothing/index.json", timeout=10).status_code == 404


# ------------------------------------------------------------------------------------ access, bad input

def test_anonymous_push_is_challenged_and_read_token_refused(env: SimpleNamespace) -> None:
    package = write_nupkg(env.tmp / "pk", "Acme.Hello", "1.0.0")
    anonymous = nuget58(env.tmp / "anon", "push", str(package), "-Source", f"{env.url}/v3/index.json", check=False)
    assert anonymous.returncode != 0 and "401" in anonymous.stdout + anonymous.stderr
    raw = push_raw(env.url, package.read_bytes())
    assert raw.status_code == 401 and raw.headers["WWW-Authenticate"].startswith("Basic")
    reader = make_token(env.depot, "--repo", "nuget-local", "--perm", "read")
    denied = nuget58(env.tmp / "read", "push", str(package), "-Source", f"{env.url}/v3/index.json",
                     "-ApiKey", reader, check=False)
    assert denied.returncode != 0 and "403" in denied.stdout + denied.stderr and "may not write" in denied.stderr
    assert requests.get(f"{env.url}/v3-flatcontainer/acme.hello/index.json", timeout=10).status_code == 404


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


BOMB = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<package><metadata><id>Acme.Bad</id><version>1.0.0</version><description>&b;</description></metadata>'
        '</package>')


@pytest.mark.parametrize("case", ["not-zip", "no-nuspec", "entities", "bad-version", "bad-id", "oversized"])
def test_bad_packages_are_refused_and_store_nothing(depot_factory: Any, case: str) -> None:
    depot = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted", "max_upload": "64KiB"}})
    url = f"{depot.url}/nuget-local"
    body = {"not-zip": b"plain bytes",
            "no-nuspec": _zip({"lib/a.txt": "x"}),
            "entities": _zip({"Acme.Bad.nuspec": BOMB}),
            "bad-version": nupkg("Acme.Bad", "1.0.0.0.0"),
            "bad-id": nupkg("Acme/../Bad", "1.0.0"),
            "oversized": nupkg("Acme.Bad", "1.0.0") + b"\0" * 70_000}[case]
    answer = push_raw(url, body)
    assert answer.status_code == (413 if case == "oversized" else 400), answer.text
    assert answer.reason and answer.reason == answer.text.strip()[:200]    # the client prints the reason phrase
    assert requests.get(f"{url}/v3-flatcontainer/acme.bad/index.json", timeout=10).status_code == 404
    assert requests.get(f"{url}/v3/query?q=acme", timeout=10).json()["totalHits"] == 0


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    require_clients()
    upstream = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted", "anonymous_read": True}},
                             name="upstream", secure=True)
    token = make_token(upstream, "--repo", "nuget-local", "--perm", "write")
    for package in (write_nupkg(tmp_path / "pk", "Acme.Hello", "1.0.0", payload="hello"),
                    write_nupkg(tmp_path / "pk", "Acme.Two", "2.0.0", deps={"Acme.Hello": "1.0.0"}, payload="two")):
        nuget58(tmp_path / "push", "push", str(package), "-Source", f"{upstream.url}/nuget-local/v3/index.json",
                "-ApiKey", token)
    proxy = depot_factory({
        "nuget-remote": {"format": "nuget", "type": "proxy", "upstream": f"{upstream.url}/nuget-local/v3/index.json"},
        "nuget-local": {"format": "nuget", "type": "hosted"},
        "nuget": {"format": "nuget", "type": "group", "members": ["nuget-local", "nuget-remote"],
                  "deploy_to": "nuget-local"}}, name="proxy")
    assert push_raw(f"{proxy.url}/nuget", nupkg("Acme.Hello", "1.1.0", payload="local")).status_code == 201
    group = f"{proxy.url}/nuget"
    out = tmp_path / "out"
    nuget58(tmp_path / "first", "install", "Acme.Two", "-Version", "2.0.0", "-Source", f"{group}/v3/index.json",
            "-OutputDirectory", str(out), "-NoCache")
    assert installed(out, "Acme.Hello", "1.0.0").read_text() == "hello"
    nuget28(tmp_path / "v2", "install", "Acme.Two", "-Version", "2.0.0", "-Source", f"{proxy.url}/nuget-remote/api/v2/",
            "-OutputDirectory", str(tmp_path / "out-v2"), "-NoCache")
    assert installed(tmp_path / "out-v2", "Acme.Two", "2.0.0").read_text() == "two"

    # every URL points at depot, never at the upstream
    for path in ("nuget-remote/v3/registration/acme.hello/index.json", "nuget-remote/v3/query?q=acme",
                 "nuget/v3/registration/acme.hello/index.json"):
        body = requests.get(f"{proxy.url}/{path}", timeout=10).text
        assert upstream.url not in body and proxy.url in body, path
    catalog = requests.get(f"{proxy.url}/nuget-remote/v3/registration/acme.hello/index.json",
                           timeout=10).json()["items"][0]["items"][0]["catalogEntry"]["@id"]
    assert requests.get(catalog, timeout=10).json()["version"] == "1.0.0"
    spaced = requests.get(f"{proxy.url}/nuget-remote/v3/query", params={"q": "acme two"}, timeout=10).json()
    assert [item["id"] for item in spaced["data"]] == ["Acme.Two"]
    merged = requests.get(f"{group}/v3-flatcontainer/acme.hello/index.json", timeout=10)
    assert merged.json() == {"versions": ["1.0.0", "1.1.0"]}
    leaves = requests.get(f"{group}/v3/registration/acme.hello/index.json", timeout=10).json()["items"][0]["items"]
    assert [x["packageContent"] for x in leaves] == [
        f"{group}/v3-flatcontainer/acme.hello/{v}/acme.hello.{v}.nupkg" for v in ("1.0.0", "1.1.0")]
    hit = requests.get(f"{proxy.url}/nuget-remote/v3-flatcontainer/acme.two/2.0.0/acme.two.2.0.0.nupkg", timeout=10)
    assert hit.headers["X-Cache"] == "HIT"

    upstream.stop()
    second = tmp_path / "second"
    nuget58(tmp_path / "again", "install", "Acme.Two", "-Version", "2.0.0", "-Source", f"{group}/v3/index.json",
            "-OutputDirectory", str(second), "-NoCache")
    assert installed(second, "Acme.Two", "2.0.0").read_text() == "two"


def test_twenty_concurrent_clients_one_upstream_get(depot_factory: Any, upstream: Any) -> None:
    index = {"version": "3.0.0", "resources": [
        {"@id": f"{upstream.url}/flat/", "@type": "PackageBaseAddress/3.0.0"},
        {"@id": f"{upstream.url}/reg/", "@type": "RegistrationsBaseUrl"}]}
    upstream.put("/index.json", json.dumps(index).encode())
    package = nupkg("Acme.Big", "1.0.0", payload="x" * 3_000_000)
    upstream.put("/flat/acme.big/1.0.0/acme.big.1.0.0.nupkg", package)
    upstream.mode("/flat/acme.big/1.0.0/acme.big.1.0.0.nupkg", "slow", rate=4_000_000)
    depot = depot_factory({"nuget-remote": {"format": "nuget", "type": "proxy",
                                            "upstream": f"{upstream.url}/index.json"}})
    answers = get_many(f"{depot.url}/nuget-remote/v3-flatcontainer/acme.big/1.0.0/acme.big.1.0.0.nupkg", 20)
    assert all(a.status == 200 and a.body == package for a in answers)
    assert upstream.count("/flat/acme.big/1.0.0/acme.big.1.0.0.nupkg") == 1


def test_policy_hides_denied_versions_from_every_proxy_answer(depot_factory: Any, tmp_path: Path) -> None:
    require_clients()
    upstream = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted"}}, name="upstream")
    for version in ("1.0.0", "2.0.0"):
        assert push_raw(f"{upstream.url}/nuget-local", nupkg("Acme.Hello", version, payload=version)).status_code == 201
    proxy = depot_factory({
        "nuget-remote": {"format": "nuget", "type": "proxy", "upstream": f"{upstream.url}/nuget-local/v3/index.json"},
        "nuget-local": {"format": "nuget", "type": "hosted"},
        "nuget": {"format": "nuget", "type": "group", "members": ["nuget-local", "nuget-remote"],
                  "deploy_to": "nuget-local"}}, name="proxy", extra={"policy": {"deny": ["acme.hello@<2"]}})
    for repo in ("nuget-remote", "nuget"):
        base = f"{proxy.url}/{repo}"
        assert requests.get(f"{base}/v3-flatcontainer/acme.hello/index.json", timeout=10).json() == \
            {"versions": ["2.0.0"]}
        leaves = requests.get(f"{base}/v3/registration/acme.hello/index.json", timeout=10).json()["items"][0]
        assert [x["catalogEntry"]["version"] for x in leaves["items"]] == ["2.0.0"] and leaves["count"] == 1
        refused = requests.get(f"{base}/v3-flatcontainer/acme.hello/1.0.0/acme.hello.1.0.0.nupkg", timeout=10)
        assert refused.status_code == 403 and "acme.hello@<2" in refused.reason
    failed = nuget58(tmp_path / "old", "install", "Acme.Hello", "-Version", "1.0.0", "-Source",
                     f"{proxy.url}/nuget/v3/index.json", "-OutputDirectory", str(tmp_path / "o1"), "-NoCache",
                     check=False)
    assert failed.returncode != 0
    nuget58(tmp_path / "new", "install", "Acme.Hello", "-Version", "2.0.0", "-Source",
            f"{proxy.url}/nuget/v3/index.json", "-OutputDirectory", str(tmp_path / "o2"), "-NoCache")
    assert installed(tmp_path / "o2", "Acme.Hello", "2.0.0").read_text() == "2.0.0"


def test_delete_removes_when_configured_and_the_version_stays_taken(depot_factory: Any) -> None:
    depot = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted",
                                           "options": {"delete_unlists": False}}})
    url = f"{depot.url}/nuget-local"
    for version in ("1.0.0", "2.0.0"):
        assert push_raw(url, nupkg("Acme.Gone", version)).status_code == 201
    assert requests.delete(f"{url}/api/v2/package/Acme.Gone/1.0.0", timeout=10).status_code == 204
    assert requests.get(f"{url}/v3-flatcontainer/acme.gone/index.json", timeout=10).json() == {"versions": ["2.0.0"]}
    assert requests.get(f"{url}/v3-flatcontainer/acme.gone/1.0.0/acme.gone.1.0.0.nupkg", timeout=10).status_code == 404
    assert requests.delete(f"{url}/api/v2/package/Acme.Gone/1.0.0", timeout=10).status_code == 404
    other = push_raw(url, nupkg("Acme.Gone", "1.0.0", payload="other bytes"))
    assert other.status_code == 409, other.text            # a deleted version never takes other bytes
    latest = requests.get(f"{url}/api/v2/Search()?searchTerm='gone'&$filter=IsLatestVersion", timeout=10).text
    assert latest.count("<entry") == 1 and "<d:Version>2.0.0</d:Version>" in latest


def test_warm_from_packages_lock_then_install_with_the_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    require_clients()
    upstream = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted"}}, name="upstream")
    assert push_raw(f"{upstream.url}/nuget-local", nupkg("Acme.Hello", "1.0.0", payload="hello")).status_code == 201
    assert push_raw(f"{upstream.url}/nuget-local",
                    nupkg("Acme.Two", "2.0.0", deps={"Acme.Hello": "1.0.0"}, payload="two")).status_code == 201
    cold = depot_factory({"nuget-remote": {"format": "nuget", "type": "proxy",
                                           "upstream": f"{upstream.url}/nuget-local/v3/index.json"}}, name="cold")
    lock = tmp_path / "packages.lock.json"
    lock.write_text(json.dumps({"version": 1, "dependencies": {".NETStandard,Version=v2.0": {
        "Acme.Two": {"type": "Direct", "requested": "[2.0.0, )", "resolved": "2.0.0",
                     "dependencies": {"Acme.Hello": "1.0.0"}},
        "Acme.Hello": {"type": "Transitive", "resolved": "1.0.0"}}}}))
    warmed = cold.run_cli("warm", "nuget-remote", str(lock), "--url", cold.url, check=False)
    assert warmed.returncode == 0 and "6 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    upstream.stop()
    out = tmp_path / "out"
    nuget58(tmp_path / "home", "install", "Acme.Two", "-Version", "2.0.0", "-Source",
            f"{cold.url}/nuget-remote/v3/index.json", "-OutputDirectory", str(out), "-NoCache")
    assert installed(out, "Acme.Hello", "1.0.0").read_text() == "hello"
