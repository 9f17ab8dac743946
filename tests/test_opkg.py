"""Opkg feeds against real depot processes, by replaying opkg's requests; signatures are checked
with the real signify (signify-openbsd: the format usign writes and opkg's check_signature reads).

No opkg on this machine: the sequence is taken from opkg (libopkg/opkg_cmd.c `opkg_update_cmd`:
`<src>/Packages.gz` for a `src/gz` feed, then `<src>/Packages.sig` verified with
`usign -V -m Packages -P /etc/opkg/keys`, or `Packages.asc` with `signature_type gpg`;
libopkg/opkg_install.c: `<src>/<Filename>`, checked against the index's Size and SHA256sum).
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from http_util import get, get_many
from longtail_fixtures import make_token, tar_gz

SIGNIFY = shutil.which("signify-openbsd")
REPOS = {
    "opkg-local": {"format": "opkg", "type": "hosted", "anonymous_read": True},
    "opkg": {"format": "opkg", "type": "group", "members": ["opkg-local"], "deploy_to": "opkg-local",
             "anonymous_read": True},
}


def ipk(name: str, version: str, arch: str = "all", ar: bool = False, depends: str = "") -> bytes:
    """A package as ipkg-build (tar.gz outer) or Yocto's opkg-build (ar outer) makes it."""
    control = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@depot.invalid>\n"
    control += (f"Depends: {depends}\n" if depends else "") + "Description: a test package\n multi-line\n"
    members = {"debian-binary": b"2.0\n", "control.tar.gz": tar_gz({"./control": control.encode()}),
               "data.tar.gz": tar_gz({f"./usr/share/{name}/VERSION": version.encode()})}
    if not ar:
        return tar_gz({"./" + k: v for k, v in members.items()})
    out = b"!<arch>\n"
    for member, data in members.items():
        out += f"{member + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


class Opkg:
    """`opkg update` then `opkg install` against one src/gz feed, signatures checked."""

    def __init__(self, feed: str, keys: Path | None = None) -> None:
        self.feed = feed.rstrip("/")
        self.keys = keys

    def update(self, signature: str = "usign") -> dict[str, dict[str, str]]:
        answer = requests.get(f"{self.feed}/Packages.gz", headers={"User-Agent": "opkg/0.6.2"}, timeout=10)
        assert answer.status_code == 200, answer.text
        packages = gzip.decompress(answer.content)
        if self.keys is not None:
            sig_name = "Packages.sig" if signature == "usign" else "Packages.asc"
            sig = requests.get(f"{self.feed}/{sig_name}", timeout=10)
            assert sig.status_code == 200, sig.text
            if signature == "usign":
                verify_usign(self.keys, packages, sig.content)
        index = {}
        for block in packages.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " ")
            if fields:
                index[fields["Package"] + " " + fields["Version"]] = fields
        self.index = index
        return index

    def install(self, name: str, version: str) -> requests.Response:
        entry = self.index[f"{name} {version}"]
        answer = requests.get(f"{self.feed}/{entry['Filename']}", timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.content) == int(entry["Size"])
        assert hashlib.sha256(answer.content).hexdigest() == entry["SHA256sum"]
        return answer


