"""SemVer 2.0.0 NuGet packages (`2.0.0-beta.1+build.5`) as nuget.org serves them: only in the
RegistrationsBaseUrl/3.6.0 hive and in searches that say `semVerLevel=2.0.0`; the SemVer 1 hives
and the v2 feed of older clients leave them out. Proxies read their upstream's SemVer 2 hive
(nuget.org's is gzip-encoded). Real clients: NuGet.exe 5.8 (v3) and nuget 2.8 (v2)."""
from __future__ import annotations

import gzip
import http.server
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nuget_fixtures import installed, nuget28, nuget28_tty, nuget58, nupkg, require_clients, write_nupkg  # noqa: E402

SEMVER2 = "2.0.0-beta.1+build.5"
NORMAL = "2.0.0-beta.1"


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def versions_of(url: str) -> list[str]:
    """The catalog versions of a registration index (inlined pages)."""
    doc = requests.get(url, timeout=10)
    assert doc.status_code == 200, (url, doc.status_code, doc.text)
    return [leaf["catalogEntry"]["version"] for page in doc.json()["items"] for leaf in page["items"]]


def search(url: str, **params: str) -> dict[str, list[str]]:
    data = requests.get(f"{url}/v3/query", params={"q": "acme", "prerelease": "true", **params}, timeout=10).json()
    return {item["id"]: [v["version"] for v in item["versions"]] for item in data["data"]}


def test_semver2_package_on_hosted_and_through_a_proxy_of_a_second_depot(depot_factory: Any,
                                                                          tmp_path: Path) -> None:
    require_clients()
    upstream = depot_factory({"nuget-local": {"format": "nuget", "type": "hosted", "anonymous_read": True}},
                             name="upstream", secure=True)
    hosted = f"{upstream.url}/nuget-local"
    token = make_token(upstream, "--repo", "nuget-local", "--perm", "write")
    for version, payload in (("1.0.0", "one"), (SEMVER2, "beta")):
        nuget58(tmp_path / "push", "push", str(write_nupkg(tmp_path / "pk", "Acme.Semver", version, payload=payload)),
                "-Source", f"{hosted}/v3/index.json", "-ApiKey", token)
    # hosted: the SemVer 2 hive and semVerLevel=2.0.0 searches have it, the SemVer 1 hive does not
    assert versions_of(f"{hosted}/v3/registration/acme.semver/index.json") == ["1.0.0", NORMAL]
    assert versions_of(f"{hosted}/v3/registration-semver1/acme.semver/index.json") == ["1.0.0"]
    assert search(hosted) == {"Acme.Semver": ["1.0.0"]}
    assert search(hosted, semVerLevel="2.0.0") == {"Acme.Semver": ["1.0.0", NORMAL]}
    nuget58(tmp_path / "h", "install", "Acme.Semver", "-Version", NORMAL, "-Prerelease", "-Source",
            f"{hosted}/v3/index.json", "-OutputDirectory", str(tmp_path / "out-h"), "-NoCache")
    assert installed(tmp_path / "out-h", "Acme.Semver", NORMAL).read_text() == "beta"

    proxy = depot_factory({
        "nuget-remote": {"format": "nuget", "type": "proxy", "upstream": f"{hosted}/v3/index.json"},
        "nuget-local": {"format": "nuget", "type": "hosted"},
        "nuget": {"format": "nuget", "type": "group", "members": ["nuget-local", "nuget-remote"],
                  "deploy_to": "nuget-local"}}, name="proxy")
    for repo in ("nuget-remote", "nuget"):
        base = f"{proxy.url}/{repo}"
        assert versions_of(f"{base}/v3/registration/acme.semver/index.json") == ["1.0.0", NORMAL], repo
        assert versions_of(f"{base}/v3/registration-semver1/acme.semver/index.json") == ["1.0.0"], repo
        assert search(base, semVerLevel="2.0.0") == {"Acme.Semver": ["1.0.0", NORMAL]}, repo
        assert search(base) == {"Acme.Semver": ["1.0.0"]}, repo
        out = tmp_path / f"out-{repo}"
        nuget58(tmp_path / repo, "install", "Acme.Semver", "-Version", NORMAL, "-Prerelease", "-Source",
                f"{base}/v3/index.json", "-OutputDirectory", str(out), "-NoCache")
        assert installed(out, "Acme.Semver", NORMAL).read_text() == "beta"
    # nuget 2.8 cannot parse SemVer 2.0.0 versions: the v2 feed leaves them out (as nuget.org's)
    # unless the query says semVerLevel=2.0.0; list and install work
    v2 = f"{proxy.url}/nuget/api/v2/"
    for level, expected in (("", ["1.0.0"]), ("2.0.0", ["1.0.0", NORMAL])):
        feed = requests.get(f"{v2}FindPackagesById()", params={"id": "'Acme.Semver'", "semVerLevel": level},
                            timeout=10).text
        assert re.findall(r"<d:Version>([^<]+)</d:Version>", feed) == expected, level
    listing = nuget28_tty(tmp_path / "list", "list", "-AllVersions", "-Prerelease", "-Source", v2)
    assert "Acme.Semver 1.0.0" in listing and "beta" not in listing, listing
    nuget28(tmp_path / "v2", "install", "Acme.Semver", "-Prerelease", "-Source", v2,
            "-OutputDirectory", str(tmp_path / "out-v2"), "-NoCache")
    assert installed(tmp_path / "out-v2", "Acme.Semver", "1.0.0").read_text() == "one"


