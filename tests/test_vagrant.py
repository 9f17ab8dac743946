"""Vagrant boxes end to end: the real vagrant (Debian) against real depot processes; proxy upstreams
are a second depot and a counting static tree. Boxes are small tar.gz files built here."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from depot_process import DepotProcess
from http_util import get_many

VAGRANT = shutil.which("vagrant")
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def make_box(provider: str = "libvirt", size: int = 200_000, seed: bytes = b"") -> bytes:
    """A box: metadata.json and a dummy disk, gzipped tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("metadata.json", json.dumps({"provider": provider, "format": "qcow2",
                                                          "virtual_size": 1}).encode()),
                           ("box.img", seed + os.urandom(size))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def vagrant(home: Path, server: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert VAGRANT, "vagrant is missing: apt-get install vagrant (tests/clients/vagrant.apt)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "DEPOT_"))}
    env.update({"VAGRANT_HOME": str(home), "VAGRANT_SERVER_URL": server, "VAGRANT_CHECKPOINT_DISABLE": "1",
                "VAGRANT_DEFAULT_PROVIDER": "libvirt", "HOME": str(home)})
    proc = subprocess.run([VAGRANT, *args], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, cwd=home.parent)
    if check and proc.returncode != 0:
        raise AssertionError(f"vagrant {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def box_add(tmp: Path, server: str, name: str, version: str) -> str:
    home = tmp / f"vh-{time.monotonic_ns()}"
    home.mkdir(parents=True)
    out = vagrant(home, server, "box", "add", name, "--provider", "libvirt", "--box-version", version).stdout
    listed = vagrant(home, server, "box", "list").stdout
    assert f"{name} (libvirt, {version})" in listed, listed
    return out


def upload(url: str, body: bytes, **kw: Any) -> requests.Response:
    return requests.put(url, data=body, timeout=60, **kw)


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"boxes-local": {"format": "vagrant", "type": "hosted"},
                          "boxes": {"format": "vagrant", "type": "group", "members": ["boxes-local"],
                                    "deploy_to": "boxes-local"}})


def test_upload_then_vagrant_box_add_from_hosted_and_group(depot: DepotProcess, tmp_path: Path) -> None:
    boxes = {v: make_box() for v in ("1.0.0", "1.1.0")}
    for version, box in boxes.items():
        put = upload(f"{depot.url}/boxes/depot/tiny/{version}/libvirt.box", box)          # through the group
        assert put.status_code == 201 and put.json()["checksum"] == hashlib.sha256(box).hexdigest()
    catalog = requests.get(f"{depot.url}/boxes-local/depot/tiny", headers={"Accept": "application/json"},
                           timeout=10).json()
    assert [v["version"] for v in catalog["versions"]] == ["1.1.0", "1.0.0"]
    provider = catalog["versions"][1]["providers"][0]
    assert provider == {"name": "libvirt", "url": f"{depot.url}/boxes-local/depot/tiny/1.0.0/libvirt.box",
                        "checksum_type": "sha256", "checksum": hashlib.sha256(boxes["1.0.0"]).hexdigest()}
    first = requests.get(f"{depot.url}/boxes-local/depot/tiny", timeout=10)
    again = requests.get(f"{depot.url}/boxes-local/depot/tiny", headers={"If-None-Match": first.headers["ETag"]},
                         timeout=10)
    assert again.status_code == 304                                          # a proxy in front revalidates cheaply
    for repo in ("boxes-local", "boxes"):
        out = box_add(tmp_path / repo, f"{depot.url}/{repo}", "depot/tiny", "1.0.0")
        assert "checksum" in out.lower(), out                                 # vagrant compared the sha256


def test_versions_are_immutable_and_bad_boxes_refused(depot: DepotProcess) -> None:
    url = f"{depot.url}/boxes-local/depot/fixed/1.0.0/libvirt.box"
    box = make_box()
    assert upload(url, box).status_code == 201
    assert upload(url, box).status_code == 200                                 # the same bytes again
    other = upload(url, make_box())
    assert other.status_code == 409 and other.json()["errors"]
    for body, why in [(b"not a box", "not a box"), (b"\x1f\x8b\x08\x00garbage", "not a box"),
                      (make_box("virtualbox"), "provider"), (_tar_without_metadata(), "no metadata.json")]:
        bad = upload(f"{depot.url}/boxes-local/depot/bad/1.0.0/libvirt.box", body)
        assert bad.status_code == 400 and why in bad.json()["errors"][0], bad.text
    assert requests.get(f"{depot.url}/boxes-local/depot/bad", timeout=10).status_code == 404
    assert requests.delete(url, timeout=10).status_code == 204
    assert upload(url, make_box()).status_code == 409                          # a deleted version stays gone


