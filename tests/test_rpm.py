"""RPM / dnf end to end: real dnf (private --installroot, repo_gpgcheck on the metadata) against
real depot processes; packages built by rpmbuild; the proxy's upstream is a second depot, or a
static tree (tests/upstream.py) for files that disagree with their index."""
from __future__ import annotations

import gzip
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from defusedxml import ElementTree

from depot_process import DepotProcess
from http_util import get, get_many
from proxy_chain import Chain, assert_one_upstream_get, curl, depot_gets, proxy_chain, upload
from rpm_fixtures import Dnf, build_rpm

ADMIN = "admin:" + DepotProcess.ADMIN_PASSWORD
REPO_NS = "{http://linux.duke.edu/metadata/repo}"
COMMON_NS = "{http://linux.duke.edu/metadata/common}"


def primary_names(base: str) -> list[str]:
    """Names listed by the primary.xml that repomd.xml names, checked against repomd's checksum."""
    repomd = ElementTree.fromstring(get(f"{base}/repodata/repomd.xml").body)
    for data in repomd.iter(f"{REPO_NS}data"):
        if data.get("type") == "primary":
            href = data.find(f"{REPO_NS}location").get("href")
            body = get(f"{base}/{href}").body
            assert hashlib.sha256(body).hexdigest() == data.find(f"{REPO_NS}checksum").text
            root = ElementTree.fromstring(gzip.decompress(body))
            return sorted(p.find(f"{COMMON_NS}name").text for p in root.iter(f"{COMMON_NS}package"))
    raise AssertionError("no primary in repomd.xml")


def access(depot: DepotProcess, since: int, needle: str) -> list[str]:
    return [l for l in depot.log()[since:].splitlines() if "depot.access" in l and needle in l]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("rpm")
    rpms = {name: build_rpm(work / "build", name) for name in ("dpt-hello", "dpt-up")}
    up = DepotProcess(work / "up", {"origin": {"format": "rpm", "type": "hosted"}})
    assert upload(f"{up.url}/origin/Packages/{rpms['dpt-up'].name}", rpms["dpt-up"]) == 201
    depot = DepotProcess(work / "depot", {
        "rpm-local": {"format": "rpm", "type": "hosted", "anonymous_read": True},
        "rpm-remote": {"format": "rpm", "type": "proxy", "upstream": up.url + "/origin/", "anonymous_read": True},
        "rpms": {"format": "rpm", "type": "group", "members": ["rpm-local", "rpm-remote"],
                 "deploy_to": "rpm-local", "anonymous_read": True},
    }, secure=True)
    yield SimpleNamespace(work=work, rpms=rpms, up=up, depot=depot)
    depot.stop()
    up.stop()


def test_upload_then_dnf_install_through_the_group_with_signed_metadata(env: SimpleNamespace,
                                                                        tmp_path: Path) -> None:
    hello = env.rpms["dpt-hello"]
    assert upload(f"{env.depot.url}/rpms/Packages/{hello.name}", hello, "-u", ADMIN) == 201   # deploy_to
    base = f"{env.depot.url}/rpms"
    dnf = Dnf(tmp_path / "dnf", base + "/", gpgkey=f"{base}/key.asc")
    dnf.install("dpt-hello", "dpt-up")
    assert dnf.installed("dpt-hello") == b"dpt-hello 1.0\n" and dnf.installed("dpt-up") == b"dpt-up 1.0\n"
    assert primary_names(f"{env.depot.url}/rpm-local") == ["dpt-hello"]
    assert get(f"{base}/repodata/repomd.xml").headers["X-Cache"] == "HIT"             # rendered once


