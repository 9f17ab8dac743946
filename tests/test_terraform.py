"""Terraform end to end: the real terraform CLI (1.11 on the image, tests/clients/terraform.sh) against
real depot processes served over TLS from a CA made here; upstreams are a second depot (and a
counting static tree for the single-flight check). Nothing leaves 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import requests

from depot_process import DepotProcess
from http_util import get_many

BIN = Path(sys.executable).parent
TERRAFORM = BIN / "terraform"
PROVIDER_BINARY = BIN / "terraform-provider-null"
PROVIDER_VERSION = "2.1.2"
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
# the provider hostname the mirror serves: terraform cannot put a host:port in a mirror URL path,
# and with a network_mirror it never contacts that host (the second depot is the mirror's upstream)
ORIGIN = "registry.terraform.io"


# ---------------------------------------------------------------- fixtures

def make_tls(work: Path) -> SimpleNamespace:
    """A CA and a server certificate for localhost and 127.0.0.1, signed by it."""
    ca_key, ca, key, csr, cert = (work / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=depot test CA", "-days", "2",
            "-keyout", str(ca_key), "-out", str(ca), "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = work / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return SimpleNamespace(ca=ca, cert=cert, key=key,
                           extra={"tls": {"cert": str(cert), "key": str(key)}, "upstream": {"ca_file": str(ca)}})


def module_archive(version: str, kind: str = "tar.gz") -> bytes:
    main = (f'variable "greeting" {{\n  default = "hi"\n}}\n'
            f'output "message" {{\n  value = "module {version} says ${{var.greeting}}"\n}}\n').encode()
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("main.tf", main)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("main.tf")
            info.size = len(main)
            tar.addfile(info, io.BytesIO(main))
    return buf.getvalue()


def provider_zip(work: Path) -> Path:
    """The real terraform-provider-null binary as a release zip, with a LICENSE.txt as HashiCorp's
    zips have. The license text is chosen so that its sha256 sorts after the binary's while its
    name sorts first: an h1: hash must order the files by name, not by their lines."""
    assert PROVIDER_BINARY.exists(), f"missing: VENV={BIN.parent} bash tests/clients/terraform.sh"
    binary = PROVIDER_BINARY.read_bytes()
    license_text = next(text for text in (f"MPL-2.0 ({n})\n".encode() for n in range(100))
                        if hashlib.sha256(text).hexdigest() > hashlib.sha256(binary).hexdigest())
    path = work / f"terraform-provider-null_{PROVIDER_VERSION}_linux_amd64.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        info = zipfile.ZipInfo(f"terraform-provider-null_v{PROVIDER_VERSION}_x4")
        info.external_attr = 0o755 << 16
        archive.writestr(info, binary, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("LICENSE.txt", license_text)
    return path


def locked_hashes(tf_dir: Path) -> list[str]:
    """The hashes terraform recorded in .terraform.lock.hcl (its own h1: of the unpacked package)."""
    import re
    return re.findall(r'"((?:h1|zh):[^"]+)"', (tf_dir / ".terraform.lock.hcl").read_text())


def repositories() -> dict[str, Any]:
    return {"tf-local": {"format": "terraform", "type": "hosted"},
            "tf": {"format": "terraform", "type": "group", "members": ["tf-local"], "deploy_to": "tf-local",
                   "options": {"root": True}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    assert TERRAFORM.exists(), f"terraform is missing: VENV={BIN.parent} bash tests/clients/terraform.sh"
    work = tmp_path_factory.mktemp("terraform")
    tls = make_tls(work)
    depot = DepotProcess(work / "depot", repositories(), extra=tls.extra)
    host = f"127.0.0.1:{depot.port}"            # a module hostname needs a dot: localhost is refused
    session = requests.Session()
    session.trust_env = False          # REQUESTS_CA_BUNDLE of the machine would override verify
    session.verify = str(tls.ca)
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        put = session.put(f"https://{host}/tf/v1/modules/depot/hello/null/{version}",
                          data=module_archive(version, "zip" if version == "1.2.0" else "tar.gz"), timeout=30)
        assert put.status_code == 201, put.text
    zip_path = provider_zip(work)
    base = f"https://{host}/tf-local/v1/providers/depot/null/{PROVIDER_VERSION}"
    assert session.put(f"{base}/{zip_path.name}", data=zip_path.read_bytes(), timeout=60).status_code == 201
    sums = f"{hashlib.sha256(zip_path.read_bytes()).hexdigest()}  {zip_path.name}\n".encode()
    assert session.put(f"{base}/terraform-provider-null_{PROVIDER_VERSION}_SHA256SUMS", data=sums,
                       timeout=30).status_code == 201
    yield SimpleNamespace(depot=depot, tls=tls, host=host, session=session, zip=zip_path, work=work)
    depot.stop()


class Terraform:
    """terraform in a fresh working directory, with its own CLI config and the test CA."""

    def __init__(self, tmp: Path, ca: Path, mirror: str | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.dir = tmp
        cli = tmp / "cli.tfrc"
        cli.write_text(f'provider_installation {{\n  network_mirror {{\n    url = "{mirror}"\n  }}\n}}\n'
                       if mirror else "")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "DEPOT_", "SSL_CERT"))}
        self.env.update({"TF_CLI_CONFIG_FILE": str(cli), "SSL_CERT_FILE": str(ca), "CHECKPOINT_DISABLE": "1",
                         "TF_IN_AUTOMATION": "1", "HOME": str(tmp)})

    def write(self, text: str) -> None:
        (self.dir / "main.tf").write_text(text)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(TERRAFORM), *args], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"terraform {args} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def module_versions(self) -> dict[str, str]:
        doc = json.loads((self.dir / ".terraform/modules/modules.json").read_text())
        return {m["Key"]: m.get("Version", "") for m in doc["Modules"] if m["Key"]}


def module_config(host: str) -> str:
    return (f'module "hello" {{\n  source  = "{host}/depot/hello/null"\n  version = "~> 1.0"\n}}\n'
            f'output "msg" {{\n  value = module.hello.message\n}}\n')


def provider_config(host: str) -> str:
    return (f'terraform {{\n  required_providers {{\n    null = {{\n      source  = "{host}/depot/null"\n'
            f'      version = "{PROVIDER_VERSION}"\n    }}\n  }}\n}}\n')


def access_lines(depot: DepotProcess, since: int, needle: str) -> list[str]:
    return [line for line in depot.log()[since:].splitlines() if "depot.access" in line and needle in line]


# ---------------------------------------------------------------- discovery and modules

def test_service_discovery_at_the_root(env: SimpleNamespace) -> None:
    doc = env.session.get(f"https://{env.host}/.well-known/terraform.json", timeout=10).json()
    assert doc == {"modules.v1": f"https://{env.host}/tf/v1/modules/",
                   "providers.v1": f"https://{env.host}/tf/v1/providers/"}


def test_one_registry_per_host_name(env: SimpleNamespace, depot_factory: Any) -> None:
    depot = depot_factory({"main": {"format": "terraform", "type": "hosted", "options": {"root": True}},
                           "team": {"format": "terraform", "type": "hosted", "options": {"hosts": ["team.example"]}}},
                          extra=env.tls.extra, name="hosts")
    url = f"https://127.0.0.1:{depot.port}/.well-known/terraform.json"
    assert env.session.get(url, timeout=10).json()["modules.v1"] == f"https://127.0.0.1:{depot.port}/main/v1/modules/"
    team = env.session.get(url, headers={"Host": f"team.example:{depot.port}"}, timeout=10).json()
    assert team["providers.v1"] == f"https://team.example:{depot.port}/team/v1/providers/"
    scoped = env.session.get(f"https://127.0.0.1:{depot.port}/main/.well-known/terraform.json",
                             headers={"Host": f"team.example:{depot.port}"}, timeout=10).json()
    assert scoped["modules.v1"] == f"https://team.example:{depot.port}/main/v1/modules/"


def test_terraform_init_resolves_a_published_module(env: SimpleNamespace, tmp_path: Path) -> None:
    tf = Terraform(tmp_path, env.tls.ca)
    tf.write(module_config(env.host))
    tf("init", "-input=false", "-no-color")
    assert tf.module_versions() == {"hello": "1.2.0"}                      # ~> 1.0: not 2.0.0
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    assert json.loads(tf("output", "-json").stdout)["msg"]["value"] == "module 1.2.0 says hi"
    versions = env.session.get(f"https://{env.host}/tf/v1/modules/depot/hello/null/versions", timeout=10).json()
    assert [v["version"] for v in versions["modules"][0]["versions"]] == ["2.0.0", "1.2.0", "1.0.0"]


def readme_host_block() -> str:
    """The CLI configuration the README's Terraform section documents for a host name alias."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Terraform modules"):]
    start = section.index('host "depot.internal" {')
    return section[start:section.index("\n```", start)] + "\n"


