"""Forward-proxy mode: clients that only know HTTPS_PROXY and depot's CA get cached answers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from depot_process import DepotProcess, free_port
from npm_fixtures import NpmCli, installed_version, make_package, new_project, npm_path
from pypi_fixtures import build_dist


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "up-cert.pem", directory / "up-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-days", "1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def split_response(raw: bytes) -> tuple[bytes, bytes]:
    """Headers of the final response (after the proxy's CONNECT answer) and the body."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    while rest.startswith(b"HTTP/"):
        head, _, rest = rest.partition(b"\r\n\r\n")
    return head, rest


@pytest.fixture
def https_upstream(depot_factory, tmp_path):
    """A TLS depot with a hosted generic repository: the 'public' upstream in these tests."""
    cert, key = make_cert(tmp_path)
    up = depot_factory({"files": {"format": "generic", "type": "hosted", "anonymous_read": True},
                        "pypi-up": {"format": "pypi", "type": "hosted", "anonymous_read": True},
                        "npm-up": {"format": "npm", "type": "hosted", "anonymous_read": True}},
                       extra={"tls": {"cert": str(cert), "key": str(key)}}, name="https-up")
    return up, cert


def login_token(up, repo: str) -> str:
    """A token for admin from npm's legacy login endpoint of the TLS upstream."""
    import ssl
    body = json.dumps({"name": "admin", "password": DepotProcess.ADMIN_PASSWORD}).encode()
    req = urllib.request.Request(f"{up.url}/{repo}/-/user/org.couchdb.user:admin", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ssl._create_unverified_context(), timeout=30) as resp:
        return json.loads(resp.read())["token"]


def hosted_reads(up) -> int:
    out = subprocess.run(["curl", "-sk", f"{up.url}/-/metrics"], capture_output=True, text=True, timeout=30)
    for line in out.stdout.splitlines():
        if line.startswith('depot_requests_total{format="generic",repository="files",result="hosted"}'):
            return int(float(line.split()[-1]))
    return 0


def start_front(depot_factory, repos: dict, cert: Path, tmp_path: Path) -> tuple[object, int, Path]:
    """A depot with a forward proxy in front of the TLS upstream: (depot, proxy port, its CA file)."""
    forward_port = free_port()
    front = depot_factory(repos, extra={"upstream": {"ca_file": str(cert)},
                                        "forward_proxy": {"listen": f"127.0.0.1:{forward_port}"}}, name="front")
    wait_port(forward_port)
    ca = tmp_path / "depot-ca.pem"
    ca.write_text(front.run_cli("ca", "export").stdout)
    return front, forward_port, ca


def test_https_proxy_clients_are_served_from_the_cache(depot_factory, https_upstream, tmp_path):
    up, cert = https_upstream
    payload = b"through the forward proxy\n" * 1000
    subprocess.run(["curl", "-sk", "-T", "-", f"{up.url}/files/tool/1.0/tool.tgz"], input=payload,
                   check=True, capture_output=True, timeout=30)
    repos = {"remote": {"format": "generic", "type": "proxy", "upstream": f"{up.url}/files/"}}
    front, forward_port, ca = start_front(depot_factory, repos, cert, tmp_path)
    target = f"{up.url}/files/tool/1.0/tool.tgz"
    results = []
    for _ in range(3):
        out = subprocess.run(["curl", "-sS", "-D", "-", "--proxy", f"http://127.0.0.1:{forward_port}",
                              "--cacert", str(ca), target], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        head, body = split_response(out.stdout)
        assert body == payload
        results.append(head.decode().lower())
    assert "x-cache: miss" in results[0]
    assert all("x-cache: hit" in head for head in results[1:])
    assert hosted_reads(up) == 1                         # one upstream fetch for three downloads
    # without depot's CA the interception is visible to the client: it refuses the certificate
    untrusted = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{forward_port}", target],
                               capture_output=True, timeout=60)
    assert untrusted.returncode != 0


def test_unknown_hosts_are_refused_when_configured(depot_factory, https_upstream, tmp_path):
    up, cert = https_upstream
    forward_port = free_port()
    depot_factory(
        {"remote": {"format": "generic", "type": "proxy", "upstream": "https://127.0.0.1:1/nothing/"}},
        extra={"forward_proxy": {"listen": f"127.0.0.1:{forward_port}", "unknown_hosts": "refuse"}},
        name="front")
    wait_port(forward_port)
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-k", "--proxy",
                          f"http://127.0.0.1:{forward_port}", f"{up.url}/files/"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 or out.stdout in ("403", "000")


CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS")


def _clean_env(**extra: str) -> dict[str, str]:
    """No inherited proxy, CA bundle or pip/npm settings: the test says what the client trusts."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "npm_", "NPM_")) and k.lower() not in ("https_proxy", "http_proxy")
           and k not in CA_VARIABLES}
    env.update(extra)
    return env


def test_pip_with_only_https_proxy_gets_cached(depot_factory, https_upstream, tmp_path):
    up, cert = https_upstream
    dist = build_dist(tmp_path / "build", "fwd-tiny", "1.0")
    twine = Path(sys.executable).parent / "twine"
    subprocess.run([str(twine), "upload", "--repository-url", f"{up.url}/pypi-up/", "-u", "admin", "-p",
                    DepotProcess.ADMIN_PASSWORD, "--cert", str(cert), "--non-interactive", str(dist.wheel)],
                   check=True, capture_output=True, timeout=120, env=_clean_env())
    front, forward_port, ca = start_front(
        depot_factory, {"pypi-remote": {"format": "pypi", "type": "proxy", "upstream": f"{up.url}/pypi-up/simple/"}},
        cert, tmp_path)
    env = _clean_env(HTTPS_PROXY=f"http://127.0.0.1:{forward_port}")
    for round_ in range(2):
        target = tmp_path / f"site{round_}"
        out = subprocess.run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "install",
                              "--cert", str(ca), "--index-url", f"{up.url}/pypi-up/simple/",
                              "--target", str(target), "fwd-tiny"],
                             capture_output=True, text=True, env=env, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        assert list(target.glob("fwd_tiny-1.0.dist-info"))
    log = front.log()
    assert '"GET /pypi-remote/files/' in log and '"GET /pypi-remote/simple/fwd-tiny/' in log
    file_lines = [line for line in log.splitlines() if "GET /pypi-remote/files/" in line]
    assert file_lines[-1].endswith('"HIT"')                # the second install came from the cache


def test_npm_with_only_https_proxy_gets_cached(depot_factory, https_upstream, tmp_path):
    up, cert = https_upstream
    base = up.url.replace("127.0.0.1", "localhost")      # node wants a host name for TLS through a tunnel
    pkg = make_package(tmp_path / "pkg", "fwd-npm-tiny", "1.0.0")
    tarball = NpmCli(tmp_path / "packer", "http://127.0.0.1:1/").pack(pkg, tmp_path)
    upstream_cli = NpmCli(tmp_path / "publisher", f"{base}/npm-up/")
    token = login_token(up, "npm-up")
    upstream_cli.write_userconfig(token)
    published = subprocess.run([npm_path(), "publish", str(tarball), "--registry", f"{base}/npm-up/"],
                               env=_clean_env(**{**upstream_cli.env(), "NODE_EXTRA_CA_CERTS": str(cert)}),
                               capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stdout + published.stderr
    repos = {"npm-remote": {"format": "npm", "type": "proxy", "upstream": f"{base}/npm-up/"}}
    front, forward_port, ca = start_front(depot_factory, repos, cert, tmp_path)
    client = NpmCli(tmp_path / "client", f"{base}/npm-up/")
    client.userconfig.write_text("")                       # anonymous: the proxy is readable by all
    client_env = {k: v for k, v in client.env().items() if k.lower() != "no_proxy"}
    for round_ in range(2):
        client.clear_cache()
        project = new_project(tmp_path / f"proj{round_}", {"fwd-npm-tiny": "^1.0.0"})
        out = subprocess.run([npm_path(), "install", "--no-audit", "--no-fund", "--registry", f"{base}/npm-up/"],
                             cwd=project, capture_output=True, text=True, timeout=180,
                             env=_clean_env(**{**client_env, "HTTPS_PROXY": f"http://127.0.0.1:{forward_port}",
                                               "NODE_EXTRA_CA_CERTS": str(ca)}))
        assert out.returncode == 0, out.stdout + out.stderr
        assert installed_version(project, "fwd-npm-tiny") == "1.0.0"
    tar_lines = [line for line in front.log().splitlines() if "/fwd-npm-tiny/-/" in line and "depot.access" in line]
    assert len(tar_lines) == 2 and tar_lines[0].endswith('"MISS"') and tar_lines[1].endswith('"HIT"')


def test_ca_export_right_after_serve_is_the_ca_the_proxy_uses(https_upstream, tmp_path):
    """README order: start `depot serve --forward-proxy`, then at once `depot ca export` (here four
    of them, racing the start): one CA, named after depot, and the proxy signs with it."""
    import yaml
    from depot_process import DEPOT_BIN, stop_group
    up, cert = https_upstream
    subprocess.run(["curl", "-sk", "-T", "-", f"{up.url}/files/ca/1.0/x.txt"], input=b"via the CA\n",
                   check=True, capture_output=True, timeout=30)
    port, forward_port = free_port(), free_port()
    config = tmp_path / "front.yaml"
    config.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{port}", "data_dir": str(tmp_path / "front-data"), "open_access": True,
        "repositories": {"remote": {"format": "generic", "type": "proxy", "upstream": f"{up.url}/files/"}},
        "upstream": {"ca_file": str(cert)}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    env["DEPOT_ADMIN_PASSWORD"] = DepotProcess.ADMIN_PASSWORD
    with open(tmp_path / "front.log", "wb") as log:
        server = subprocess.Popen([str(DEPOT_BIN), "serve", "--config", str(config),
                                   "--forward-proxy", f"127.0.0.1:{forward_port}"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        exports = [subprocess.Popen([str(DEPOT_BIN), "ca", "export", "--config", str(config)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(4)]
        pems = [proc.communicate(timeout=60)[0] for proc in exports]
        assert all(proc.returncode == 0 for proc in exports)
        assert len(set(pems)) == 1 and pems[0].startswith(b"-----BEGIN CERTIFICATE-----")
        ca = tmp_path / "exported-ca.pem"
        ca.write_bytes(pems[0])
        subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(ca)],
                                 capture_output=True, text=True, timeout=30).stdout
        assert "depot forward-proxy CA" in subject and "mitmproxy" not in subject.lower()
        wait_port(forward_port)
        out = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{forward_port}", "--cacert", str(ca),
                              f"{up.url}/files/ca/1.0/x.txt"], capture_output=True, timeout=60, env=_clean_env())
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"via the CA\n"
        assert subprocess.run([str(DEPOT_BIN), "ca", "export", "--config", str(config)], capture_output=True,
                              env=env, timeout=60).stdout == pems[0]              # and it stays the same
    finally:
        stop_group(server)
