"""Go modules with the real go command against real depot processes (GOPROXY protocol).

Upstreams are local: a static GOPROXY tree served by tests/upstream.py (counting requests), and
a real checksum database built from golang.org/x/mod/sumdb (tests/go_sumdb/main.go).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from go_fixtures import (build_sumdb, clean_modcache, consumer, escape, go_env, library, module_zip,  # noqa: E402
                         run_go, start_sumdb, write_module)
from http_util import get_many  # noqa: E402

DEP = "example.org/dep"
LIB = "example.org/Lib"            # upper case: exercises the !l case encoding
HELLO = "example.com/hello"


def upstream_tree(root: Path) -> None:
    """example.org/Lib v1.1.0 depends on example.org/dep v1.0.0 (both only upstream)."""
    write_module(root, DEP, "v1.0.0", library(DEP, "v1.0.0", "dep-one"))
    write_module(root, DEP, "v0.9.0", library(DEP, "v0.9.0", "dep-old"))
    write_module(root, LIB, "v1.1.0", library(LIB, "v1.1.0", "lib", {DEP: "v1.0.0"}, calls=DEP))


@pytest.fixture
def env(depot_factory: Any, upstream: Any, tmp_path: Path) -> SimpleNamespace:
    upstream_tree(upstream.root)
    depot = depot_factory({
        "go-local": {"format": "go", "type": "hosted"},
        "go-remote": {"format": "go", "type": "proxy", "upstream": upstream.url},
        "go": {"format": "go", "type": "group", "members": ["go-local", "go-remote"], "deploy_to": "go-local"},
    })
    return SimpleNamespace(depot=depot, upstream=upstream, tmp=tmp_path)


def publish(url: str, module: str, version: str, data: bytes, **kw: Any) -> requests.Response:
    return requests.put(f"{url}/{escape(module)}/@v/{escape(version)}.zip", data=data, timeout=30, **kw)


def test_publish_then_go_get_and_build_through_group(env: SimpleNamespace) -> None:
    files = library(HELLO, "v1.0.0", "hello", {LIB: "v1.1.0"}, calls=LIB)
    answer = publish(f"{env.depot.url}/go", HELLO, "v1.0.0", module_zip(HELLO, "v1.0.0", files))
    assert answer.status_code == 201, answer.text
    listing = requests.get(f"{env.depot.url}/go/{HELLO}/@v/list", timeout=10)
    assert listing.text == "v1.0.0\n"
    mod = requests.get(f"{env.depot.url}/go-local/{HELLO}/@v/v1.0.0.mod", timeout=10).text
    assert mod == files["go.mod"]
    info = requests.get(f"{env.depot.url}/go/{HELLO}/@latest", timeout=10).json()
    assert info["Version"] == "v1.0.0" and info["Time"].endswith("Z")

    work = consumer(env.tmp, "app", {}, [HELLO])
    goenv = go_env(env.tmp, f"{env.depot.url}/go")
    run_go(goenv, work, "get", f"{HELLO}@v1.0.0")
    run_go(goenv, work, "build", "-o", "app", ".")
    assert subprocess.run([str(work / "app")], capture_output=True, text=True).stdout == "hello lib dep-one\n"
    sums = (work / "go.sum").read_text()
    assert f"{HELLO} v1.0.0 h1:" in sums and f"{LIB} v1.1.0 h1:" in sums


def test_group_merges_list_and_first_member_wins(env: SimpleNamespace) -> None:
    # the hosted member also has example.org/dep, in another version and in one the proxy has
    local = library(DEP, "v1.2.0", "dep-local")
    assert publish(f"{env.depot.url}/go-local", DEP, "v1.2.0", module_zip(DEP, "v1.2.0", local)).status_code == 201
    shadow = library(DEP, "v1.0.0", "dep-shadow")
    assert publish(f"{env.depot.url}/go-local", DEP, "v1.0.0", module_zip(DEP, "v1.0.0", shadow)).status_code == 201
    listing = requests.get(f"{env.depot.url}/go/{DEP}/@v/list", timeout=10)
    assert listing.text == "v0.9.0\nv1.0.0\nv1.2.0\n" and listing.headers["X-Cache"] == "MISS"
    latest = requests.get(f"{env.depot.url}/go/{DEP}/@latest", timeout=10).json()
    assert latest["Version"] == "v1.2.0"
    mod = requests.get(f"{env.depot.url}/go/{DEP}/@v/v1.0.0.zip", timeout=10)
    names = zipfile.ZipFile(io.BytesIO(mod.content)).read(f"{DEP}@v1.0.0/dep.go").decode()
    assert "dep-shadow" in names                  # the first member (hosted) wins for a version


def test_proxy_download_with_dependencies_then_hits_then_upstream_down(env: SimpleNamespace) -> None:
    work = consumer(env.tmp, "app", {LIB: "v1.1.0"}, [LIB])
    goenv = go_env(env.tmp, f"{env.depot.url}/go-remote")
    run_go(goenv, work, "mod", "download", "-json", LIB, DEP)
    run_go(goenv, work, "build", "-o", "app", ".")
    assert subprocess.run([str(work / "app")], capture_output=True, text=True).stdout == "lib dep-one\n"
    first = env.upstream.counts()
    assert first.get(f"GET /{escape(LIB)}/@v/v1.1.0.zip") == 1 and first.get(f"GET /{DEP}/@v/v1.0.0.zip") == 1

    clean_modcache(goenv, work)                   # second run from a clean module cache: all HITs
    env.upstream.reset()
    out = run_go(goenv, work, "mod", "download", "-json", LIB, DEP).stdout
    assert '"Error"' not in out
    assert env.upstream.counts() == {}
    for path in (f"{escape(LIB)}/@v/v1.1.0.zip", f"{DEP}/@v/v1.0.0.mod", f"{DEP}/@v/v1.0.0.info"):
        assert requests.get(f"{env.depot.url}/go-remote/{path}", timeout=10).headers["X-Cache"] == "HIT"

    env.upstream.stop()                           # upstream gone: the cached modules still build
    clean_modcache(goenv, work)
    run_go(goenv, work, "build", "-o", "app2", ".")
    assert subprocess.run([str(work / "app2")], capture_output=True, text=True).stdout == "lib dep-one\n"


def test_twenty_concurrent_clients_one_upstream_get(env: SimpleNamespace) -> None:
    big = library(DEP, "v1.3.0", "big")
    big["blob.txt"] = "x" * 3_000_000
    write_module(env.upstream.root, DEP, "v1.3.0", big)
    env.upstream.mode(f"/{DEP}/@v/v1.3.0.zip", "slow", rate=4_000_000)
    answers = get_many(f"{env.depot.url}/go-remote/{DEP}/@v/v1.3.0.zip", 20)
    expected = (env.upstream.root / DEP / "@v" / "v1.3.0.zip").read_bytes()
    assert all(a.status == 200 and a.body == expected for a in answers)
    assert env.upstream.count(f"/{DEP}/@v/v1.3.0.zip") == 1


@pytest.mark.parametrize("case", ["outside", "dotdot", "duplicate", "case-collision", "wrong-module",
                                  "not-a-zip", "bad-version", "major-suffix"])
def test_bad_module_zips_are_refused_and_nothing_stored(env: SimpleNamespace, case: str) -> None:
    module, version = "example.com/bad", "v1.0.0"
    prefix = f"{module}@{version}/"
    entries = {"outside": [("evil/x.go", "package x"), (prefix + "go.mod", f"module {module}\n")],
               "dotdot": [(prefix + "../x.go", "package x")],
               "duplicate": [(prefix + "a.go", "package a"), (prefix + "a.go", "package a")],
               "case-collision": [(prefix + "A.go", "package a"), (prefix + "a.go", "package a")],
               "wrong-module": [(prefix + "go.mod", "module example.com/other\n")],
               "bad-version": [(prefix + "a.go", "package a")],
               "major-suffix": [(prefix + "a.go", "package a")]}.get(case, [])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in entries:
            archive.writestr(name, text)
    data = b"not a zip at all" if case == "not-a-zip" else buf.getvalue()
    version = {"bad-version": "1.0", "major-suffix": "v2.0.0"}.get(case, version)
    answer = publish(f"{env.depot.url}/go-local", module, version, data)
    assert answer.status_code == 400, answer.text
    assert answer.text.strip()
    assert requests.get(f"{env.depot.url}/go-local/{module}/@v/list", timeout=10).status_code == 404
    assert requests.get(f"{env.depot.url}/go-local/{module}/@v/{version}.zip", timeout=10).status_code in (400, 404)


def test_versions_are_immutable(env: SimpleNamespace) -> None:
    one = module_zip(HELLO, "v1.0.0", library(HELLO, "v1.0.0", "one"))
    assert publish(f"{env.depot.url}/go-local", HELLO, "v1.0.0", one).status_code == 201
    assert publish(f"{env.depot.url}/go-local", HELLO, "v1.0.0", one).status_code == 200     # same bytes: fine
    other = module_zip(HELLO, "v1.0.0", library(HELLO, "v1.0.0", "two"))
    assert publish(f"{env.depot.url}/go-local", HELLO, "v1.0.0", other).status_code == 409
    assert requests.get(f"{env.depot.url}/go-local/{HELLO}/@v/v1.0.0.zip", timeout=10).content == one
    assert requests.delete(f"{env.depot.url}/go-local/{HELLO}/@v/v1.0.0.zip", timeout=10).status_code == 204
    assert requests.get(f"{env.depot.url}/go-local/{HELLO}/@v/list", timeout=10).status_code == 404
    assert publish(f"{env.depot.url}/go-local", HELLO, "v1.0.0", other).status_code == 409   # tombstone


# ----------------------------------------------------------------------------- checksum database

def test_go_verifies_through_a_checksum_database_proxied_by_depot(depot_factory: Any, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    upstream_tree(tree)
    tampered = "example.org/tampered"
    write_module(tree, tampered, "v1.0.0", library(tampered, "v1.0.0", "original"))
    sumdb = start_sumdb(build_sumdb(tmp_path), tree)
    try:
        # after the database hashed it, the upstream starts serving other bytes for this version
        write_module(tree, tampered, "v1.0.0", library(tampered, "v1.0.0", "evil"))
        depot = depot_factory({"go-remote": {"format": "go", "type": "proxy", "upstream": sumdb.url}})
        proxy = f"{depot.url}/go-remote"
        supported = requests.get(f"{proxy}/sumdb/{sumdb.name}/supported", timeout=10)
        assert supported.status_code == 200
        # GOSUMDB names the database and its key only: go reaches it through $GOPROXY/sumdb/<name>/
        goenv = go_env(tmp_path, proxy, sumdb=sumdb.vkey)
        work = consumer(tmp_path, "app", {}, [LIB])
        run_go(goenv, work, "get", f"{LIB}@v1.1.0")
        sums = (work / "go.sum").read_text()
        assert f"{LIB} v1.1.0 h1:" in sums and f"{DEP} v1.0.0/go.mod h1:" in sums
        lookup = requests.get(f"{proxy}/sumdb/{sumdb.name}/lookup/{escape(LIB)}@v1.1.0", timeout=10)
        assert lookup.headers["X-Cache"] == "HIT" and sums.split(f"{LIB} v1.1.0 ")[1].split()[0] in lookup.text
        tile = requests.get(f"{proxy}/sumdb/{sumdb.name}/tile/8/0/000.p/1", timeout=10)
        assert tile.status_code == 200

        bad = consumer(tmp_path, "bad", {}, [tampered])
        refused = run_go(goenv, bad, "get", f"{tampered}@v1.0.0", check=False)
        assert refused.returncode != 0 and "SECURITY ERROR" in refused.stderr, refused.stderr
    finally:
        sumdb.stop()

    # the database is gone: what depot has cached still verifies a fresh module cache
    clean_modcache(goenv, work)
    (work / "go.sum").unlink()
    run_go(goenv, work, "mod", "download", LIB)


# ------------------------------------------------------------------------------------- access

def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def test_anonymous_publish_is_challenged_and_a_read_token_cannot_publish(depot_factory: Any,
                                                                           tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    depot = depot_factory({"go-local": {"format": "go", "type": "hosted"}}, secure=True,
                          extra={"tls": {"cert": str(cert), "key": str(key)}})
    data = module_zip(HELLO, "v1.0.0", library(HELLO, "v1.0.0", "hello"))
    anonymous = publish(f"{depot.url}/go-local", HELLO, "v1.0.0", data, verify=str(cert))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    reader = make_token(depot, "--repo", "go-local", "--perm", "read")
    assert publish(f"{depot.url}/go-local", HELLO, "v1.0.0", data, auth=("ci", reader),
                   verify=str(cert)).status_code == 403
    writer = make_token(depot, "--repo", "go-local", "--perm", "write")
    assert publish(f"{depot.url}/go-local", HELLO, "v1.0.0", data, auth=("ci", writer),
                   verify=str(cert)).status_code == 201
    # the go command reads the hosted repository with the read token from a .netrc (go sends
    # credentials over https only)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login ci password {reader}\n")
    goenv = go_env(tmp_path, f"{depot.url}/go-local", extra={"NETRC": str(netrc), "SSL_CERT_FILE": str(cert)})
    work = consumer(tmp_path, "app", {}, [HELLO])
    run_go(goenv, work, "get", f"{HELLO}@v1.0.0")
    assert json.loads(run_go(goenv, work, "list", "-m", "-json", HELLO).stdout)["Version"] == "v1.0.0"


def test_warm_from_go_sum_then_build_with_the_upstream_down(env: SimpleNamespace, depot_factory: Any) -> None:
    work = consumer(env.tmp, "app", {LIB: "v1.1.0"}, [LIB])
    run_go(go_env(env.tmp, f"{env.depot.url}/go-remote"), work, "build", "-o", "app", ".")
    cold = depot_factory({"go-remote": {"format": "go", "type": "proxy", "upstream": env.upstream.url}}, name="cold")
    warmed = cold.run_cli("warm", "go-remote", str(work / "go.sum"), "--url", cold.url, check=False)
    assert warmed.returncode == 0 and "6 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    env.upstream.stop()
    goenv = go_env(env.tmp / "second", f"{cold.url}/go-remote")
    run_go(goenv, work, "build", "-o", "app2", ".")
    assert subprocess.run([str(work / "app2")], capture_output=True, text=True).stdout == "lib dep-one\n"
