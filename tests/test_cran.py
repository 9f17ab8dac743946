"""CRAN with the real R (R CMD build, install.packages) against real depot processes.

Upstreams are a second depot (hosted, filled by uploads of R-built tarballs) or a static
CRAN tree served by tests/upstream.py, counting requests; never the internet.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from admin_helpers import cli_json, eventually  # noqa: E402
from http_util import get  # noqa: E402
from proxy_chain import assert_one_upstream_get  # noqa: E402

REPOS = {
    "cran-local": {"format": "cran", "type": "hosted"},
    "cran": {"format": "cran", "type": "group", "members": ["cran-local"], "deploy_to": "cran-local"},
}


def r_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R_")}
    env.update(HOME=str(tmp), R_LIBS_USER=str(tmp / "none"), R_PROFILE_USER="/dev/null", R_ENVIRON_USER="/dev/null")
    return env


def build(tmp: Path, name: str, version: str, text: str = "hello", imports: str | None = None) -> Path:
    """R CMD build of a tiny package; returns the tarball."""
    src = tmp / f"src-{name}-{version}" / name
    (src / "R").mkdir(parents=True)
    (src / "DESCRIPTION").write_text(
        f"Package: {name}\nVersion: {version}\nTitle: Tiny\nDescription: A tiny test package.\n"
        f"Authors@R: person('A', 'B', email = 'a@b.c', role = c('aut', 'cre'))\nLicense: MIT + file LICENSE\n"
        + (f"Imports: {imports}\n" if imports else "") + "Encoding: UTF-8\n")
    (src / "LICENSE").write_text("YEAR: 2026\nCOPYRIGHT HOLDER: test\n")
    (src / "NAMESPACE").write_text(f"export(hello_{name})\n")
    (src / "R" / "hello.R").write_text(f'hello_{name} <- function() "{text} {version}"\n')
    out = src.parent
    subprocess.run(["R", "CMD", "build", "--no-build-vignettes", "--no-manual", name], cwd=out, check=True,
                   capture_output=True, timeout=120, env=r_env(tmp))
    return out / f"{name}_{version}.tar.gz"


def rscript(tmp: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=300, env=r_env(tmp))


def install(tmp: Path, repos: str, name: str, lib: str = "rlib") -> str:
    """install.packages from `repos` into a private library; the installed function's answer."""
    (tmp / lib).mkdir(exist_ok=True)
    done = rscript(tmp, f'install.packages("{name}", repos="{repos}", lib="{tmp / lib}", type="source"); '
                        f'library({name}, lib.loc="{tmp / lib}"); cat(hello_{name}())')
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def put(url: str, path: Path | bytes, auth: Any = None) -> requests.Response:
    data = path if isinstance(path, bytes) else path.read_bytes()
    return requests.put(url, data=data, auth=auth, timeout=30)