def test_tampered_repomd_is_refused_by_dnf(env: SimpleNamespace, upstream: Any, tmp_path: Path) -> None:
    hello = env.rpms["dpt-hello"]
    assert upload(f"{env.depot.url}/rpm-local/Packages/{hello.name}", hello, "-u", ADMIN) in (200, 201)
    base = f"{env.depot.url}/rpm-local"
    repomd = get(f"{base}/repodata/repomd.xml").body
    for data in ElementTree.fromstring(repomd).iter(f"{REPO_NS}data"):
        href = data.find(f"{REPO_NS}location").get("href")
        upstream.put(href, get(f"{base}/{href}").body)
    upstream.put("repodata/repomd.xml", repomd.replace(b"<revision>", b"<revision>1"))
    upstream.put("repodata/repomd.xml.asc", get(f"{base}/repodata/repomd.xml.asc").body)
    upstream.put(f"Packages/{hello.name}", hello.read_bytes())
    key = tmp_path / "key.asc"
    key.write_bytes(get(f"{base}/key.asc").body)
    out = Dnf(tmp_path / "dnf", upstream.url + "/", gpgkey=f"file://{key}").run("install", "dpt-hello", check=False)
    assert out.returncode != 0 and "GPG" in out.stdout + out.stderr, out.stdout + out.stderr


def test_anonymous_401_read_token_403_bad_rpm_400(env: SimpleNamespace, tmp_path: Path) -> None:
    hello = env.rpms["dpt-hello"]
    url = f"{env.depot.url}/rpm-local/Packages/other-1.0-1.noarch.rpm"
    headers = curl("-D", "-", "-o", "/dev/null", "-T", str(hello), url).stdout.decode().lower()
    assert "http/1.1 401" in headers and "www-authenticate: basic" in headers
    token = env.depot.run_cli("token", "create", "--repo", "rpm-local", "--perm", "read").stdout.split()[-1]
    assert upload(url, hello, "-u", f"reader:{token}") == 403
    before = get(f"{env.depot.url}/rpm-local/repodata/repomd.xml").body
    bad = tmp_path / "broken-1.0-1.noarch.rpm"
    bad.write_bytes(b"\xed\xab\xee\xdb" + b"\x00" * 200)
    for body in (bad, env.work / "build" / "nothing.rpm"):
        if not body.exists():
            body.write_bytes(b"plain text, not an rpm\n")
        out = curl("-w", "\n%{http_code}", "-T", str(body), "-u", ADMIN, url).stdout.decode()
        assert out.endswith("400") and "RPM" in out, out
    assert get(url).status == 404
    assert get(f"{env.depot.url}/rpm-local/repodata/repomd.xml").body == before
    assert get(f"{env.depot.url}/rpm-local/.depot/signing-key.asc").status == 404


def test_twenty_parallel_uploads_leave_consistent_repodata(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory({"burst": {"format": "rpm", "type": "hosted"}})
    names = [f"dpt-burst{i:02d}" for i in range(20)]
    with ThreadPoolExecutor(4) as pool:
        rpms = list(pool.map(lambda n: build_rpm(tmp_path / "build", n), names))
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda r: upload(f"{depot.url}/burst/Packages/{r.name}", r), rpms))
    assert codes == [201] * 20
    base = f"{depot.url}/burst"
    answers = get_many(f"{base}/repodata/repomd.xml", 10)
    assert len({a.body for a in answers}) == 1 and answers[0].status == 200
    assert depot.log().count("rendered repository=burst") == 1      # the burst cost one regeneration
    assert primary_names(base) == names
    dnf = Dnf(tmp_path / "dnf", base + "/", gpgkey=f"{base}/key.asc")
    dnf.install(names[0], names[-1])
    assert dnf.installed(names[-1]) == f"{names[-1]} 1.0\n".encode()
    assert int(curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                    f"{base}/Packages/{rpms[3].name}").stdout) == 204
    assert primary_names(base) == names[:3] + names[4:]


# ---------------------------------------------------------------- proxy

@pytest.fixture
def chain(depot_factory: Any, tmp_path: Path) -> Chain:
    rpms = [build_rpm(tmp_path / "build", name) for name in ("dpt-px-a", "dpt-px-b")]
    return proxy_chain(depot_factory, "rpm", rpms, lambda rpm: f"Packages/{rpm.name}", "rpm-remote")