def test_readme_alias_gives_a_dotless_host_a_registry_name(env: SimpleNamespace, tmp_path: Path) -> None:
    """terraform refuses `localhost:PORT/…` sources; the README's `host` block alias works offline."""
    port = env.host.rsplit(":", 1)[1]
    refused = Terraform(tmp_path / "localhost", env.tls.ca)
    refused.write(module_config(f"localhost:{port}"))
    failed = refused("init", "-input=false", "-no-color", check=False)
    assert failed.returncode != 0 and "must contain at least one dot" in failed.stderr.replace("\n", " ")
    tf = Terraform(tmp_path / "alias", env.tls.ca)
    (tf.dir / "cli.tfrc").write_text(readme_host_block().replace("https://localhost:8443/terraform/",
                                                                 f"https://localhost:{port}/tf/"))
    tf.write(module_config("depot.internal") + provider_config("depot.internal"))
    out = tf("init", "-input=false", "-no-color").stdout
    assert "Downloading depot.internal/depot/hello/null 1.2.0" in out, out
    assert f"Installed depot.internal/depot/null v{PROVIDER_VERSION}" in out, out


def test_module_versions_are_immutable_and_archives_validated(env: SimpleNamespace) -> None:
    url = f"https://{env.host}/tf-local/v1/modules/depot/hello/null/1.0.0"
    again = env.session.put(url, data=module_archive("1.0.0-other"), timeout=10)
    assert again.status_code == 409 and again.json()["errors"]
    assert env.session.put(url, data=module_archive("1.0.0", "zip"), timeout=10).status_code == 409
    for body, why in [(b"plain text", "tar.gz or a .zip"), (b"\x1f\x8bnot really", "not a valid tar.gz"),
                      (module_archive("x", "zip").replace(b"main.tf", b"main.md"), "no .tf")]:
        bad = env.session.put(f"https://{env.host}/tf-local/v1/modules/depot/bad/null/1.0.0", data=body, timeout=10)
        assert bad.status_code == 400 and why in bad.json()["errors"][0], bad.text
    assert env.session.get(f"https://{env.host}/tf-local/v1/modules/depot/bad/null/versions",
                           timeout=10).status_code == 404


