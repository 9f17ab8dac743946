"""Helm chart repositories end to end: the real helm 3.17 (tests/clients/helm.sh) and curl against
real depot processes; proxy upstreams are a second depot and a counting static tree."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import requests
import yaml

from depot_process import DepotProcess
from http_util import get_many
from upstream import start_upstream

HELM = Path(sys.executable).parent / "helm"
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "DEPOT_"))}


def run(argv: list[str], check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or CLEAN_ENV, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Helm:
    """helm with private config, cache and data homes."""

    def __init__(self, home: Path) -> None:
        assert HELM.exists(), f"helm is missing: VENV={HELM.parent.parent} bash tests/clients/helm.sh"
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = {**CLEAN_ENV, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(HELM), *args], check=check, env=self.env)

    def pull(self, ref: str, version: str, *extra: str) -> Path:
        out = self.home / f"pulled-{time.monotonic_ns()}"
        out.mkdir()
        self("pull", ref, "--version", version, "-d", str(out), *extra)
        files = [p for p in out.iterdir() if p.suffix == ".tgz"]
        assert len(files) == 1, files
        return files[0]


def make_chart(work: Path, name: str, version: str, app_version: str = "1.0.0") -> Path:
    """A real chart: `helm create` + `helm package`."""
    helm = Helm(work / "maker")
    src = work / "src" / f"{name}-{version}"
    src.mkdir(parents=True)
    helm("create", str(src / name))
    out = work / "charts"
    out.mkdir(exist_ok=True)
    helm("package", str(src / name), "--version", version, "--app-version", app_version, "-d", str(out))
    return out / f"{name}-{version}.tgz"


def make_signed_chart(work: Path, name: str, version: str) -> tuple[Path, Path]:
    """A chart packaged with `helm package --sign` (a throwaway GnuPG key) and the public keyring."""
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**CLEAN_ENV, "GNUPGHOME": str(gnupg)}
    run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Depot Test <test@depot.invalid>",
         "rsa2048", "sign", "never"], env=env)
    secring, pubring = work / "secring.gpg", work / "pubring.gpg"
    secring.write_bytes(subprocess.run(["gpg", "--batch", "--export-secret-keys"], env=env, capture_output=True,
                                       check=True, timeout=60).stdout)
    pubring.write_bytes(subprocess.run(["gpg", "--batch", "--export"], env=env, capture_output=True,
                                       check=True, timeout=60).stdout)
    helm = Helm(work / "signer")
    src = work / "signsrc"
    src.mkdir()
    helm("create", str(src / name))
    out = work / "signed"
    out.mkdir()
    helm("package", str(src / name), "--version", version, "-d", str(out), "--sign", "--key", "Depot Test",
         "--keyring", str(secring))
    return out / f"{name}-{version}.tgz", pubring


def publish(url: str, chart: Path, *auth: str) -> tuple[int, bytes]:
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *auth, "--data-binary", f"@{chart}", url],
                         capture_output=True, timeout=60)
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


def repositories(upstream_url: str) -> dict[str, Any]:
    return {
        "helm-local": {"format": "helm", "type": "hosted"},
        "helm-static": {"format": "helm", "type": "proxy", "upstream": upstream_url, "metadata_ttl": 1},
        "helm": {"format": "helm", "type": "group", "members": ["helm-local", "helm-static"],
                 "deploy_to": "helm-local"},
        "again": {"format": "helm", "type": "hosted", "allow_overwrite": True},
        "containers": {"format": "oci", "type": "hosted"},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("helm")
    charts = {(n, v): make_chart(work, n, v) for n, v in
              [("hello", "0.1.0"), ("hello", "0.2.0"), ("herd", "1.0.0"), ("remote", "1.0.0"),
               ("remote", "1.1.0"), ("relay", "2.0.0"), ("sealed", "1.0.0")]}
    static = start_upstream(work / "up")
    # a static chart repository whose index has absolute URLs (helm repo index --url)
    for key in (("remote", "1.0.0"), ("remote", "1.1.0"), ("herd", "1.0.0"), ("sealed", "1.0.0")):
        static.put(f"pkgs/{charts[key].name}", charts[key].read_bytes())
    index_dir = work / "index"
    index_dir.mkdir()
    for key in (("remote", "1.0.0"), ("remote", "1.1.0"), ("herd", "1.0.0"), ("sealed", "1.0.0")):
        shutil.copy(charts[key], index_dir)
    Helm(work / "indexer")("repo", "index", str(index_dir), "--url", f"{static.url}/pkgs")
    static.put("index.yaml", (index_dir / "index.yaml").read_bytes())
    depot = DepotProcess(work / "depot", repositories(static.url))
    yield SimpleNamespace(depot=depot, static=static, charts=charts, work=work)
    depot.stop()
    static.stop()


def x_cache_lines(depot: DepotProcess, since: int, needle: str) -> list[str]:
    return [line for line in depot.log()[since:].splitlines() if "depot.access" in line and needle in line]


# ---------------------------------------------------------------- hosted and group

def test_publish_with_curl_then_helm_from_hosted_and_group(env: SimpleNamespace, tmp_path: Path) -> None:
    chart = env.charts[("hello", "0.1.0")]
    code, body = publish(f"{env.depot.url}/helm/api/charts", chart)          # the group deploys to helm-local
    assert code == 201 and json.loads(body) == {"saved": True}
    assert publish(f"{env.depot.url}/helm-local/api/charts", env.charts[("hello", "0.2.0")])[0] == 201
    index = yaml.safe_load(requests.get(f"{env.depot.url}/helm-local/index.yaml", timeout=10).content)
    entry = next(v for v in index["entries"]["hello"] if v["version"] == "0.1.0")
    assert entry["digest"] == hashlib.sha256(chart.read_bytes()).hexdigest()
    assert entry["urls"] == ["charts/hello-0.1.0.tgz"] and entry["appVersion"] == "1.0.0"
    assert entry["apiVersion"] == "v2" and entry["name"] == "hello"
    for repo in ("helm-local", "helm"):
        helm = Helm(tmp_path / repo)
        helm("repo", "add", "dep", f"{env.depot.url}/{repo}")
        helm("repo", "update")
        found = json.loads(helm("search", "repo", "dep/hello", "--versions", "-o", "json").stdout)
        assert {(r["name"], r["version"]) for r in found} >= {("dep/hello", "0.1.0"), ("dep/hello", "0.2.0")}
        pulled = helm.pull("dep/hello", "0.1.0")
        assert pulled.read_bytes() == chart.read_bytes()
        rendered = helm("template", "rel", "dep/hello", "--version", "0.2.0").stdout
        assert "kind: Deployment" in rendered and "rel-hello" in rendered
    listing = requests.get(f"{env.depot.url}/helm-local/api/charts/hello", timeout=10).json()
    assert sorted(v["version"] for v in listing) == ["0.1.0", "0.2.0"]
    one = requests.get(f"{env.depot.url}/helm-local/api/charts/hello/0.1.0", timeout=10).json()
    assert one["digest"] == entry["digest"]


def test_group_index_merges_hosted_and_proxy(env: SimpleNamespace, tmp_path: Path) -> None:
    assert publish(f"{env.depot.url}/helm-local/api/charts", env.charts[("relay", "2.0.0")])[0] in (200, 201)
    helm = Helm(tmp_path / "h")
    helm("repo", "add", "grp", f"{env.depot.url}/helm")
    found = json.loads(helm("search", "repo", "grp/", "--versions", "-o", "json").stdout)
    names = {(r["name"], r["version"]) for r in found}
    assert {("grp/relay", "2.0.0"), ("grp/remote", "1.1.0"), ("grp/remote", "1.0.0")} <= names
    assert helm.pull("grp/remote", "1.0.0").read_bytes() == env.charts[("remote", "1.0.0")].read_bytes()
    response = requests.get(f"{env.depot.url}/helm/index.yaml", timeout=10)
    urls = [v["urls"][0] for vs in yaml.safe_load(response.content)["entries"].values() for v in vs]
    assert f"{env.depot.url}/helm/charts/remote-1.0.0.tgz" in urls            # proxy URLs: the group's mount
    assert "charts/relay-2.0.0.tgz" in urls                                   # hosted URLs stay relative
    assert response.headers["X-Cache"] in ("HIT", "MISS", "REVALIDATED")


def test_duplicate_version_is_refused_unless_overwrite_allowed(env: SimpleNamespace, tmp_path: Path) -> None:
    first = env.charts[("herd", "1.0.0")]
    other = make_chart(tmp_path, "herd", "1.0.0", app_version="9.9.9")       # same version, other bytes
    assert publish(f"{env.depot.url}/helm-local/api/charts", first)[0] == 201
    assert publish(f"{env.depot.url}/helm-local/api/charts", first)[0] == 201  # the same bytes again: fine
    code, body = publish(f"{env.depot.url}/helm-local/api/charts", other)
    assert code == 409 and "already exists" in json.loads(body)["error"]
    served = requests.get(f"{env.depot.url}/helm-local/charts/herd-1.0.0.tgz", timeout=10).content
    assert served == first.read_bytes()
    assert publish(f"{env.depot.url}/again/api/charts", first)[0] == 201
    assert publish(f"{env.depot.url}/again/api/charts", other)[0] == 201
    index = yaml.safe_load(requests.get(f"{env.depot.url}/again/index.yaml", timeout=10).content)
    assert [v["appVersion"] for v in index["entries"]["herd"]] == ["9.9.9"]
    assert requests.get(f"{env.depot.url}/again/charts/herd-1.0.0.tgz", timeout=10).content == other.read_bytes()


def test_delete_through_the_api_updates_the_index(env: SimpleNamespace, tmp_path: Path) -> None:
    chart = make_chart(tmp_path, "gone", "0.0.1")
    assert publish(f"{env.depot.url}/again/api/charts", chart)[0] == 201
    assert requests.delete(f"{env.depot.url}/again/api/charts/gone/0.0.1", timeout=10).status_code == 200
    index = yaml.safe_load(requests.get(f"{env.depot.url}/again/index.yaml", timeout=10).content)
    assert "gone" not in index["entries"]
    assert requests.get(f"{env.depot.url}/again/charts/gone-0.0.1.tgz", timeout=10).status_code == 404
    missing = requests.delete(f"{env.depot.url}/again/api/charts/gone/0.0.1", timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()
    assert requests.delete(f"{env.depot.url}/again/index.yaml", timeout=10).status_code == 405


def test_put_of_a_chart_file_updates_the_index(env: SimpleNamespace, tmp_path: Path) -> None:
    chart = make_chart(tmp_path, "putted", "0.3.0")
    assert requests.put(f"{env.depot.url}/again/charts/putted-9.9.9.tgz", data=chart.read_bytes(),
                        timeout=10).status_code == 400                      # the name must match Chart.yaml
    assert requests.put(f"{env.depot.url}/again/charts/putted-0.3.0.tgz", data=chart.read_bytes(),
                        timeout=10).status_code == 201
    helm = Helm(tmp_path / "h")
    helm("repo", "add", "again", f"{env.depot.url}/again")
    assert helm.pull("again/putted", "0.3.0").read_bytes() == chart.read_bytes()
    assert requests.delete(f"{env.depot.url}/again/charts/putted-0.3.0.tgz", timeout=10).status_code == 204
    index = yaml.safe_load(requests.get(f"{env.depot.url}/again/index.yaml", timeout=10).content)
    assert "putted" not in index["entries"]


def test_provenance_upload_and_helm_verify(env: SimpleNamespace, tmp_path: Path) -> None:
    chart, pubring = make_signed_chart(tmp_path, "signed", "1.0.0")
    prov = chart.with_name(chart.name + ".prov")
    out = subprocess.run(["curl", "-sS", "-w", "%{http_code}", "-F", f"chart=@{chart}", "-F", f"prov=@{prov}",
                          f"{env.depot.url}/helm-local/api/charts"], capture_output=True, timeout=60)
    assert out.stdout.endswith(b"201"), out.stdout
    served = requests.get(f"{env.depot.url}/helm-local/charts/signed-1.0.0.tgz.prov", timeout=10)
    assert served.status_code == 200 and served.content == prov.read_bytes()
    helm = Helm(tmp_path / "v")
    helm("repo", "add", "dep", f"{env.depot.url}/helm")
    pulled = helm.pull("dep/signed", "1.0.0", "--verify", "--keyring", str(pubring))
    assert pulled.read_bytes() == chart.read_bytes()
    # a provenance file for a chart of another name is refused
    bad = prov.read_bytes().replace(b"signed-1.0.0.tgz", b"other-1.0.0.tgz")
    assert requests.post(f"{env.depot.url}/helm-local/api/prov", data=bad, timeout=10).status_code == 201
    assert requests.get(f"{env.depot.url}/helm-local/charts/other-1.0.0.tgz.prov", timeout=10).status_code == 200
    refused = requests.post(f"{env.depot.url}/helm-local/api/prov", data=b"not a provenance file", timeout=10)
    assert refused.status_code == 400 and "provenance" in refused.json()["error"]


@pytest.mark.parametrize("body,why", [
    (b"not a gzip at all", "not a chart archive"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "not a chart archive"),
    ("no-chart-yaml", "no <chart>/Chart.yaml"),
    ("bad-version", "not a semantic version"),
])
def test_malformed_charts_are_refused_and_nothing_is_stored(env: SimpleNamespace, tmp_path: Path,
                                                            body: Any, why: str) -> None:
    import io
    import tarfile
    if isinstance(body, str):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            text = b"apiVersion: v2\nname: broken\nversion: one-point-oh\n" if body == "bad-version" else b"x"
            info = tarfile.TarInfo("broken/Chart.yaml" if body == "bad-version" else "broken/values.yaml")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        body = buf.getvalue()
    before = yaml.safe_load(requests.get(f"{env.depot.url}/helm-local/index.yaml", timeout=10).content)["entries"]
    response = requests.post(f"{env.depot.url}/helm-local/api/charts", data=body, timeout=10)
    assert response.status_code == 400 and why in response.json()["error"]
    put = requests.put(f"{env.depot.url}/helm-local/charts/broken-1.0.0.tgz", data=body, timeout=10)
    assert put.status_code == 400
    assert requests.get(f"{env.depot.url}/helm-local/charts/broken-1.0.0.tgz", timeout=10).status_code == 404
    after = yaml.safe_load(requests.get(f"{env.depot.url}/helm-local/index.yaml", timeout=10).content)["entries"]
    assert after == before and "broken" not in after
    assert requests.put(f"{env.depot.url}/helm-local/index.yaml", data=b"apiVersion: v1", timeout=10).status_code == 400


# ---------------------------------------------------------------- proxy

def test_proxy_of_a_static_repository_with_absolute_urls(env: SimpleNamespace, tmp_path: Path) -> None:
    helm = Helm(tmp_path / "h")
    helm("repo", "add", "st", f"{env.depot.url}/helm-static")
    helm("repo", "update")
    found = json.loads(helm("search", "repo", "st/remote", "--versions", "-o", "json").stdout)
    assert {r["version"] for r in found} == {"1.0.0", "1.1.0"}
    index = yaml.safe_load(requests.get(f"{env.depot.url}/helm-static/index.yaml", timeout=10).content)
    assert index["entries"]["remote"][0]["urls"][0].startswith(f"{env.depot.url}/helm-static/charts/")
    assert helm.pull("st/remote", "1.1.0").read_bytes() == env.charts[("remote", "1.1.0")].read_bytes()
    assert env.static.count("/pkgs/remote-1.1.0.tgz") == 1
    assert "kind: Service" in helm("template", "r", "st/remote", "--version", "1.1.0").stdout
    helm.pull("st/remote", "1.1.0")
    assert env.static.count("/pkgs/remote-1.1.0.tgz") == 1                      # the second pull is a hit


def test_proxy_verifies_charts_against_the_index_digest(env: SimpleNamespace, tmp_path: Path) -> None:
    url = f"{env.depot.url}/helm-static/charts/sealed-1.0.0.tgz"           # no other test asks for it
    good = env.charts[("sealed", "1.0.0")].read_bytes()
    env.static.put("pkgs/sealed-1.0.0.tgz", b"tampered bytes")
    try:
        assert not served_whole(url, b"tampered bytes")
        assert not served_whole(url, b"tampered bytes")                     # nothing was stored
    finally:
        env.static.put("pkgs/sealed-1.0.0.tgz", good)
    assert served_whole(url, good)
    assert requests.get(f"{env.depot.url}/helm-static/charts/nothere-1.0.0.tgz", timeout=10).status_code == 404


def served_whole(url: str, body: bytes) -> bool:
    """Whether a GET of `url` answers exactly `body` (a cut transfer is an error the client sees)."""
    try:
        response = requests.get(url, timeout=20)
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.content == body


def test_twenty_concurrent_clients_on_one_uncached_chart(env: SimpleNamespace) -> None:
    path = "/pkgs/herd-1.0.0.tgz"
    requests.get(f"{env.depot.url}/helm-static/index.yaml", timeout=10)
    env.static.mode(path, "slow", headers_delay=1.5, chunk=512, delay=0.02)
    try:
        results = get_many(f"{env.depot.url}/helm-static/charts/herd-1.0.0.tgz", 20)
    finally:
        env.static.mode(path, "normal")
    assert {r.status for r in results} == {200}
    assert {r.body for r in results} == {env.charts[("herd", "1.0.0")].read_bytes()}
    assert env.static.count(path) == 1


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(env: SimpleNamespace, depot_factory: Any,
                                                                 tmp_path: Path) -> None:
    upstream = depot_factory({"charts": {"format": "helm", "type": "hosted"}}, name="up")
    assert publish(f"{upstream.url}/charts/api/charts", env.charts[("relay", "2.0.0")])[0] == 201
    front = depot_factory({"remote": {"format": "helm", "type": "proxy", "upstream": f"{upstream.url}/charts",
                                      "metadata_ttl": 1},
                           "grp": {"format": "helm", "type": "group", "members": ["remote"]}}, name="front")
    for round_ in range(2):
        helm = Helm(tmp_path / f"h{round_}")
        helm("repo", "add", "fr", f"{front.url}/remote")
        since = len(front.log())
        helm("repo", "update")
        assert helm.pull("fr/relay", "2.0.0").read_bytes() == env.charts[("relay", "2.0.0")].read_bytes()
        if round_ == 1:
            lines = x_cache_lines(front, since, "/remote/charts/relay-2.0.0.tgz")
            assert lines and all('"HIT"' in line for line in lines), lines
    upstream.stop()
    time.sleep(1.2)                                                          # past metadata_ttl
    helm = Helm(tmp_path / "down")
    helm("repo", "add", "fr", f"{front.url}/remote")
    helm("repo", "add", "gr", f"{front.url}/grp")
    helm("repo", "update")
    assert helm.pull("fr/relay", "2.0.0").read_bytes() == env.charts[("relay", "2.0.0")].read_bytes()
    assert helm.pull("gr/relay", "2.0.0").read_bytes() == env.charts[("relay", "2.0.0")].read_bytes()
    assert "kind: Deployment" in helm("template", "x", "fr/relay", "--version", "2.0.0").stdout
    stale = requests.get(f"{front.url}/remote/index.yaml", timeout=20)
    assert stale.status_code == 200 and stale.headers["X-Cache"] == "STALE"


# ---------------------------------------------------------------- access control, OCI

def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(env: SimpleNamespace,
                                                                           depot_factory: Any) -> None:
    secure = depot_factory({"charts": {"format": "helm", "type": "hosted"}}, secure=True)
    chart = env.charts[("hello", "0.1.0")]
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", os.devnull, "--data-binary", f"@{chart}",
                          f"{secure.url}/charts/api/charts"], capture_output=True, text=True, timeout=60)
    assert " 401" in out.stdout.splitlines()[0] and "www-authenticate: basic" in out.stdout.lower()
    read = secure.run_cli("token", "create", "--repo", "charts", "--perm", "read").stdout.strip().splitlines()[-1]
    assert publish(f"{secure.url}/charts/api/charts", chart, "-u", f"reader:{read}")[0] == 403
    assert publish(f"{secure.url}/charts/api/charts", chart, "-u", ":".join(ADMIN))[0] == 201
    index = requests.get(f"{secure.url}/charts/index.yaml", auth=ADMIN, timeout=10)
    assert "hello" in yaml.safe_load(index.content)["entries"]


def test_helm_push_oci_still_works(env: SimpleNamespace, tmp_path: Path) -> None:
    helm = Helm(tmp_path / "oci")
    chart = env.charts[("hello", "0.2.0")]
    host = env.depot.url.removeprefix("http://")
    helm("push", str(chart), f"oci://{host}/containers/charts", "--plain-http")
    pulled = helm.pull(f"oci://{host}/containers/charts/hello", "0.2.0", "--plain-http")
    assert pulled.read_bytes() == chart.read_bytes()
    assert "name: hello" in helm("show", "chart", f"oci://{host}/containers/charts/hello", "--version", "0.2.0",
                                 "--plain-http").stdout


def test_a_malformed_upstream_index_is_a_clear_error_and_nothing_is_stored(upstream: Any, depot_factory: Any,
                                                                          tmp_path: Path) -> None:
    upstream.put("index.yaml", b"apiVersion: v1\nentries: [this, is, not, a, mapping]\n")
    depot = depot_factory({"bad": {"format": "helm", "type": "proxy", "upstream": upstream.url}})
    response = requests.get(f"{depot.url}/bad/index.yaml", timeout=20)
    assert response.status_code == 502 and "error" in response.json()
    failed = Helm(tmp_path / "h")("repo", "add", "bad", f"{depot.url}/bad", check=False)
    assert failed.returncode != 0
    upstream.put("index.yaml", (b"apiVersion: v1\nentries:\n  ok:\n  - name: ok\n    version: 1.10\n"
                                b"    urls: [ok-1.10.tgz]\n    created: 2020-01-01T00:00:00Z\n"))
    fixed = yaml.safe_load(requests.get(f"{depot.url}/bad/index.yaml", timeout=20).content)
    assert fixed["entries"]["ok"][0]["version"] == "1.10"                  # not the float 1.1
    assert fixed["entries"]["ok"][0]["urls"] == [f"{depot.url}/bad/charts/ok-1.10.tgz", f"{upstream.url}/ok-1.10.tgz"]


def test_warm_from_chart_lock_then_hits(env: SimpleNamespace, depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory({"warmed": {"format": "helm", "type": "proxy", "upstream": env.static.url}}, name="warm")
    lock = tmp_path / "Chart.lock"
    lock.write_text(yaml.safe_dump({"dependencies": [
        {"name": "remote", "version": "1.1.0", "repository": env.static.url},
        {"name": "elsewhere", "version": "1.0.0", "repository": "oci://registry.example/charts"}],
        "digest": "sha256:0", "generated": "2026-01-01T00:00:00Z"}))
    warmed = depot.run_cli("warm", "warmed", str(lock), "--url", depot.url, check=False)
    assert warmed.returncode == 0 and "1 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    assert "elsewhere" in warmed.stdout + warmed.stderr                          # an OCI dependency is skipped
    hit = requests.get(f"{depot.url}/warmed/charts/remote-1.1.0.tgz", timeout=10)
    assert hit.headers["X-Cache"] == "HIT" and hit.content == env.charts[("remote", "1.1.0")].read_bytes()
