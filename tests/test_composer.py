"""Composer with the real composer (Debian, php-cli) against real depot processes.

Every composer run has a private COMPOSER_HOME and COMPOSER_CACHE_DIR and a composer.json with
`"packagist.org": false`; upstreams are a second depot (hosted, filled by uploads) or a static
p2 tree served by tests/upstream.py. Composer has no publish command: uploads are HTTP.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from composer_fixtures import composer, composer_env, locked, package_zip, run_php, write_app  # noqa: E402
from http_util import get, get_many  # noqa: E402

REPOS = {
    "composer-local": {"format": "composer", "type": "hosted"},
    "composer": {"format": "composer", "type": "group", "members": ["composer-local"], "deploy_to": "composer-local"},
}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def upload(base: str, name: str, version: str, data: bytes, **kw: Any) -> requests.Response:
    return requests.put(f"{base}/packages/{name}/{version}.zip", data=data, timeout=30, **kw)


def fill(base: str) -> None:
    """acme/leaf 1.0.0 and 1.1.0, acme/tiny 1.0.0 requiring acme/leaf ^1.0."""
    for version in ("1.0.0", "1.1.0"):
        assert upload(base, "acme/leaf", version, package_zip("acme/leaf", message=f" {version}")).status_code == 201
    assert upload(base, "acme/tiny", "v1.0.0", package_zip("acme/tiny", {"acme/leaf": "^1.0"}, top="acme-tiny-abc")
                  ).status_code == 201


@pytest.fixture
def env(depot_factory: Any, tmp_path: Path) -> SimpleNamespace:
    depot = depot_factory(REPOS)
    return SimpleNamespace(depot=depot, tmp=tmp_path, group=f"{depot.url}/composer")


def test_upload_then_composer_install_through_group(env: SimpleNamespace) -> None:
    fill(env.group)
    root = requests.get(f"{env.group}/packages.json", timeout=10).json()
    assert root["metadata-url"] == f"{env.group}/p2/%package%.json"
    assert root["available-packages"] == ["acme/leaf", "acme/tiny"]
    doc = requests.get(f"{env.group}/p2/acme/tiny.json", timeout=10).json()["packages"]["acme/tiny"]
    dist = doc[0]["dist"]
    assert doc[0]["version"] == "v1.0.0" and doc[0]["version_normalized"] == "1.0.0.0"
    zipped = requests.get(dist["url"], timeout=10).content
    assert dist["url"].startswith(f"{env.group}/dists/") and dist["shasum"] == hashlib.sha1(zipped).hexdigest()

    app = write_app(env.tmp / "app", env.group, {"acme/tiny": "^1.0"})
    composer(composer_env(env.tmp), app, "install")
    assert locked(app) == {"acme/leaf": "1.1.0", "acme/tiny": "v1.0.0"}
    assert run_php(app, "\\Acme\\Tiny\\Hello::hi()") == "acme/tiny acme/leaf 1.1.0"
    # a fresh cache again: everything from depot, the same answer
    app2 = write_app(env.tmp / "app2", env.group, {"acme/leaf": "1.0.0"})
    composer(composer_env(env.tmp, "c2"), app2, "install")
    assert run_php(app2, "\\Acme\\Leaf\\Hello::hi()") == "acme/leaf 1.0.0"


def test_multipart_upload_and_duplicates_refused(env: SimpleNamespace) -> None:
    data = package_zip("acme/leaf", extra={"version": "2.0.0-beta1"})
    posted = requests.post(f"{env.group}/packages", files={"package": ("leaf.zip", data)}, timeout=10)
    assert posted.status_code == 201 and posted.json()["version"] == "2.0.0-beta1"
    entry = requests.get(f"{env.group}/p2/acme/leaf.json", timeout=10).json()["packages"]["acme/leaf"][0]
    assert entry["version_normalized"] == "2.0.0.0-beta1"
    again = upload(env.group, "acme/leaf", "2.0.0-beta1", data)
    assert again.status_code == 409 and again.json() == {
        "status": "error", "message": "acme/leaf 2.0.0-beta1 already exists in composer-local"}
    same_version = upload(env.group, "acme/leaf", "v2.0.0-beta1", package_zip("acme/leaf", message="other"))
    assert same_version.status_code == 409
    assert len(requests.get(f"{env.group}/p2/acme/leaf.json", timeout=10).json()["packages"]["acme/leaf"]) == 1
    branch = upload(env.group, "acme/leaf", "dev-main", package_zip("acme/leaf"))
    assert branch.status_code == 201
    dev = requests.get(f"{env.group}/p2/acme/leaf~dev.json", timeout=10).json()["packages"]["acme/leaf"]
    assert [v["version"] for v in dev] == ["dev-main"]


def broken_zip() -> bytes:
    return package_zip("acme/bad")[:-30]


def unsafe_zip() -> bytes:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("composer.json", json.dumps({"name": "acme/bad"}))
        zf.writestr("../../evil.php", "<?php")
    return out.getvalue()


def zip_with(name: str, text: str) -> bytes:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(name, text)
    return out.getvalue()


BAD = {
    "not-a-zip": ("1.0.0", lambda: b"plain bytes"),
    "truncated": ("1.0.0", broken_zip),
    "no-composer-json": ("1.0.0", lambda: zip_with("README.md", "hi")),
    "composer-json-not-json": ("1.0.0", lambda: zip_with("composer.json", "{nope")),
    "name-mismatch": ("1.0.0", lambda: package_zip("acme/other")),
    "bad-version": ("1.0.0-banana", lambda: package_zip("acme/bad")),
    "version-mismatch": ("1.0.0", lambda: package_zip("acme/bad", extra={"version": "2.0.0"})),
    "unsafe-path": ("1.0.0", unsafe_zip),
    "oversized": ("1.0.0", lambda: package_zip("acme/bad", extra={"pad": "x" * 200_000})),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_uploads_are_refused_and_store_nothing(depot_factory: Any, case: str) -> None:
    depot = depot_factory({**REPOS, "composer-local": {**REPOS["composer-local"], "max_upload": "64KiB"}})
    version, make = BAD[case]
    answer = upload(f"{depot.url}/composer", "acme/bad", version, make())
    assert answer.status_code == (413 if case == "oversized" else 400), answer.text
    assert answer.json()["status"] == "error" and answer.json()["message"]
    assert requests.get(f"{depot.url}/composer/p2/acme/bad.json", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/composer/dists/acme/bad/{version}.zip", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/composer/packages.json", timeout=10).json()["available-packages"] == []


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    fill(f"{upstream.url}/composer-local")
    proxy = depot_factory({"composer-remote": {"format": "composer", "type": "proxy",
                                               "upstream": f"{upstream.url}/composer-local"}}, name="proxy")
    repo = f"{proxy.url}/composer-remote"
    doc = requests.get(f"{repo}/p2/acme/tiny.json", timeout=10)
    entry = doc.json()["packages"]["acme/tiny"][0]
    assert doc.headers["X-Cache"] == "MISS" and entry["dist"]["url"].startswith(f"{repo}/dists/acme/tiny/v1.0.0/")

    app = write_app(tmp_path / "app", repo, {"acme/tiny": "^1.0"})
    composer(composer_env(tmp_path, "first"), app, "install")
    assert run_php(app, "\\Acme\\Tiny\\Hello::hi()") == "acme/tiny acme/leaf 1.1.0"
    assert requests.get(entry["dist"]["url"], timeout=10).headers["X-Cache"] == "HIT"
    assert requests.get(f"{repo}/p2/acme/leaf.json", timeout=10).headers["X-Cache"] == "HIT"

    upstream.stop()
    app2 = write_app(tmp_path / "app2", repo, {"acme/tiny": "^1.0"})
    composer(composer_env(tmp_path, "second"), app2, "install")      # fresh cache, upstream gone
    assert locked(app2) == {"acme/leaf": "1.1.0", "acme/tiny": "v1.0.0"}

    # `depot warm` from composer.lock fills a new proxy
    upstream.start()
    cold = depot_factory({"composer-remote": {"format": "composer", "type": "proxy",
                                              "upstream": f"{upstream.url}/composer-local"}}, name="cold")
    warmed = cold.run_cli("warm", "composer-remote", str(app / "composer.lock"), "--url", cold.url, check=False)
    assert warmed.returncode == 0 and "4 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    upstream.stop()
    app3 = write_app(tmp_path / "app3", f"{cold.url}/composer-remote", {"acme/tiny": "^1.0"})
    composer(composer_env(tmp_path, "third"), app3, "install")


def minified(name: str, versions: list[dict[str, Any]]) -> bytes:
    """A p2 document minified the way Packagist serves it."""
    out, previous = [], {}
    for full in versions:
        delta = {k: v for k, v in full.items() if previous.get(k) != v}
        delta.update({k: "__unset" for k in previous if k not in full})
        out.append(delta)
        previous = full
    return json.dumps({"packages": {name: out}, "minified": "composer/2.0"}).encode()


@pytest.fixture
def static(depot_factory: Any, upstream: Any) -> SimpleNamespace:
    """A Packagist-like upstream: minified p2 documents, dists under /dl/ (same origin) and one
    dist on another host name (`localhost`), one dist whose bytes do not match its shasum."""
    big = os.urandom(1_500_000)
    good, evil = package_zip("acme/evil"), package_zip("acme/evil", message=" tampered")
    far = package_zip("acme/far")

    def version(name: str, v: str, url: str, data: bytes, **extra: Any) -> dict[str, Any]:
        return {"name": name, "version": v, "version_normalized": v + ".0", "time": "2024-01-02T03:04:05+00:00",
                "dist": {"type": "zip", "url": url, "reference": "abc123" + v.replace(".", ""),
                         "shasum": hashlib.sha1(data).hexdigest()}, **extra}

    up = upstream.url
    upstream.put("p2/acme/big.json", minified("acme/big", [
        version("acme/big", "1.0.0", f"{up}/dl/big-1.0.0.zip", big, description="big", license=["MIT"]),
        version("acme/big", "0.9.0", f"{up}/dl/big-0.9.0.zip", big)]))
    upstream.put("dl/big-1.0.0.zip", big)
    upstream.put("p2/acme/evil.json", minified("acme/evil", [version("acme/evil", "1.0.0", f"{up}/dl/evil.zip", good)]))
    upstream.put("dl/evil.zip", evil)
    upstream.put("p2/acme/far.json", minified("acme/far", [
        version("acme/far", "1.0.0", f"http://localhost:{upstream.port}/dl/far.zip", far)]))
    upstream.put("dl/far.zip", far)
    repos = {"composer-remote": {"format": "composer", "type": "proxy", "upstream": up},
             "composer-open": {"format": "composer", "type": "proxy", "upstream": up,
                               "options": {"dist_hosts": ["localhost"]}}}
    depot = depot_factory(repos)
    return SimpleNamespace(depot=depot, upstream=upstream, big=big, far=far)


def test_minified_packagist_document_is_expanded_and_rewritten(static: SimpleNamespace) -> None:
    repo = f"{static.depot.url}/composer-remote"
    versions = requests.get(f"{repo}/p2/acme/big.json", timeout=10).json()["packages"]["acme/big"]
    assert [v["version"] for v in versions] == ["1.0.0", "0.9.0"]
    assert "description" not in versions[1] and versions[1]["name"] == "acme/big"       # "__unset" applied
    assert versions[0]["dist"]["url"] == f"{repo}/dists/acme/big/1.0.0/abc123100.zip"
    assert versions[1]["dist"]["url"] == f"{repo}/dists/acme/big/0.9.0/abc123090.zip"


def test_twenty_concurrent_clients_one_upstream_get(static: SimpleNamespace) -> None:
    repo = f"{static.depot.url}/composer-remote"
    url = requests.get(f"{repo}/p2/acme/big.json", timeout=10).json()["packages"]["acme/big"][0]["dist"]["url"]
    static.upstream.mode("/dl/big-1.0.0.zip", "slow", rate=3_000_000)
    answers = get_many(url, 20)
    assert all(a.status == 200 and a.body == static.big for a in answers)
    assert static.upstream.count("/dl/big-1.0.0.zip") == 1
    assert get(url).headers["X-Cache"] == "HIT"


def test_tampered_dist_is_never_served(static: SimpleNamespace, tmp_path: Path) -> None:
    repo = f"{static.depot.url}/composer-remote"
    url = requests.get(f"{repo}/p2/acme/evil.json", timeout=10).json()["packages"]["acme/evil"][0]["dist"]["url"]
    for _ in range(2):                          # refused (or cut off before its last bytes), never stored
        answer = get(url)
        assert answer.status == 502 or not answer.complete, answer.status
    assert static.upstream.count("/dl/evil.zip") == 2
    app = write_app(tmp_path / "app", repo, {"acme/evil": "1.0.0"})
    failed = composer(composer_env(tmp_path), app, "install", check=False)
    assert failed.returncode != 0 and not (app / "vendor" / "acme" / "evil" / "src").exists()


def test_dist_hosts_outside_the_allowlist_are_refused(static: SimpleNamespace) -> None:
    closed = requests.get(f"{static.depot.url}/composer-remote/p2/acme/far.json", timeout=10).json()
    refused = requests.get(closed["packages"]["acme/far"][0]["dist"]["url"], timeout=10)
    assert refused.status_code == 403 and "dist_hosts" in refused.json()["message"]
    assert static.upstream.count("/dl/far.zip") == 0
    assert requests.get(f"{static.depot.url}/composer-remote/dists/acme/far/1.0.0/other.zip",
                        timeout=10).status_code == 404
    opened = requests.get(f"{static.depot.url}/composer-open/p2/acme/far.json", timeout=10).json()
    allowed = requests.get(opened["packages"]["acme/far"][0]["dist"]["url"], timeout=10)
    assert allowed.status_code == 200 and allowed.content == static.far
    assert static.upstream.count("/dl/far.zip") == 1


def test_group_merges_p2_documents_first_member_wins(static: SimpleNamespace, depot_factory: Any,
                                                     tmp_path: Path) -> None:
    depot = depot_factory({"composer-remote": {"format": "composer", "type": "proxy", "upstream": static.upstream.url},
                           **REPOS, "composer": {**REPOS["composer"], "members": ["composer-local", "composer-remote"]}},
                          name="grouped")
    group = f"{depot.url}/composer"
    mine = package_zip("acme/big", message=" hosted")
    assert upload(group, "acme/big", "1.0.0", mine).status_code == 201
    assert upload(group, "acme/big", "2.0.0", mine).status_code == 201
    merged = requests.get(f"{group}/p2/acme/big.json", timeout=10)
    versions = merged.json()["packages"]["acme/big"]
    assert [v["version"] for v in versions] == ["2.0.0", "1.0.0", "0.9.0"]
    assert versions[1]["dist"]["shasum"] == hashlib.sha1(mine).hexdigest()
    assert all(v["dist"]["url"].startswith(f"{group}/dists/") for v in versions)
    assert merged.headers["X-Cache"] == "MISS"
    assert "available-packages" not in requests.get(f"{group}/packages.json", timeout=10).json()
    app = write_app(tmp_path / "app", group, {"acme/big": "1.0.0"})
    composer(composer_env(tmp_path), app, "install")
    assert run_php(app, "\\Acme\\Big\\Hello::hi()") == "acme/big hosted"


# ------------------------------------------------------------------------------------ access

def test_anonymous_upload_gets_401_and_a_read_token_cannot_upload(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS, secure=True)
    data = package_zip("acme/leaf")
    anonymous = upload(f"{depot.url}/composer", "acme/leaf", "1.0.0", data)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert anonymous.json()["status"] == "error"
    reader = make_token(depot, "--repo", "composer-local", "--perm", "read")
    denied = upload(f"{depot.url}/composer-local", "acme/leaf", "1.0.0", data, auth=("reader", reader))
    assert denied.status_code == 403 and denied.json()["status"] == "error"
    assert requests.get(f"{depot.url}/composer-local/p2/acme/leaf.json", auth=("reader", reader),
                        timeout=10).status_code == 404
    writer = make_token(depot, "--repo", "composer-local", "--perm", "write")
    assert upload(f"{depot.url}/composer-local", "acme/leaf", "1.0.0", data, auth=("writer", writer)).status_code == 201

    # composer reads the private repository with http-basic credentials from auth.json
    cenv = composer_env(tmp_path)
    Path(cenv["COMPOSER_HOME"]).mkdir(parents=True, exist_ok=True)
    Path(cenv["COMPOSER_HOME"], "auth.json").write_text(json.dumps(
        {"http-basic": {f"127.0.0.1:{depot.port}": {"username": "reader", "password": reader}}}))
    app = write_app(tmp_path / "app", f"{depot.url}/composer-local", {"acme/leaf": "^1.0"})
    composer(cenv, app, "install")
    assert run_php(app, "\\Acme\\Leaf\\Hello::hi()") == "acme/leaf"


def test_policy_hides_versions_from_p2_and_refuses_their_dists(static: SimpleNamespace, depot_factory: Any) -> None:
    depot = depot_factory({"composer-remote": {"format": "composer", "type": "proxy", "upstream": static.upstream.url}},
                          extra={"policy": {"deny": ["acme/big@<1"]}}, name="policy")
    repo = f"{depot.url}/composer-remote"
    versions = requests.get(f"{repo}/p2/acme/big.json", timeout=10).json()["packages"]["acme/big"]
    assert [v["version"] for v in versions] == ["1.0.0"]
    refused = requests.get(f"{repo}/dists/acme/big/0.9.0/abc123090.zip", timeout=10)
    assert refused.status_code == 403 and "acme/big@<1" in refused.json()["message"]
    assert static.upstream.count("/dl/big-0.9.0.zip") == 0


# -------------------------------------------------------------------------------------- units

@pytest.mark.parametrize("version, normalized", [("1.0.0", "1.0.0.0"), ("v1.2", "1.2.0.0"), ("1.0.0-beta2", "1.0.0.0-beta2"),
                                                 ("1.0.0-RC1", "1.0.0.0-RC1"), ("2.0-alpha.3", "2.0.0.0-alpha3"),
                                                 ("1.0.0-p1", "1.0.0.0-patch1"), ("dev-main", "dev-main"),
                                                 ("1.2.3.4", "1.2.3.4"), ("1.0.0-stable", "1.0.0.0")])
def test_versions_are_normalized_like_composer(version: str, normalized: str) -> None:
    from depot.registry import composer_meta as cm
    assert cm.normalize(version) == normalized


@pytest.mark.parametrize("version", ["1.0.0-banana", "latest", "1..0", "", "dev-", "1.0.0 ; rm"])
def test_invalid_versions_are_refused(version: str) -> None:
    from depot.registry import composer_meta as cm
    with pytest.raises(cm.ComposerError):
        cm.normalize(version)


def test_embedded_default_composer_proxy_allows_only_github_dist_hosts() -> None:
    from depot.proxy import config
    repos = config.load(None, env={}).repositories
    assert repos["composer-remote"].upstream == "https://repo.packagist.org"
    assert repos["composer-remote"].options["dist_hosts"] == ("api.github.com", "codeload.github.com")


def test_branch_versions_with_a_slash_are_proxied(static: SimpleNamespace) -> None:
    data = package_zip("acme/big", message=" branch")
    up = static.upstream
    up.put("p2/acme/big~dev.json", minified("acme/big", [{
        "name": "acme/big", "version": "dev-feature/x", "version_normalized": "dev-feature/x",
        "dist": {"type": "zip", "url": f"{up.url}/dl/big-dev.zip", "reference": "f00d",
                 "shasum": hashlib.sha1(data).hexdigest()}}]))
    up.put("dl/big-dev.zip", data)
    repo = f"{static.depot.url}/composer-remote"
    entry = requests.get(f"{repo}/p2/acme/big~dev.json", timeout=10).json()["packages"]["acme/big"][0]
    assert entry["dist"]["url"] == f"{repo}/dists/acme/big/dev-feature~x/f00d.zip"
    answer = requests.get(entry["dist"]["url"], timeout=10)
    assert answer.status_code == 200 and answer.content == data
