"""Duplicates, protected and immutable tags, enforced by the engine for every format, driven with
the real clients: twine (duplicates: deny/allow), curl (generic), skopeo (protected and immutable
tags: a writer cannot move or delete a protected tag, an admin can; nobody moves an immutable one)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from admin_helpers import api, curl, make_user, pip_download, skopeo, twine
from oci_fixtures import Layout
from pypi_fixtures import build_dist


def test_duplicates_deny_and_allow_with_twine(depot_factory, tmp_path: Path) -> None:
    depot = depot_factory({
        "deny": {"format": "pypi", "type": "hosted", "duplicates": "deny", "duplicates_exception_regex": r"\.dev"},
        "allow": {"format": "pypi", "type": "hosted", "duplicates": "allow"},
        "default": {"format": "pypi", "type": "hosted"},
    })
    dist = build_dist(tmp_path / "build", "dup-pkg", "1.0")
    dev = build_dist(tmp_path / "build", "dup-pkg", "1.1.dev1")
    for repo in ("deny", "allow", "default"):
        twine(f"{depot.url}/{repo}/", "admin", depot.ADMIN_PASSWORD, dist.wheel)
    refused = twine(f"{depot.url}/deny/", "admin", depot.ADMIN_PASSWORD, dist.wheel, check=False)
    assert refused.returncode != 0 and "duplicates are denied" in refused.stdout + refused.stderr
    # without a duplicates setting the format's own rule holds: PyPI accepts the very same file again
    # (as PyPI does, so that retries and `uv publish --check-url` work); other bytes are refused
    assert twine(f"{depot.url}/default/", "admin", depot.ADMIN_PASSWORD, dist.wheel, check=False).returncode == 0
    twine(f"{depot.url}/allow/", "admin", depot.ADMIN_PASSWORD, dist.wheel)                    # allowed again
    twine(f"{depot.url}/deny/", "admin", depot.ADMIN_PASSWORD, dev.wheel)
    twine(f"{depot.url}/deny/", "admin", depot.ADMIN_PASSWORD, dev.wheel)                      # the exception regex
    assert pip_download(f"{depot.url}/deny/simple/", tmp_path / "dl", "dup-pkg==1.0").returncode == 0


def test_duplicates_with_curl_on_generic(depot_factory, tmp_path: Path) -> None:
    depot = depot_factory({
        "deny": {"format": "generic", "type": "hosted", "duplicates": "deny", "allow_overwrite": True},
        "allow": {"format": "generic", "type": "hosted", "duplicates": "allow"},
    })
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("one")
    two.write_text("two")
    for repo in ("deny", "allow"):
        assert curl("-T", str(one), f"{depot.url}/{repo}/f.txt").stdout == "201"
    assert curl("-T", str(two), f"{depot.url}/deny/f.txt").stdout == "409"      # beats allow_overwrite
    assert curl("-T", str(one), f"{depot.url}/deny/f.txt").stdout == "409"      # even the same bytes
    assert curl("-T", str(two), f"{depot.url}/allow/f.txt").stdout in ("200", "201")
    assert requests.get(f"{depot.url}/allow/f.txt", timeout=10).text == "two"
    assert requests.get(f"{depot.url}/deny/f.txt", timeout=10).text == "one"


@pytest.fixture
def guarded(depot_factory, tmp_path: Path):
    depot = depot_factory({"oci": {"format": "oci", "type": "hosted", "access": {"writer": "delete"},
                                   "protected": [{"pattern": "^stable$", "perm": "admin"}],
                                   "immutable_tags": ["^v[0-9]"]}}, secure=True)
    make_user(depot, "writer")
    layout = Layout(tmp_path / "layout")
    layout.tag(layout.image({"a.txt": b"a\n"}), "a")
    layout.tag(layout.image({"b.txt": b"b\n"}), "b")
    return depot, layout


def test_protected_tag_needs_admin_and_immutable_tag_never_moves(guarded) -> None:
    depot, layout = guarded
    admin, writer = f"admin:{depot.ADMIN_PASSWORD}", "writer:password-123"
    ref = f"docker://127.0.0.1:{depot.port}/oci/team/app"

    def push(creds: str, src: str, tag: str, check: bool = True):
        return skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{layout.root}:{src}",
                      f"{ref}:{tag}", check=check)

    def digest(tag: str) -> str:
        out = skopeo("inspect", "--tls-verify=false", "--creds", admin, "--format", "{{.Digest}}", f"{ref}:{tag}")
        return out.stdout.strip()

    push(admin, "a", "stable")
    push(admin, "a", "v1")
    push(writer, "a", "dev")                                   # unprotected tags: the writer's
    first = digest("stable")
    moved = push(writer, "b", "stable", check=False)
    assert moved.returncode != 0 and digest("stable") == first
    deleted = skopeo("delete", "--tls-verify=false", "--creds", writer, f"{ref}:stable", check=False)
    assert deleted.returncode != 0 and digest("stable") == first
    denied = api(depot, "DELETE", "packages/oci/team%2Fapp/stable", ("writer", "password-123"))
    assert denied.status_code == 403 and "protected" in denied.json()["detail"]
    push(admin, "b", "stable")                                 # an admin may move it
    assert digest("stable") != first

    v1 = digest("v1")
    assert push(admin, "b", "v1", check=False).returncode != 0          # immutable: not even an admin
    assert skopeo("delete", "--tls-verify=false", "--creds", admin, f"{ref}:v1", check=False).returncode != 0
    assert digest("v1") == v1
    push(writer, "b", "v2")                                    # a new immutable tag can be created once
    assert push(writer, "a", "v2", check=False).returncode != 0
    push(admin, "b", "v2")                                     # the same manifest again: not a move
    assert api(depot, "DELETE", "packages/oci/team%2Fapp/dev", ("writer", "password-123")).status_code == 200


def test_protected_generic_file_delete_needs_admin_in_the_format_shape(depot_factory, tmp_path: Path) -> None:
    depot = depot_factory({"files": {"format": "generic", "type": "hosted", "access": {"writer": "delete"},
                                     "protected": ["^release/"]}}, secure=True)
    make_user(depot, "writer")
    src = tmp_path / "f"
    src.write_text("v1")
    admin, writer = f"admin:{depot.ADMIN_PASSWORD}", "writer:password-123"
    assert curl("-u", writer, "-T", str(src), f"{depot.url}/files/release/f.txt").stdout == "403"
    assert curl("-u", admin, "-T", str(src), f"{depot.url}/files/release/f.txt").stdout == "201"
    assert curl("-u", writer, "-X", "DELETE", f"{depot.url}/files/release/f.txt").stdout == "403"
    assert curl("-u", writer, "-T", str(src), f"{depot.url}/files/dev/f.txt").stdout == "201"
    assert curl("-u", writer, "-X", "DELETE", f"{depot.url}/files/dev/f.txt").stdout in ("200", "204")
    assert curl("-u", admin, "-X", "DELETE", f"{depot.url}/files/release/f.txt").stdout in ("200", "204")


def test_protected_npm_package_needs_admin_to_publish_or_unpublish(depot_factory, tmp_path: Path) -> None:
    from admin_helpers import admin_token
    from npm_fixtures import NpmCli, make_package
    depot = depot_factory({"npmr": {"format": "npm", "type": "hosted", "access": {"dev": "delete"},
                                    "protected": [{"pattern": "^@core/", "perm": "admin"}]}}, secure=True)
    make_user(depot, "dev")
    dev_token = depot.run_cli("token", "create", "--user", "dev", "--perm", "delete").stdout.strip().splitlines()[-1]
    admin = NpmCli(tmp_path / "admin", f"{depot.url}/npmr/", token=admin_token(depot))
    dev = NpmCli(tmp_path / "dev", f"{depot.url}/npmr/", token=dev_token)
    refused = dev.run("publish", cwd=make_package(tmp_path / "p", "@core/lib", "1.0.0"))
    assert refused.returncode != 0 and "protected" in refused.stderr
    admin.ok("publish", cwd=make_package(tmp_path / "p", "@core/lib", "1.0.0"))
    admin.ok("publish", cwd=make_package(tmp_path / "p", "@core/lib", "1.1.0"))
    dev.ok("publish", cwd=make_package(tmp_path / "p", "@team/lib", "1.0.0"))     # not protected
    assert dev.run("unpublish", "@core/lib@1.0.0", "--force").returncode != 0
    assert dev.run("view", "@core/lib@1.0.0", "version").stdout.strip() == "1.0.0"
    admin.ok("unpublish", "@core/lib@1.0.0", "--force")
    assert admin.run("view", "@core/lib@1.0.0", "version").stdout.strip() == ""
    dev.ok("unpublish", "@team/lib@1.0.0", "--force")