def test_module_proxy_in_front_of_a_second_depot(env: SimpleNamespace, depot_factory: Any, tmp_path: Path) -> None:
    front = depot_factory({"tf-remote": {"format": "terraform", "type": "proxy", "upstream": f"https://{env.host}/",
                                         "metadata_ttl": 1, "options": {"root": True}}},
                          extra=env.tls.extra, name="front-modules")
    host = f"127.0.0.1:{front.port}"
    for round_ in range(2):
        tf = Terraform(tmp_path / f"r{round_}", env.tls.ca)
        tf.write(module_config(host))
        since = len(front.log())
        tf("init", "-input=false", "-no-color")
        assert tf.module_versions() == {"hello": "1.2.0"}
        if round_ == 1:
            lines = access_lines(front, since, "/tf-remote/")
            archive = [line for line in lines if "/archive" in line]
            assert archive and all(line.endswith('"HIT"') for line in archive), lines
    download = env.session.get(f"https://{host}/tf-remote/v1/modules/depot/hello/null/1.2.0/download", timeout=10)
    assert download.status_code == 204
    assert download.headers["X-Terraform-Get"].startswith(f"https://{host}/tf-remote/v1/modules/")
    env.depot.stop()
    try:
        time.sleep(1.2)
        tf = Terraform(tmp_path / "down", env.tls.ca)
        tf.write(module_config(host))
        tf("init", "-input=false", "-no-color")
        assert tf.module_versions() == {"hello": "1.2.0"}
    finally:
        env.depot.start()