def registration(base: str, package_id: str, versions: list[str], flat: str) -> dict[str, Any]:
    """A registration index as nuget.org's hives have it (one inlined page)."""
    lid = package_id.lower()
    leaves = []
    for version in versions:
        plain = version.split("+")[0].lower()
        content = f"{flat}{lid}/{plain}/{lid}.{plain}.nupkg"
        leaves.append({"@id": f"{base}{lid}/{plain}.json", "@type": "Package", "packageContent": content,
                       "catalogEntry": {"@id": f"https://catalog.example/{lid}.{plain}.json", "id": package_id,
                                        "version": version, "listed": True, "packageContent": content,
                                        "published": "2024-01-01T00:00:00+00:00", "dependencyGroups": []}})
    return {"@id": f"{base}{lid}/index.json", "count": 1,
            "items": [{"@id": f"{base}{lid}/index.json#page/{versions[0]}/{versions[-1]}", "count": len(leaves),
                       "lower": versions[0], "upper": versions[-1], "items": leaves}]}


class NugetOrgShaped:
    """A loopback upstream shaped like nuget.org: files with their own headers (the 3.6.0 hive is
    sent `Content-Encoding: gzip` whatever the request says, as nuget.org's blobs are), counting
    the requests per path. Stopped by the test."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.counts: dict[str, int] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                outer.counts[self.path] = outer.counts.get(self.path, 0) + 1
                body, headers = outer.files.get(self.path.split("?")[0], (b"not found", {}))
                self.send_response(200 if self.path.split("?")[0] in outer.files else 404)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, path: str, body: bytes, **headers: str) -> None:
        self.files["/" + path] = (body, headers)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_proxy_reads_the_gzip_semver2_hive_of_a_nuget_org_shaped_upstream(depot_factory: Any, tmp_path: Path) -> None:
    """nuget.org: RegistrationsBaseUrl (SemVer 1, plain) has 1.0.0 only, RegistrationsBaseUrl/3.6.0
    (gzip-encoded) has the SemVer 2.0.0 version too; the flat container has both."""
    require_clients()
    upstream = NugetOrgShaped()
    try:
        check_gzip_hive(upstream, depot_factory, tmp_path)
    finally:
        upstream.stop()


def check_gzip_hive(upstream: NugetOrgShaped, depot_factory: Any, tmp_path: Path) -> None:
    up, flat = upstream.url, f"{upstream.url}/flat/"
    upstream.put("index.json", json.dumps({"version": "3.0.0", "resources": [
        {"@id": flat, "@type": "PackageBaseAddress/3.0.0"},
        {"@id": f"{up}/reg-semver1/", "@type": "RegistrationsBaseUrl"},
        {"@id": f"{up}/reg-semver1/", "@type": "RegistrationsBaseUrl/3.0.0-rc"},
        {"@id": f"{up}/reg-gz-semver2/", "@type": "RegistrationsBaseUrl/3.6.0"}]}).encode())
    upstream.put("reg-semver1/acme.semver/index.json",
                 json.dumps(registration(f"{up}/reg-semver1/", "Acme.Semver", ["1.0.0"], flat)).encode())
    upstream.put("reg-gz-semver2/acme.semver/index.json", gzip.compress(json.dumps(registration(
        f"{up}/reg-gz-semver2/", "Acme.Semver", ["1.0.0", SEMVER2], flat)).encode()), **{"Content-Encoding": "gzip"})
    upstream.put("flat/acme.semver/index.json", json.dumps({"versions": ["1.0.0", NORMAL]}).encode())
    for version, payload in (("1.0.0", "one"), (NORMAL, "beta")):
        upstream.put(f"flat/acme.semver/{version}/acme.semver.{version}.nupkg",
                     nupkg("Acme.Semver", version, payload=payload), **{"Content-Type": "application/octet-stream"})
    proxy = depot_factory({"nuget-remote": {"format": "nuget", "type": "proxy", "upstream": f"{up}/index.json"}})
    base = f"{proxy.url}/nuget-remote"
    out = tmp_path / "out"
    nuget58(tmp_path / "home", "install", "Acme.Semver", "-Version", NORMAL, "-Prerelease", "-Source",
            f"{base}/v3/index.json", "-OutputDirectory", str(out), "-NoCache")
    assert installed(out, "Acme.Semver", NORMAL).read_text() == "beta"
    answer = requests.get(f"{base}/v3/registration/acme.semver/index.json", timeout=10)
    assert answer.headers.get("Content-Encoding", "identity") == "identity"      # decoded, URLs rewritten
    leaves = answer.json()["items"][0]["items"]
    assert [leaf["catalogEntry"]["version"] for leaf in leaves] == ["1.0.0", SEMVER2]
    assert all(leaf["packageContent"].startswith(base) for leaf in leaves) and up not in answer.text
    assert versions_of(f"{base}/v3/registration-semver1/acme.semver/index.json") == ["1.0.0"]
    assert upstream.counts.get("/reg-semver1/acme.semver/index.json", 0) == 0
    assert upstream.counts["/reg-gz-semver2/acme.semver/index.json"] == 1