def _tar_without_metadata() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("box.img")
        info.size = 10
        tar.addfile(info, io.BytesIO(b"0123456789"))
    return buf.getvalue()


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"boxes": {"format": "vagrant", "type": "hosted"}}, name="up")
    box = make_box(size=1_000_000)
    assert upload(f"{upstream.url}/boxes/depot/relay/2.0.0/libvirt.box", box).status_code == 201
    front = depot_factory({"remote": {"format": "vagrant", "type": "proxy", "upstream": f"{upstream.url}/boxes",
                                      "metadata_ttl": 1},
                           "grp": {"format": "vagrant", "type": "group", "members": ["remote"]}}, name="front")
    for round_ in range(2):
        since = len(front.log())
        box_add(tmp_path, f"{front.url}/remote", "depot/relay", "2.0.0")
        if round_ == 1:
            lines = [l for l in front.log()[since:].splitlines() if "depot.access" in l and ".box" in l]
            assert lines and all(l.endswith('"HIT"') for l in lines), lines
    catalog = requests.get(f"{front.url}/remote/depot/relay", timeout=10).json()
    assert catalog["versions"][0]["providers"][0]["url"] == f"{front.url}/remote/depot/relay/2.0.0/libvirt.box"
    part = requests.get(catalog["versions"][0]["providers"][0]["url"], headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == box[100:200]            # resumable downloads
    upstream.stop()
    time.sleep(1.2)
    box_add(tmp_path, f"{front.url}/remote", "depot/relay", "2.0.0")
    box_add(tmp_path, f"{front.url}/grp", "depot/relay", "2.0.0")
    stale = requests.get(f"{front.url}/remote/depot/relay", timeout=20)
    assert stale.status_code == 200 and stale.headers["X-Cache"] == "STALE"


def test_twenty_concurrent_clients_on_one_uncached_box(upstream: Any, depot_factory: Any) -> None:
    box = make_box(size=500_000)
    upstream.put("depot/herd", json.dumps({"name": "depot/herd", "versions": [{"version": "1.0.0", "providers": [
        {"name": "libvirt", "url": f"{upstream.url}/files/herd.box", "checksum_type": "sha256",
         "checksum": hashlib.sha256(box).hexdigest()}]}]}).encode())
    upstream.put("files/herd.box", box)
    upstream.put("depot/bad", json.dumps({"name": "depot/bad", "versions": [{"version": "1.0.0", "providers": [
        {"name": "libvirt", "url": f"{upstream.url}/files/herd.box", "checksum_type": "sha256",
         "checksum": "0" * 64}]}]}).encode())
    depot = depot_factory({"remote": {"format": "vagrant", "type": "proxy", "upstream": upstream.url}})
    url = f"{depot.url}/remote/depot/herd/1.0.0/libvirt.box"
    requests.get(f"{depot.url}/remote/depot/herd", timeout=10)
    upstream.mode("/files/herd.box", "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode("/files/herd.box", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {box}
    assert upstream.count("/files/herd.box") == 1
    # a box whose bytes do not match the catalog's checksum is never stored nor served whole
    bad = f"{depot.url}/remote/depot/bad/1.0.0/libvirt.box"
    assert not served_whole(bad, box) and not served_whole(bad, box)


def served_whole(url: str, body: bytes) -> bool:
    try:
        response = requests.get(url, timeout=20)
    except requests.RequestException:
        return False                                      # the transfer was cut: the client sees an error
    return response.status_code == 200 and response.content == body


def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(depot_factory: Any) -> None:
    secure = depot_factory({"boxes": {"format": "vagrant", "type": "hosted"}}, secure=True)
    url = f"{secure.url}/boxes/depot/tiny/1.0.0/libvirt.box"
    anonymous = upload(url, make_box())
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    read = secure.run_cli("token", "create", "--repo", "boxes", "--perm", "read").stdout.strip().splitlines()[-1]
    assert upload(url, make_box(), headers={"Authorization": f"Bearer {read}"}).status_code == 403
    assert upload(url, make_box(), auth=ADMIN).status_code == 201
    assert requests.get(f"{secure.url}/boxes/depot/tiny", auth=ADMIN, timeout=10).status_code == 200