def test_proxy_second_run_all_hits_then_upstream_stopped(chain: Chain, tmp_path: Path) -> None:
    key = tmp_path / "key.asc"
    key.write_bytes(get(f"{chain.up.url}/origin/key.asc").body)

    def install(run: str) -> Dnf:
        dnf = Dnf(tmp_path / run, f"{chain.base}/", gpgkey=f"file://{key}")
        dnf.install("dpt-px-a", "dpt-px-b")
        assert dnf.installed("dpt-px-a") == b"dpt-px-a 1.0\n"
        return dnf
    install("run1")
    mark = len(chain.depot.log())
    install("run2")
    lines = access(chain.depot, mark, "/rpm-remote/")
    data = [l for l in lines if ".rpm " in l or "-primary" in l or "-filelists" in l]
    assert data and all(l.endswith('"HIT"') for l in data), lines
    assert all(l.endswith(('"HIT"', '"REVALIDATED"')) for l in lines), lines
    chain.up.stop()
    install("run3")


def test_twenty_clients_one_upstream_get(chain: Chain) -> None:
    path = f"Packages/{chain.files[0].name}"
    assert_one_upstream_get(f"{chain.base}/{path}", chain.files[0].read_bytes(),
                            lambda: depot_gets(chain.up, f"/origin/{path}"))


def test_files_disagreeing_with_their_index_are_never_served(depot_factory: Any, upstream: Any,
                                                            tmp_path: Path) -> None:
    hosted = depot_factory({"src": {"format": "rpm", "type": "hosted"}}, name="src")
    good = build_rpm(tmp_path / "good", "dpt-good")
    assert upload(f"{hosted.url}/src/Packages/{good.name}", good) == 201
    repomd = get(f"{hosted.url}/src/repodata/repomd.xml").body
    hrefs = [d.find(f"{REPO_NS}location").get("href") for d in ElementTree.fromstring(repomd).iter(f"{REPO_NS}data")]
    for href in hrefs:
        upstream.put(href, get(f"{hosted.url}/src/{href}").body)
    upstream.put("repodata/repomd.xml", repomd)
    primary = next(h for h in hrefs if "primary" in h)
    upstream.put(primary, gzip.compress(b"<metadata/>"))                          # disagrees with repomd
    upstream.put(f"Packages/{good.name}", build_rpm(tmp_path / "evil", "dpt-good", "1.0").read_bytes()[:-1] + b"!")
    depot = depot_factory({"r": {"format": "rpm", "type": "proxy", "upstream": upstream.url + "/"}})
    base = f"{depot.url}/r"
    for _ in range(2):
        for path in (primary, f"Packages/{good.name}"):
            answer = get(f"{base}/{path}")
            assert answer.status in (404, 502) or not answer.complete, (path, answer.status)
    assert get(f"{base}/repodata/unlisted-primary.xml.gz").status == 404
    upstream.put(primary, get(f"{hosted.url}/src/{primary}").body)             # the honest files again
    upstream.put(f"Packages/{good.name}", good.read_bytes())
    assert get(f"{base}/{primary}").body == get(f"{hosted.url}/src/{primary}").body
    assert get(f"{base}/Packages/{good.name}").body == good.read_bytes()


def test_repomd_signature_follows_the_repomd_served(depot_factory: Any, upstream: Any) -> None:
    """repomd.xml.asc is always the one of the repomd.xml depot serves, even when the two were
    cached at different moments and the upstream changed in between."""
    upstream.put("repodata/repomd.xml", b"<repomd>A</repomd>")
    upstream.put("repodata/repomd.xml.asc", b"signature of A")
    depot = depot_factory({"r": {"format": "rpm", "type": "proxy", "upstream": upstream.url + "/",
                                 "metadata_ttl": 2}})
    base = f"{depot.url}/r/repodata"
    assert get(f"{base}/repomd.xml").body == b"<repomd>A</repomd>"
    time.sleep(1.2)
    assert get(f"{base}/repomd.xml.asc").body == b"signature of A"
    upstream.put("repodata/repomd.xml", b"<repomd>B</repomd>")
    upstream.put("repodata/repomd.xml.asc", b"signature of B")
    time.sleep(1.0)                    # repomd.xml is due for revalidation; the old .asc would not be
    assert get(f"{base}/repomd.xml").body == b"<repomd>B</repomd>"
    assert get(f"{base}/repomd.xml.asc").body == b"signature of B"