def verify_usign(pubkey: Path, message: bytes, signature: bytes) -> None:
    assert SIGNIFY, "signify-openbsd is missing: apt-get install signify-openbsd (tests/clients/opkg.apt)"
    work = pubkey.parent
    (work / "Packages").write_bytes(message)
    (work / "Packages.sig").write_bytes(signature)
    done = subprocess.run([SIGNIFY, "-V", "-q", "-p", str(pubkey), "-x", str(work / "Packages.sig"),
                           "-m", str(work / "Packages")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def upload(url: str, data: bytes, filename: str, token: str | None) -> requests.Response:
    auth = ("ci", token) if token else None
    return requests.put(f"{url}/{filename}", data=data, auth=auth, timeout=30)


@pytest.fixture
def depot(depot_factory: Any) -> Any:
    return depot_factory(REPOS, secure=True)


def fetch_key(feed: str, tmp_path: Path, name: str = "key.pub") -> Path:
    answer = requests.get(f"{feed}/key.pub", timeout=10)
    assert answer.status_code == 200 and answer.text.startswith("untrusted comment: public key ")
    path = tmp_path / name
    path.write_bytes(answer.content)
    return path


def test_upload_then_update_and_install_through_hosted_and_group(depot: Any, tmp_path: Path) -> None:
    token = make_token(depot, "--repo", "opkg-local", "--perm", "write")
    first = upload(f"{depot.url}/opkg", ipk("dpt-leaf", "1.0-1"), "dpt-leaf_1.0-1_all.ipk", token)
    assert first.status_code == 201, first.text
    assert upload(f"{depot.url}/opkg", ipk("dpt-app", "2.1-r3", "x86_64", ar=True, depends="dpt-leaf"),
                  "dpt-app_2.1-r3_x86_64.ipk", token).status_code == 201
    for feed in (f"{depot.url}/opkg", f"{depot.url}/opkg-local"):
        client = Opkg(feed, fetch_key(feed, tmp_path, feed.rsplit("/", 1)[-1] + ".pub"))
        index = client.update()
        assert set(index) == {"dpt-leaf 1.0-1", "dpt-app 2.1-r3"}
        assert index["dpt-app 2.1-r3"]["Depends"] == "dpt-leaf" and index["dpt-app 2.1-r3"]["Architecture"] == "x86_64"
        assert client.install("dpt-app", "2.1-r3").content == ipk("dpt-app", "2.1-r3", "x86_64", ar=True,
                                                                   depends="dpt-leaf")
        assert client.install("dpt-leaf", "1.0-1").content == ipk("dpt-leaf", "1.0-1")
    plain = requests.get(f"{depot.url}/opkg-local/Packages", timeout=10).content
    assert gzip.decompress(requests.get(f"{depot.url}/opkg-local/Packages.gz", timeout=10).content) == plain
    assert b"Description: a test package\n multi-line\n" in plain
    asc = requests.get(f"{depot.url}/opkg-local/Packages.asc", timeout=10)
    assert asc.status_code == 200 and asc.text.startswith("-----BEGIN PGP SIGNATURE-----")
    assert requests.get(f"{depot.url}/opkg-local/key.asc", timeout=10).text.startswith("-----BEGIN PGP PUBLIC")
    assert requests.get(f"{depot.url}/opkg-local/.depot/usign-key.json", timeout=10).status_code == 404
    # a new upload changes the feed and its signature together
    upload(f"{depot.url}/opkg", ipk("dpt-leaf", "1.1-1"), "dpt-leaf_1.1-1_all.ipk", token)
    again = Opkg(f"{depot.url}/opkg", tmp_path / "opkg.pub").update()
    assert "dpt-leaf 1.1-1" in again
    other = upload(f"{depot.url}/opkg", ipk("dpt-leaf", "1.0-1", depends="x"), "dpt-leaf_1.0-1_all.ipk", token)
    assert other.status_code == 409


def test_anonymous_and_read_token_cannot_upload(depot: Any) -> None:
    anonymous = upload(f"{depot.url}/opkg", ipk("dpt-leaf", "1.0-1"), "dpt-leaf_1.0-1_all.ipk", None)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    reader = make_token(depot, "--repo", "opkg-local", "--perm", "read")
    assert upload(f"{depot.url}/opkg", ipk("dpt-leaf", "1.0-1"), "dpt-leaf_1.0-1_all.ipk", reader).status_code == 403
    assert b"dpt-leaf" not in requests.get(f"{depot.url}/opkg/Packages", timeout=10).content


@pytest.mark.parametrize("case", ["not-archive", "no-control", "no-package-field", "wrong-name", "not-ipk-path"])
def test_bad_packages_are_refused_and_nothing_stored(depot: Any, case: str) -> None:
    token = make_token(depot, "--repo", "opkg-local", "--perm", "write")
    name = "dpt-bad_1.0_all.ipk"
    data = {"not-archive": b"plain bytes",
            "no-control": tar_gz({"./debian-binary": b"2.0\n"}),
            "no-package-field": tar_gz({"./control.tar.gz": tar_gz({"./control": b"Version: 1.0\n"})}),
            "wrong-name": ipk("dpt-other", "1.0"),
            "not-ipk-path": ipk("dpt-bad", "1.0")}[case]
    if case == "not-ipk-path":
        name = "Packages"
    answer = upload(f"{depot.url}/opkg", data, name, token)
    assert answer.status_code == 400 and answer.text.strip(), answer.text
    assert requests.get(f"{depot.url}/opkg-local/dpt-bad_1.0_all.ipk", timeout=10).status_code == 404
    assert b"dpt-" not in requests.get(f"{depot.url}/opkg-local/Packages", timeout=10).content


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    upload(f"{upstream.url}/opkg", ipk("dpt-leaf", "1.0-1"), "dpt-leaf_1.0-1_all.ipk", None)
    proxy = depot_factory({
        "opkg-remote": {"format": "opkg", "type": "proxy", "upstream": f"{upstream.url}/opkg-local"},
        "opkg-local": {"format": "opkg", "type": "hosted"},
        "opkg": {"format": "opkg", "type": "group", "members": ["opkg-local", "opkg-remote"],
                 "deploy_to": "opkg-local"},
    }, name="proxy")
    upload(f"{proxy.url}/opkg", ipk("dpt-mine", "0.1"), "dpt-mine_0.1_all.ipk", None)

    remote = Opkg(f"{proxy.url}/opkg-remote", fetch_key(f"{upstream.url}/opkg-local", tmp_path, "up.pub"))
    remote.update()                                   # the upstream's own signature, passed through
    assert remote.install("dpt-leaf", "1.0-1").headers["X-Cache"] == "MISS"
    group = Opkg(f"{proxy.url}/opkg", fetch_key(f"{proxy.url}/opkg", tmp_path))
    assert set(group.update()) == {"dpt-leaf 1.0-1", "dpt-mine 0.1"}
    assert group.install("dpt-leaf", "1.0-1").headers["X-Cache"] == "HIT"
    for name in ("Packages.gz", "Packages.sig"):
        assert requests.get(f"{proxy.url}/opkg-remote/{name}", timeout=10).headers["X-Cache"] == "HIT"
    upstream.stop()
    group.update()
    assert group.install("dpt-leaf", "1.0-1").content == ipk("dpt-leaf", "1.0-1")       # upstream gone
    assert group.install("dpt-mine", "0.1").content == ipk("dpt-mine", "0.1")


def test_twenty_concurrent_clients_one_upstream_get_and_sha_checked(depot_factory: Any, upstream: Any) -> None:
    big = ipk("dpt-big", "1.0") + b""
    evil = ipk("dpt-evil", "1.0")
    stanzas = [f"Package: dpt-big\nVersion: 1.0\nArchitecture: all\nFilename: dpt-big_1.0_all.ipk\n"
               f"Size: {len(big)}\nSHA256sum: {hashlib.sha256(big).hexdigest()}\n",
               f"Package: dpt-evil\nVersion: 1.0\nArchitecture: all\nFilename: dpt-evil_1.0_all.ipk\n"
               f"Size: {len(evil)}\nSHA256sum: {'0' * 64}\n"]
    upstream.put("base/Packages.gz", gzip.compress("\n".join(stanzas).encode()))
    upstream.put("base/dpt-big_1.0_all.ipk", big)
    upstream.put("base/dpt-evil_1.0_all.ipk", evil)
    upstream.put("base/dpt-unlisted_1.0_all.ipk", big)
    proxy = depot_factory({"opkg-remote": {"format": "opkg", "type": "proxy", "upstream": upstream.url}})
    upstream.mode("/base/dpt-big_1.0_all.ipk", "slow", chunk=64, delay=0.05)
    answers = get_many(f"{proxy.url}/opkg-remote/base/dpt-big_1.0_all.ipk", 20)
    assert all(a.status == 200 and a.body == big for a in answers)
    assert upstream.count("/base/dpt-big_1.0_all.ipk") == 1 and upstream.count("/base/Packages.gz") == 1
    for _ in range(2):
        answer = get(f"{proxy.url}/opkg-remote/base/dpt-evil_1.0_all.ipk")
        assert answer.status == 502 or not answer.complete, answer.status
    assert upstream.count("/base/dpt-evil_1.0_all.ipk") == 2
    assert requests.get(f"{proxy.url}/opkg-remote/base/dpt-unlisted_1.0_all.ipk", timeout=10).status_code == 404



def _signify_keys(tmp_path: Path) -> tuple[Path, Path]:
    assert SIGNIFY, "signify-openbsd is missing: apt-get install signify-openbsd (tests/clients/opkg.apt)"
    pub, sec = tmp_path / "upstream.pub", tmp_path / "upstream.sec"
    subprocess.run([SIGNIFY, "-G", "-n", "-p", str(pub), "-s", str(sec)], check=True, capture_output=True, timeout=30)
    return pub, sec


def _publish_feed(upstream: Any, sec: Path, work: Path, packages: bytes) -> None:
    """An OpenWrt-style feed on the static upstream: Packages.gz and its usign signature."""
    (work / "feed").write_bytes(packages)
    subprocess.run([SIGNIFY, "-S", "-s", str(sec), "-m", str(work / "feed"), "-x", str(work / "feed.sig")],
                   check=True, capture_output=True, timeout=30)
    upstream.put("feed/Packages.gz", gzip.compress(packages, mtime=0))
    upstream.put("feed/Packages.sig", (work / "feed.sig").read_bytes())


def test_proxy_serves_the_signature_of_the_index_it_served(depot_factory: Any, upstream: Any,
                                                           tmp_path: Path) -> None:
    """`opkg update` takes Packages.gz, then Packages.sig: the feed changing upstream in between
    (and the proxy's metadata_ttl running out) must not pair the old index with the new signature."""
    pub, sec = _signify_keys(tmp_path)
    old = b"Package: dpt-a\nVersion: 1.0\nArchitecture: all\nFilename: dpt-a_1.0_all.ipk\n"
    new = old + b"\nPackage: dpt-a\nVersion: 1.1\nArchitecture: all\nFilename: dpt-a_1.1_all.ipk\n"
    _publish_feed(upstream, sec, tmp_path, old)
    proxy = depot_factory({"opkg-remote": {"format": "opkg", "type": "proxy", "upstream": upstream.url,
                                           "metadata_ttl": "1s"}})
    feed = f"{proxy.url}/opkg-remote/feed"
    first = requests.get(f"{feed}/Packages.gz", timeout=10)
    assert gzip.decompress(first.content) == old
    assert upstream.count("/feed/Packages.sig") == 1                 # fetched with the index, one flight
    _publish_feed(upstream, sec, tmp_path, new)                      # the feed moves on upstream
    time.sleep(1.5)                                                  # past the proxy's metadata_ttl
    sig = requests.get(f"{feed}/Packages.sig", timeout=10)
    assert sig.status_code == 200 and sig.headers["X-Cache"] == "HIT"
    verify_usign(pub, gzip.decompress(first.content), sig.content)   # the signature of what the client has
    index = Opkg(feed, pub).update()                                 # the next update: the new pair
    assert set(index) == {"dpt-a 1.0", "dpt-a 1.1"}
    assert requests.get(f"{feed}/Packages", timeout=10).content == new
    verify_usign(pub, new, requests.get(f"{feed}/Packages.sig", timeout=10).content)
    upstream.stop()
    Opkg(feed, pub).update()                                          # stale pair, still consistent


def test_a_signature_asked_first_pairs_with_the_index_fetched_for_it(depot_factory: Any, upstream: Any,
                                                                     tmp_path: Path) -> None:
    pub, sec = _signify_keys(tmp_path)
    packages = b"Package: dpt-b\nVersion: 2.0\nArchitecture: all\nFilename: dpt-b_2.0_all.ipk\n"
    _publish_feed(upstream, sec, tmp_path, packages)
    proxy = depot_factory({"opkg-remote": {"format": "opkg", "type": "proxy", "upstream": upstream.url}})
    sig = requests.get(f"{proxy.url}/opkg-remote/feed/Packages.sig", timeout=10)
    assert sig.status_code == 200
    verify_usign(pub, packages, sig.content)
    assert set(Opkg(f"{proxy.url}/opkg-remote/feed", pub).update()) == {"dpt-b 2.0"}
    assert upstream.count("/feed/Packages.gz") == 1 and upstream.count("/feed/Packages.sig") == 1


def test_policy_deny_filters_the_feed_which_the_proxy_signs_itself(depot_factory: Any, tmp_path: Path) -> None:
    """Feeds carry no publish times: deny/allow rules apply. The filtered index no longer matches the
    upstream's signature, so a proxy under a policy signs it with its own keys (its key.pub)."""
    upstream = depot_factory(REPOS, name="upstream")
    for version in ("1.0", "1.1"):
        upload(f"{upstream.url}/opkg", ipk("dpt-pol", version), f"dpt-pol_{version}_all.ipk", None)
    proxy = depot_factory({
        "opkg-remote": {"format": "opkg", "type": "proxy", "upstream": f"{upstream.url}/opkg-local"},
        "opkg-local": {"format": "opkg", "type": "hosted"},
        "opkg": {"format": "opkg", "type": "group", "members": ["opkg-local", "opkg-remote"], "deploy_to": "opkg-local"},
    }, extra={"policy": {"deny": ["dpt-pol@>=1.1"]}}, name="proxy")
    for repo in ("opkg-remote", "opkg"):
        feed = f"{proxy.url}/{repo}"
        client = Opkg(feed, fetch_key(feed, tmp_path, repo + ".pub"))
        assert set(client.update()) == {"dpt-pol 1.0"}, repo                 # signature checked by signify
        assert client.install("dpt-pol", "1.0").content == ipk("dpt-pol", "1.0")
    refused = requests.get(f"{proxy.url}/opkg-remote/dpt-pol_1.1_all.ipk", timeout=10)
    assert refused.status_code == 403 and "dpt-pol@>=1.1" in refused.text