def test_proxy_caches_github_sources_and_passes_other_git_sources_through(env: SimpleNamespace, upstream: Any,
                                                                          depot_factory: Any, tmp_path: Path) -> None:
    # the upstream plays the public registry: its download answers are git sources, as for most modules
    upstream.put(".well-known/terraform.json", json.dumps({"modules.v1": "/v1/modules/"}).encode())
    for name in ("vpc", "other"):
        upstream.put(f"v1/modules/acme/{name}/aws/versions",
                     json.dumps({"modules": [{"versions": [{"version": "5.0.0"}]}]}).encode())
    upstream.mode("/v1/modules/acme/vpc/aws/5.0.0/download", "status", status=204,
                  headers={"X-Terraform-Get": "git::https://github.com/acme/terraform-aws-vpc?ref=v5.0.0"})
    upstream.mode("/v1/modules/acme/other/aws/5.0.0/download", "status", status=204,
                  headers={"X-Terraform-Get": "git::https://git.example/acme/other.git?ref=v5.0.0"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:                     # GitHub's tarball of a tag
        main = b'output "message" {\n  value = "vpc from github"\n}\n'
        info = tarfile.TarInfo("terraform-aws-vpc-5.0.0/main.tf")
        info.size = len(main)
        tar.addfile(info, io.BytesIO(main))
    upstream.put("gh/acme/terraform-aws-vpc/tar.gz/v5.0.0", buf.getvalue())
    front = depot_factory({"tf-remote": {"format": "terraform", "type": "proxy", "upstream": upstream.url + "/",
                                         "options": {"root": True, "github_archive_url":
                                                     upstream.url + "/gh/{owner}/{repo}/tar.gz/{ref}"}}},
                          extra=env.tls.extra, name="front-github")
    host = f"127.0.0.1:{front.port}"
    for round_ in range(2):
        tf = Terraform(tmp_path / f"r{round_}", env.tls.ca)
        tf.write(f'module "vpc" {{\n  source  = "{host}/acme/vpc/aws"\n  version = "5.0.0"\n}}\n'
                 'output "msg" {\n  value = module.vpc.message\n}\n')
        tf("init", "-input=false", "-no-color")
        tf("apply", "-auto-approve", "-input=false", "-no-color")
        assert json.loads(tf("output", "-json").stdout)["msg"]["value"] == "vpc from github"
    assert upstream.count("/gh/acme/terraform-aws-vpc/tar.gz/v5.0.0") == 1
    other = env.session.get(f"https://{host}/tf-remote/v1/modules/acme/other/aws/5.0.0/download", timeout=10)
    assert other.status_code == 204
    assert other.headers["X-Terraform-Get"] == "git::https://git.example/acme/other.git?ref=v5.0.0"
    assert "cannot cache" in other.headers["X-Depot-Note"]


# ---------------------------------------------------------------- providers

def test_terraform_init_installs_and_verifies_a_hosted_provider(env: SimpleNamespace, tmp_path: Path) -> None:
    key = env.session.get(f"https://{env.host}/tf-local/signing-key.asc", timeout=30)
    assert key.status_code == 200 and "BEGIN PGP PUBLIC KEY BLOCK" in key.text
    tf = Terraform(tmp_path, env.tls.ca)
    tf.write(provider_config(env.host))
    out = tf("init", "-input=false", "-no-color").stdout
    assert f"Installed {env.host}/depot/null v{PROVIDER_VERSION}" in out
    assert f"key ID {key.headers['X-Key-Id']}" in out, out                  # verified with depot's key
    installed = list((tmp_path / ".terraform/providers").rglob("terraform-provider-null_*"))
    assert installed and installed[0].read_bytes() == PROVIDER_BINARY.read_bytes()
    lock = (tmp_path / ".terraform.lock.hcl").read_text()
    assert f"zh:{hashlib.sha256(env.zip.read_bytes()).hexdigest()}" in lock


def test_provider_registry_proxy_keeps_the_upstream_signature(env: SimpleNamespace, depot_factory: Any,
                                                              tmp_path: Path) -> None:
    front = depot_factory({"tf-remote": {"format": "terraform", "type": "proxy", "upstream": f"https://{env.host}/",
                                         "options": {"root": True}}}, extra=env.tls.extra, name="front-providers")
    host = f"127.0.0.1:{front.port}"
    key_id = env.session.get(f"https://{env.host}/tf-local/signing-key.asc", timeout=30).headers["X-Key-Id"]
    for round_ in range(2):
        tf = Terraform(tmp_path / f"r{round_}", env.tls.ca)
        tf.write(provider_config(host))
        since = len(front.log())
        out = tf("init", "-input=false", "-no-color").stdout
        assert f"Installed {host}/depot/null v{PROVIDER_VERSION}" in out and f"key ID {key_id}" in out, out
        if round_ == 1:
            files = [line for line in access_lines(front, since, "/tf-remote/") if ".zip" in line or "SHA256SUMS" in line]
            assert any(".zip" in line for line in files) and any("SHA256SUMS.sig" in line for line in files)
            assert all(line.endswith('"HIT"') for line in files), files
    download = env.session.get(f"https://{host}/tf-remote/v1/providers/depot/null/{PROVIDER_VERSION}/download/linux/amd64",
                               timeout=10).json()
    assert download["download_url"].startswith(f"https://{host}/tf-remote/")
    assert download["signing_keys"]["gpg_public_keys"][0]["key_id"] == key_id
    upstream_sig = env.session.get(f"https://{env.host}/tf/v1/providers/depot/null/{PROVIDER_VERSION}/SHA256SUMS.sig",
                                   timeout=10)
    assert upstream_sig.status_code == 200 and len(upstream_sig.content) > 100


def test_tampered_sums_and_bad_packages_are_refused(env: SimpleNamespace) -> None:
    base = f"https://{env.host}/tf-local/v1/providers/depot/other/1.0.0"
    not_zip = env.session.put(f"{base}/terraform-provider-other_1.0.0_linux_amd64.zip", data=b"nope", timeout=10)
    assert not_zip.status_code == 400 and "zip" in not_zip.json()["errors"][0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("README.md", "no binary")
    empty = env.session.put(f"{base}/terraform-provider-other_1.0.0_linux_amd64.zip", data=buf.getvalue(), timeout=10)
    assert empty.status_code == 400 and "executable" in empty.json()["errors"][0]
    sums = env.session.put(f"{base}/terraform-provider-other_1.0.0_SHA256SUMS",
                           data=b"0" * 64 + b"  terraform-provider-other_1.0.0_linux_amd64.zip\n", timeout=10)
    assert sums.status_code == 400 and "not a published package" in sums.json()["errors"][0]
    assert env.session.get(f"https://{env.host}/tf-local/v1/providers/depot/other/versions",
                           timeout=10).status_code == 404


def test_rotated_key_signs_every_version(env: SimpleNamespace, tmp_path: Path) -> None:
    before = env.session.get(f"https://{env.host}/tf-local/signing-key.asc", timeout=30).headers["X-Key-Id"]
    rotated = env.session.post(f"https://{env.host}/tf-local/signing-key/rotate", timeout=60)
    assert rotated.status_code == 201 and rotated.json()["key_id"] != before
    tf = Terraform(tmp_path, env.tls.ca)
    tf.write(provider_config(env.host))
    out = tf("init", "-input=false", "-no-color").stdout
    assert f"key ID {rotated.json()['key_id']}" in out


def test_concurrent_first_uses_agree_on_one_key(depot_factory: Any) -> None:
    depot = depot_factory({"tf-local": {"format": "terraform", "type": "hosted"}}, workers=2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{depot.url}/tf-local/signing-key.asc", timeout=120),
                                range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers["X-Key-Id"] for a in answers}) == 1 and len({a.text for a in answers}) == 1
    assert not list(depot.data_dir.rglob("*.asc")) and not list(depot.data_dir.rglob("*.gpg"))  # in the store only


def test_network_mirror_proxy_in_front_of_a_second_depot(env: SimpleNamespace, depot_factory: Any,
                                                          tmp_path: Path) -> None:
    front = depot_factory({"tf-mirror": {"format": "terraform", "type": "proxy", "upstream": f"https://{env.host}/",
                                         "metadata_ttl": 1, "options": {"hostname": ORIGIN}}},
                          extra=env.tls.extra, name="front-mirror")
    mirror = f"https://127.0.0.1:{front.port}/tf-mirror/"
    for round_ in range(2):
        tf = Terraform(tmp_path / f"r{round_}", env.tls.ca, mirror=mirror)
        tf.write(provider_config(ORIGIN))
        since = len(front.log())
        out = tf("init", "-input=false", "-no-color").stdout
        assert f"Installed depot/null v{PROVIDER_VERSION}" in out     # registry.terraform.io is implied
        if round_ == 1:          # documents past metadata_ttl may be revalidated (304); nothing is fetched again
            lines = access_lines(front, since, "/tf-mirror/")
            assert lines and all(line.endswith(('"HIT"', '"REVALIDATED"')) for line in lines), "\n".join(lines)
            assert all(line.endswith('"HIT"') for line in lines if ".zip" in line), lines
    # the mirror lists the h1: hash terraform computes itself (the one it records in the lock
    # file), beside the zip's zh:, once it holds the zip
    listing = env.session.get(f"{mirror}{ORIGIN}/depot/null/{PROVIDER_VERSION}.json", timeout=10).json()
    digest = hashlib.sha256(env.zip.read_bytes()).hexdigest()
    recorded = [h for h in locked_hashes(tmp_path / "r0") if h.startswith("h1:")]
    assert len(recorded) == 1
    assert listing["archives"]["linux_amd64"]["hashes"] == [recorded[0], f"zh:{digest}"]
    # `terraform providers lock` through the mirror: its package checked against those hashes
    tf = Terraform(tmp_path / "lock", env.tls.ca)
    tf.write(provider_config(ORIGIN))
    tf("providers", "lock", f"-net-mirror={mirror}", "-platform=linux_amd64", "-no-color")
    assert recorded[0] in locked_hashes(tmp_path / "lock")
    assert env.session.get(f"{mirror}example.com/depot/null/index.json", timeout=10).status_code == 404
    env.depot.stop()
    try:
        time.sleep(1.2)
        tf = Terraform(tmp_path / "down", env.tls.ca, mirror=mirror)
        tf.write(provider_config(ORIGIN))
        assert "Installed" in tf("init", "-input=false", "-no-color").stdout
    finally:
        env.depot.start()


def test_mirror_h1_all_lists_the_h1_of_every_platform_before_any_download(env: SimpleNamespace,
                                                                          depot_factory: Any, tmp_path: Path) -> None:
    front = depot_factory({"tf-mirror": {"format": "terraform", "type": "proxy", "upstream": f"https://{env.host}/",
                                         "options": {"hostname": ORIGIN, "mirror_h1_all": True}}},
                          extra=env.tls.extra, name="front-h1")
    mirror = f"https://127.0.0.1:{front.port}/tf-mirror/"
    since = len(env.depot.log())
    listing = env.session.get(f"{mirror}{ORIGIN}/depot/null/{PROVIDER_VERSION}.json", timeout=60).json()
    hashes = listing["archives"]["linux_amd64"]["hashes"]
    assert [h[:3] for h in hashes] == ["h1:", "zh:"], hashes
    tf = Terraform(tmp_path / "init", env.tls.ca, mirror=mirror)
    tf.write(provider_config(ORIGIN))
    assert f"Installed depot/null v{PROVIDER_VERSION}" in tf("init", "-input=false", "-no-color").stdout
    assert hashes[0] in locked_hashes(tmp_path / "init")            # terraform's own h1: of the package
    assert len(access_lines(env.depot, since, ".zip ")) == 1         # the zip came from the upstream once


def test_warm_a_mirror_from_the_lock_file_then_init_without_the_upstream(env: SimpleNamespace, depot_factory: Any,
                                                                         tmp_path: Path) -> None:
    front = depot_factory({"tf-mirror": {"format": "terraform", "type": "proxy", "upstream": f"https://{env.host}/",
                                         "options": {"hostname": ORIGIN}}}, extra=env.tls.extra, name="front-warm")
    lock = tmp_path / ".terraform.lock.hcl"
    lock.write_text(f'provider "{ORIGIN}/depot/null" {{\n  version     = "{PROVIDER_VERSION}"\n'
                    f'  constraints = "{PROVIDER_VERSION}"\n  hashes = []\n}}\n'
                    'provider "bogus" {\n  version = "1.0.0"\n}\n')
    warmed = front.run_cli("warm", "tf-mirror", str(lock), "--url", f"https://127.0.0.1:{front.port}", "--insecure",
                           check=False)
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    assert "2 fetched" in warmed.stdout and "bogus" in warmed.stdout + warmed.stderr
    env.depot.stop()
    try:
        tf = Terraform(tmp_path / "farm", env.tls.ca, mirror=f"https://127.0.0.1:{front.port}/tf-mirror/")
        tf.write(provider_config(ORIGIN))
        since = len(front.log())
        assert f"Installed depot/null v{PROVIDER_VERSION}" in tf("init", "-input=false", "-no-color").stdout
        zips = access_lines(front, since, ".zip")
        assert zips and all(line.endswith('"HIT"') for line in zips), zips
    finally:
        env.depot.start()


def test_twenty_concurrent_clients_on_one_uncached_provider_zip(upstream: Any, depot_factory: Any) -> None:
    payload = os.urandom(300_000)
    digest = hashlib.sha256(payload).hexdigest()
    upstream.put(".well-known/terraform.json", json.dumps({"providers.v1": "/v1/providers/"}).encode())
    upstream.put("v1/providers/depot/herd/versions", json.dumps({"versions": [
        {"version": "1.0.0", "protocols": ["5.0"], "platforms": [{"os": "linux", "arch": "amd64"}]}]}).encode())
    upstream.put("v1/providers/depot/herd/1.0.0/download/linux/amd64", json.dumps({
        "protocols": ["5.0"], "os": "linux", "arch": "amd64", "filename": "herd.zip",
        "download_url": "/files/herd.zip", "shasum": digest, "shasums_url": "/files/SUMS",
        "shasums_signature_url": "/files/SUMS.sig", "signing_keys": {"gpg_public_keys": []}}).encode())
    upstream.put("files/herd.zip", payload)
    depot = depot_factory({"m": {"format": "terraform", "type": "proxy", "upstream": upstream.url + "/",
                                 "options": {"hostname": "registry.example"}}})
    version = requests.get(f"{depot.url}/m/registry.example/depot/herd/1.0.0.json", timeout=10).json()
    url = version["archives"]["linux_amd64"]["url"]
    upstream.mode("/files/herd.zip", "slow", headers_delay=1.5, chunk=4096, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode("/files/herd.zip", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {payload}
    assert upstream.count("/files/herd.zip") == 1
    assert requests.get(f"{depot.url}/m/registry.example/depot/herd/index.json", timeout=10).json() == \
        {"versions": {"1.0.0": {}}}


# ---------------------------------------------------------------- access control

def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(env: SimpleNamespace,
                                                                           depot_factory: Any) -> None:
    secure = depot_factory({"tf-local": {"format": "terraform", "type": "hosted"}}, secure=True,
                           extra=env.tls.extra, name="secure")
    url = f"https://127.0.0.1:{secure.port}/tf-local/v1/modules/depot/hello/null/1.0.0"
    anonymous = env.session.put(url, data=module_archive("1.0.0"), timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    read = secure.run_cli("token", "create", "--repo", "tf-local", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = env.session.put(url, data=module_archive("1.0.0"), headers={"Authorization": f"Bearer {read}"},
                             timeout=10)
    assert denied.status_code == 403
    assert env.session.put(url, data=module_archive("1.0.0"), auth=ADMIN, timeout=10).status_code == 201
    assert env.session.get(url.rsplit("/", 1)[0] + "/versions", auth=ADMIN, timeout=10).status_code == 200