def upstream_requests(depot: Any) -> float:
    """depot_upstream_requests_total of a depot, all repositories and statuses."""
    text = requests.get(f"{depot.url}/-/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("depot_upstream_requests_total"))


# ------------------------------------------------------------------------------------- hosted

def test_build_upload_install_and_version_two_archives_version_one(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS)
    v1 = build(tmp_path, "ccrtiny", "0.1.0")
    assert put(f"{depot.url}/cran/src/contrib/{v1.name}", v1).status_code == 201
    packages = requests.get(f"{depot.url}/cran/src/contrib/PACKAGES", timeout=10).text
    assert "Package: ccrtiny\nVersion: 0.1.0" in packages and "MD5sum: " in packages
    assert gzip.decompress(requests.get(f"{depot.url}/cran/src/contrib/PACKAGES.gz", timeout=10).content).decode() \
        == packages
    assert requests.get(f"{depot.url}/cran/src/contrib/PACKAGES.rds", timeout=10).status_code == 404
    assert install(tmp_path, f"{depot.url}/cran", "ccrtiny", "lib1") == "hello 0.1.0"

    v2 = build(tmp_path, "ccrtiny", "0.2.0", text="hi")
    assert put(f"{depot.url}/cran/src/contrib/{v2.name}", v2).status_code == 201
    packages = requests.get(f"{depot.url}/cran/src/contrib/PACKAGES", timeout=10).text
    assert "Version: 0.2.0" in packages and "0.1.0" not in packages
    assert requests.get(f"{depot.url}/cran/src/contrib/{v1.name}", timeout=10).status_code == 404
    archived = requests.get(f"{depot.url}/cran/src/contrib/Archive/ccrtiny/{v1.name}", timeout=10)
    assert archived.status_code == 200 and archived.content == v1.read_bytes()
    assert install(tmp_path, f"{depot.url}/cran", "ccrtiny", "lib2") == "hi 0.2.0"
    # the archived version stays installable from its Archive URL
    (tmp_path / "lib3").mkdir()
    done = rscript(tmp_path, f'install.packages("{depot.url}/cran/src/contrib/Archive/ccrtiny/{v1.name}", '
                             f'repos=NULL, type="source", lib="{tmp_path / "lib3"}"); '
                             f'library(ccrtiny, lib.loc="{tmp_path / "lib3"}"); cat(hello_ccrtiny())')
    assert done.stdout.strip().endswith("hello 0.1.0"), done.stdout + done.stderr
    # uploading v1 again (same bytes) is a no-op; other bytes for a published version: 409
    assert put(f"{depot.url}/cran/src/contrib/{v1.name}", v1).status_code == 200
    assert put(f"{depot.url}/cran/src/contrib/{v1.name}", build(tmp_path / "x", "ccrtiny", "0.1.0", text="evil")
               ).status_code == 409
    assert requests.get(f"{depot.url}/cran/src/contrib/{v1.name}", timeout=10).status_code == 404


@pytest.mark.parametrize("case", ["garbage", "name-mismatch", "no-description", "bad-path"])
def test_bad_archives_are_refused_and_store_nothing(depot_factory: Any, tmp_path: Path, case: str) -> None:
    depot = depot_factory(REPOS)
    path = "src/contrib/ccrbad_1.0.tar.gz"
    if case == "garbage":
        data = b"\x1f\x8b not really gzip"
    elif case == "name-mismatch":
        data = build(tmp_path, "ccrother", "1.0").read_bytes()
    elif case == "no-description":
        import io
        import tarfile
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            info = tarfile.TarInfo("ccrbad/README")
            tar.addfile(info, io.BytesIO(b""))
        data = out.getvalue()
    else:
        data, path = build(tmp_path, "ccrbad", "1.0").read_bytes(), "src/contrib/PACKAGES"
    answer = put(f"{depot.url}/cran/{path}", data)
    assert answer.status_code == 400 and answer.text.strip(), answer.text
    assert requests.get(f"{depot.url}/cran-local/src/contrib/PACKAGES", timeout=10).text == ""
    assert requests.get(f"{depot.url}/cran-local/src/contrib/ccrbad_1.0.tar.gz", timeout=10).status_code == 404


def test_anonymous_upload_401_and_read_token_403(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS, secure=True)
    tarball = build(tmp_path, "ccrsec", "1.0")
    url = f"{depot.url}/cran/src/contrib/{tarball.name}"
    anonymous = put(url, tarball)
    assert anonymous.status_code == 401 and anonymous.headers.get("WWW-Authenticate", "").startswith("Basic")
    reader = depot.run_cli("token", "create", "--repo", "cran-local", "--perm", "read").stdout.strip().splitlines()[-1]
    assert put(url, tarball, auth=("u", reader)).status_code == 403
    writer = depot.run_cli("token", "create", "--repo", "cran-local", "--perm", "write").stdout.strip().splitlines()[-1]
    assert put(url, tarball, auth=("u", writer)).status_code == 201


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_group_merge_then_upstream_stopped(depot_factory: Any,
                                                                            tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    leaf = build(tmp_path, "ccrleaf", "1.0")
    assert put(f"{upstream.url}/cran/src/contrib/{leaf.name}", leaf).status_code == 201
    depot = depot_factory({
        "cran-remote": {"format": "cran", "type": "proxy", "upstream": f"{upstream.url}/cran-local"},
        "cran-local": {"format": "cran", "type": "hosted"},
        "cran": {"format": "cran", "type": "group", "members": ["cran-local", "cran-remote"],
                 "deploy_to": "cran-local"}}, name="proxy")
    app = build(tmp_path, "ccrapp", "2.0", imports="ccrleaf")
    assert put(f"{depot.url}/cran/src/contrib/{app.name}", app).status_code == 201
    merged = requests.get(f"{depot.url}/cran/src/contrib/PACKAGES", timeout=10).text
    assert "Package: ccrapp" in merged and "Package: ccrleaf" in merged
    assert install(tmp_path, f"{depot.url}/cran", "ccrapp", "lib1") == "hello 2.0"
    for path in ("src/contrib/PACKAGES", f"src/contrib/{leaf.name}"):
        assert requests.get(f"{depot.url}/cran-remote/{path}", timeout=10).headers["X-Cache"] == "HIT"
    assert requests.get(f"{depot.url}/cran/src/contrib/PACKAGES.gz", timeout=10).headers["X-Cache"] == "HIT"
    asked = upstream_requests(depot)
    assert install(tmp_path, f"{depot.url}/cran", "ccrapp", "lib2") == "hello 2.0"
    assert upstream_requests(depot) == asked > 0          # the second install: all from the cache
    upstream.stop()
    assert install(tmp_path, f"{depot.url}/cran", "ccrapp", "lib3") == "hello 2.0"


@pytest.fixture
def static(depot_factory: Any, upstream: Any, tmp_path: Path) -> SimpleNamespace:
    contrib = upstream.root / "src/contrib"
    contrib.mkdir(parents=True)
    big = build(tmp_path, "ccrbig", "1.0", text="x" * 100)
    (big.parent / "ccrbig" / "data.txt").write_text("y" * 10)
    evil = build(tmp_path, "ccrevil", "1.0")
    for tarball in (big, evil):
        (contrib / tarball.name).write_bytes(tarball.read_bytes())
    done = rscript(tmp_path, f'tools::write_PACKAGES("{contrib}", type="source")')
    assert done.returncode == 0, done.stderr
    # the upstream now serves other bytes than its PACKAGES' MD5sum promises
    (contrib / evil.name).write_bytes(build(tmp_path / "t", "ccrevil", "1.0", text="tampered").read_bytes())
    (contrib / "PACKAGES.rds").unlink(missing_ok=True)
    depot = depot_factory({"cran-remote": {"format": "cran", "type": "proxy", "upstream": upstream.url}})
    return SimpleNamespace(depot=depot, upstream=upstream, big=big, evil=evil)


def test_twenty_concurrent_clients_one_upstream_get(static: SimpleNamespace) -> None:
    path = f"/src/contrib/{static.big.name}"
    static.upstream.mode(path, "slow", rate=20_000)
    assert_one_upstream_get(f"{static.depot.url}/cran-remote{path}", static.big.read_bytes(),
                            lambda: static.upstream.count(path))


def test_tarball_not_matching_the_packages_md5_is_never_served(static: SimpleNamespace, tmp_path: Path) -> None:
    url = f"{static.depot.url}/cran-remote/src/contrib/{static.evil.name}"
    for _ in range(2):
        answer = get(url)
        assert answer.status == 502 or not answer.complete, answer.status
    assert static.upstream.count(f"/src/contrib/{static.evil.name}") == 2
    (tmp_path / "lib").mkdir()
    done = rscript(tmp_path, f'install.packages("ccrevil", repos="{static.depot.url}/cran-remote", '
                             f'lib="{tmp_path / "lib"}", type="source")')
    assert not (tmp_path / "lib/ccrevil").exists(), done.stdout + done.stderr


def test_warm_from_renv_lock_then_installs_with_the_upstream_stopped(static: SimpleNamespace, tmp_path: Path) -> None:
    lock = tmp_path / "renv.lock"
    lock.write_text(json.dumps({"R": {"Version": "4.2.2"}, "Packages": {
        "ccrbig": {"Package": "ccrbig", "Version": "1.0", "Source": "Repository", "Repository": "CRAN"},
        "local": {"Package": "local", "Version": "0.1", "Source": "Local"}}}))
    warmed = static.depot.run_cli("warm", "cran-remote", str(lock), "--url", static.depot.url, check=False)
    assert warmed.returncode == 0 and "2 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    static.upstream.stop()
    (tmp_path / "lib").mkdir()
    done = rscript(tmp_path, f'install.packages("ccrbig", repos="{static.depot.url}/cran-remote", '
                             f'lib="{tmp_path / "lib"}", type="source")')
    assert (tmp_path / "lib/ccrbig/DESCRIPTION").exists(), done.stdout + done.stderr


def binary_zip(name: str, version: str, built: bool = True) -> bytes:
    """A Windows binary package as R CMD INSTALL --build lays it out (DESCRIPTION with Built)."""
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(f"{name}/DESCRIPTION", f"Package: {name}\nVersion: {version}\nLicense: MIT\n"
                         + ("Built: R 4.2.2; ; 2026-12-01 00:00:00 UTC; windows\n" if built else ""))
        archive.writestr(f"{name}/R/{name}", "")
    return out.getvalue()


def test_binary_packages_under_bin_are_listed_and_downloaded_by_r(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS)
    r_version = rscript(tmp_path, 'cat(paste(R.version$major, sub("\\\\..*", "", R.version$minor), sep="."))').stdout
    contrib = f"bin/windows/contrib/{r_version}"
    old, new = binary_zip("ccrwin", "1.0"), binary_zip("ccrwin", "1.1")
    for version, data in (("1.0", old), ("1.1", new)):
        assert put(f"{depot.url}/cran/{contrib}/ccrwin_{version}.zip", data).status_code == 201
    bad = put(f"{depot.url}/cran/{contrib}/ccrsrc_1.0.zip", binary_zip("ccrsrc", "1.0", built=False))
    assert bad.status_code == 400 and "Built" in bad.text
    listed = requests.get(f"{depot.url}/cran/{contrib}/PACKAGES", timeout=10).text
    assert "Package: ccrwin\nVersion: 1.1" in listed and "ccrsrc" not in listed
    (tmp_path / "dl").mkdir()
    done = rscript(tmp_path, f'print(download.packages("ccrwin", destdir="{tmp_path / "dl"}", '
                             f'repos="{depot.url}/cran", type="win.binary"))')
    assert (tmp_path / "dl/ccrwin_1.1.zip").read_bytes() == new, done.stdout + done.stderr


def test_parallel_uploads_of_five_versions_keep_the_highest_current(depot_factory: Any, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    depot = depot_factory(REPOS)
    tarballs = [build(tmp_path, "ccrpar", f"1.{i}") for i in range(5)]
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda t: put(f"{depot.url}/cran/src/contrib/{t.name}", t).status_code, tarballs))
    assert codes == [201] * 5
    listed = requests.get(f"{depot.url}/cran/src/contrib/PACKAGES", timeout=10).text
    assert "Version: 1.4" in listed and listed.count("Package: ccrpar") == 1
    for tarball in tarballs[:4]:
        assert requests.get(f"{depot.url}/cran/src/contrib/Archive/ccrpar/{tarball.name}", timeout=10).content \
            == tarball.read_bytes()
        assert requests.get(f"{depot.url}/cran/src/contrib/{tarball.name}", timeout=10).status_code == 404


def test_policy_hides_denied_packages_from_packages_and_refuses_them(static: SimpleNamespace,
                                                                     depot_factory: Any) -> None:
    depot = depot_factory({"cran-remote": {"format": "cran", "type": "proxy", "upstream": static.upstream.url},
                           "cran-local": {"format": "cran", "type": "hosted"},
                           "cran": {"format": "cran", "type": "group", "members": ["cran-local", "cran-remote"],
                                    "deploy_to": "cran-local"}},
                          name="policy", extra={"policy": {"deny": ["ccrevil"]}})
    for repo in ("cran-remote", "cran"):
        listed = requests.get(f"{depot.url}/{repo}/src/contrib/PACKAGES", timeout=10).text
        assert "Package: ccrbig" in listed and "ccrevil" not in listed
        packed = requests.get(f"{depot.url}/{repo}/src/contrib/PACKAGES.gz", timeout=10)
        assert "ccrevil" not in gzip.decompress(packed.content).decode()
        assert requests.get(f"{depot.url}/{repo}/src/contrib/PACKAGES.rds", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/cran-remote/src/contrib/{static.evil.name}", timeout=10).status_code == 403


@pytest.mark.parametrize("corruption", ["truncated", "other-version"])
def test_archived_tarball_is_checked_before_it_is_cached(static: SimpleNamespace, tmp_path: Path,
                                                         corruption: str) -> None:
    """Archive/ tarballs are listed by no PACKAGES (no MD5sum to check): a corrupt one from the
    upstream is refused (R's install fails), never stored; the good one then installs and is a HIT."""
    good = build(tmp_path, "ccrold", "0.9", text="old")
    bad = (good.read_bytes()[: len(good.read_bytes()) // 2] if corruption == "truncated"
           else build(tmp_path / "other", "ccrold", "0.8").read_bytes())
    path = f"/src/contrib/Archive/ccrold/{good.name}"
    static.upstream.put(path.lstrip("/"), bad)
    url = f"{static.depot.url}/cran-remote{path}"

    def r_install(lib: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / lib).mkdir()
        return rscript(tmp_path, f'install.packages("{url}", repos=NULL, type="source", lib="{tmp_path / lib}"); '
                                 f'library(ccrold, lib.loc="{tmp_path / lib}"); cat(hello_ccrold())')
    refused = r_install("lib1")
    assert refused.returncode != 0 and not (tmp_path / "lib1/ccrold").exists(), refused.stdout + refused.stderr
    answer = get(url)
    assert answer.status == 502 and b"ccrold" in answer.body, (answer.status, answer.body[:200])
    assert static.upstream.count(path) == 2                   # nothing was cached: asked again
    static.upstream.put(path.lstrip("/"), good.read_bytes())
    done = r_install("lib2")
    assert done.stdout.strip().endswith("old 0.9"), done.stdout + done.stderr
    again = get(url)
    assert again.headers["X-Cache"] == "HIT" and again.body == good.read_bytes()
    assert static.upstream.count(path) == 3
    # after a purge (or an eviction) the refetch must bring the very bytes first stored
    static.upstream.put(path.lstrip("/"), build(tmp_path / "changed", "ccrold", "0.9", text="changed").read_bytes())
    assert cli_json(static.depot, "cache", "purge", "cran-remote", "-q", path.lstrip("/"))["entries"] == 1

    def refetched() -> bool:
        answer = get(url)
        assert answer.status != 200 or answer.body == good.read_bytes()
        return answer.status == 502
    assert eventually(refetched), static.upstream.count(path)
