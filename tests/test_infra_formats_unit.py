"""Pure functions of the Helm, Terraform and Vagrant formats (no server)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest

from depot.registry import helm_index as hi
from depot.registry.terraform_modules import module_archive_type, resolve_source, split_getter, strip_top_dir, version_key
from depot.registry.terraform_providers import parse_sums
from depot.registry.vagrant import box_metadata, verification


@pytest.mark.parametrize("location,expected", [
    ("https://x/m.tar.gz", ("https://x/m.tar.gz", "", "tar.gz")),
    ("https://x/m.zip//modules/vpc?ref=1", ("https://x/m.zip?ref=1", "//modules/vpc", "zip")),
    ("https://x/download?archive=tgz", ("https://x/download", "", "tar.gz")),
    ("https://x/module.tar.bz2", ("https://x/module.tar.bz2", "", None)),
    ("https://x/download?archive=zip&token=t", ("https://x/download?token=t", "", "zip")),
    ("git::https://github.com/o/r?ref=v1", ("git::https://github.com/o/r?ref=v1", "", None)),
    ("s3::https://bucket/x.zip", ("s3::https://bucket/x.zip", "", None)),
    ("https::https://x/m.tgz", ("https://x/m.tgz", "", "tar.gz")),
])
def test_go_getter_addresses(location: str, expected: tuple) -> None:
    assert split_getter(location) == expected


def test_versions_sort_semantically() -> None:
    assert sorted(["1.10.0", "1.2.0", "1.2.0-rc1", "2.0.0"], key=version_key) == \
        ["1.2.0-rc1", "1.2.0", "1.10.0", "2.0.0"]


def test_module_archives_with_unsafe_paths_are_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("main.tf", "../evil.tf"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="unsafe"):
        module_archive_type(buf.getvalue())


def test_sha256sums_parsing() -> None:
    digest = "a" * 64
    assert parse_sums(f"{digest}  x.zip\n{digest} *y.zip\n".encode()) == {"x.zip": digest, "y.zip": digest}
    for bad in (b"", b"nothex  x.zip\n"):
        with pytest.raises(ValueError):
            parse_sums(bad)


def test_proxy_index_rewrite_resolves_relative_and_absolute_urls_without_credentials() -> None:
    index = (b"apiVersion: v1\nentries:\n  a:\n  - name: a\n    version: 1.0.0\n    urls: [charts/a-1.0.0.tgz]\n"
             b"    digest: " + b"b" * 64 + b"\n  c:\n  - name: c\n    version: 2.0.0\n"
             b"    urls: ['https://cdn.example/c-2.0.0.tgz']\n  d:\n  - name: d\n    version: 1.0.0\n")
    out = json.loads(hi.rewrite_proxy_index(index, "https://user:pw@up.example/repo", "BASE"))
    assert out["entries"]["a"][0]["urls"] == ["BASE/charts/a-1.0.0.tgz", "https://up.example/repo/charts/a-1.0.0.tgz"]
    assert out["entries"]["c"][0]["urls"] == ["BASE/charts/c-2.0.0.tgz", "https://cdn.example/c-2.0.0.tgz"]
    assert out["entries"]["d"] == []                                       # no URL: unusable
    sources = hi.chart_sources(out)
    assert sources["a-1.0.0.tgz"] == ("https://up.example/repo/charts/a-1.0.0.tgz", "b" * 64)
    assert sources["c-2.0.0.tgz"] == ("https://cdn.example/c-2.0.0.tgz", None)


def test_group_merge_keeps_the_first_member_version() -> None:
    one = {"entries": {"a": [{"name": "a", "version": "1", "urls": ["one"]}]}}
    two = {"entries": {"a": [{"name": "a", "version": "1", "urls": ["two"]}, {"name": "a", "version": "2"}],
                       "b": [{"name": "b", "version": "1"}]}}
    merged = hi.merge_indexes([one, two])
    assert [v.get("urls") for v in merged["entries"]["a"]] == [["one"], None] and "b" in merged["entries"]


def test_provenance_names_its_chart() -> None:
    prov = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: x\n\n...\nfiles:\n"
            b"  x-1.0.0.tgz: sha256:abc\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n")
    assert hi.prov_chart_file(prov) == "x-1.0.0.tgz"
    with pytest.raises(hi.BadChart):
        hi.prov_chart_file(b"apiVersion: v2")


def test_box_metadata_is_found_in_a_prefix_of_a_big_upload() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("metadata.json", b'{"provider": "libvirt"}'), ("box.img", bytes(2_000_000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = buf.getvalue()
    assert box_metadata(whole, True) == {"provider": "libvirt"}
    assert box_metadata(whole[:len(whole) // 2], False) == {"provider": "libvirt"}


def test_catalog_checksums_become_engine_verification() -> None:
    sha512 = hashlib.sha512(b"x").hexdigest()
    assert verification({"checksum_type": "sha512", "checksum": sha512}) == \
        {"expect_integrity": "sha512-" + base64.b64encode(hashlib.sha512(b"x").digest()).decode()}
    assert verification({"checksum_type": "SHA256", "checksum": "A" * 64}) == {"expect_sha256": "a" * 64}
    assert verification({"checksum_type": "md5", "checksum": "0" * 32}) == {}


def test_github_git_sources_become_tarballs_without_their_top_directory() -> None:
    template = "https://gh.example/{owner}/{repo}/tar.gz/{ref}"
    assert resolve_source("git::https://github.com/o/r.git//modules/x?ref=v1.2.3", template) == \
        ("https://gh.example/o/r/tar.gz/v1.2.3", "//modules/x", "tar.gz")
    assert resolve_source("git::https://github.com/o/r", template)[2] is None          # no pinned ref
    assert resolve_source("git::https://github.com/o/r?ref=v1", None)[2] is None        # disabled
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("r-1.2.3/main.tf", "r-1.2.3/modules/x/main.tf", "r-1.2.3//abs.tf", "elsewhere"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    with tarfile.open(fileobj=io.BytesIO(strip_top_dir(buf.getvalue())), mode="r:gz") as tar:
        assert tar.getnames() == ["main.tf", "modules/x/main.tf"]


def test_package_of_names_the_package_and_version_of_stored_files() -> None:
    from depot.registry.helm import Helm
    from depot.registry.terraform import Terraform
    from depot.registry.vagrant import Vagrant
    assert Helm().package_of("charts/my-chart-1.2.3-rc.1.tgz") == ("my-chart", "1.2.3-rc.1")
    assert Helm().package_of("index.yaml") is None
    assert Terraform().package_of("modules/acme/vpc/aws/1.0.0.tar.gz") == ("acme/vpc/aws", "1.0.0")
    assert Terraform().package_of("modules/acme/vpc/aws/1.0.0/archive") == ("acme/vpc/aws", "1.0.0")
    assert Terraform().package_of("providers/acme/x/2.0.0/terraform-provider-x_2.0.0_linux_amd64.zip") == \
        ("acme/x", "2.0.0")
    assert Vagrant().package_of("boxes/acme/base/1.0.0/libvirt.box") == ("acme/base", "1.0.0")
