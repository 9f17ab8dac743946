"""Browsing in the format's terms: a hosted OCI repository shows images, tags, digests, sizes and
platforms (never `_blobs/`, `_manifests/`); PyPI does not list the `.metadata` companions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from depot_process import DepotProcess
from http_util import get
from oci_fixtures import hello_layout
from pypi_fixtures import build_dist
from test_oci import skopeo


def test_oci_and_pypi_browsing_hide_storage_internals(depot_factory, tmp_path: Path) -> None:
    depot = depot_factory({"containers": {"format": "oci", "type": "hosted"},
                           "pypi-local": {"format": "pypi", "type": "hosted"}})
    layout, single, index = hello_layout(tmp_path / "layout")
    for tag in ("v1", "multi"):
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout.root}:{tag}",
               f"docker://127.0.0.1:{depot.port}/containers/team/app:{tag}")
    page = get(f"{depot.url}/-/ui/repositories/containers").body.decode()
    assert "_blobs" not in page and "_manifests" not in page and "_tags" not in page
    assert "<h2>Images</h2>" in page
    rows = {line.split("<td>")[2].split("</td>")[0]: line for line in page.split("<tr>") if line.startswith("<td>team/app</td>")}
    assert set(rows) == {"v1", "multi"}
    assert single["digest"][:19] in rows["v1"] and "linux/amd64" in rows["v1"]
    assert index["digest"][:19] in rows["multi"] and "linux/amd64, linux/arm64" in rows["multi"]
    assert f"127.0.0.1:{depot.port}/containers/team/app:v1" in rows["v1"]

    dist = build_dist(tmp_path / "build", "browse-me", "1.0")
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_", "DEPOT_"))}
    done = subprocess.run([str(bin_dir / "twine"), "upload", "--repository-url", f"{depot.url}/pypi-local/",
                           "-u", "admin", "-p", DepotProcess.ADMIN_PASSWORD, "--non-interactive", "--disable-progress-bar", str(dist.wheel)],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    listing = get(f"{depot.url}/-/ui/repositories/pypi-local?path=browse-me/").body.decode()
    assert dist.wheel.name in listing and ".metadata" not in listing
    top = get(f"{depot.url}/-/ui/repositories/pypi-local").body.decode()
    assert "1 file<" in top                       # the wheel alone, not its companion


def test_sign_in_shows_the_hosted_repositories_the_user_may_read(depot_factory) -> None:
    import base64
    depot = depot_factory({"secret": {"format": "generic", "type": "hosted", "access": {"alice": "read"}},
                           "other": {"format": "generic", "type": "hosted"},
                           "cache": {"format": "generic", "type": "proxy", "upstream": "http://127.0.0.1:9/"}},
                          secure=True)
    subprocess.run(depot.command("user", "add", "alice", "--password-stdin"), input="alice-long-password\n",
                   text=True, check=True, capture_output=True, timeout=60)
    alice = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-long-password").decode()}
    anonymous = get(f"{depot.url}/-/ui/")
    assert 'href="./login">sign in</a>' in anonymous.body.decode()
    assert "cache" in anonymous.body.decode() and "secret" not in anonymous.body.decode()
    challenge = get(f"{depot.url}/-/ui/login")
    assert challenge.status == 401 and challenge.headers["WWW-Authenticate"].startswith("Basic")
    import requests
    signed_in = requests.get(f"{depot.url}/-/ui/login", headers=alice, allow_redirects=False, timeout=30)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "./"
    page = get(f"{depot.url}/-/ui/", headers=alice).body.decode()
    assert "secret" in page and ">other<" not in page and "cache" in page
    wrong = get(f"{depot.url}/-/ui/login", headers={"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()})
    assert wrong.status == 401
