"""Forward-proxy mode: clients that only know HTTPS_PROXY and depot's CA get cached answers."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from depot_process import free_port


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "up-cert.pem", directory / "up-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", str(key),
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
    up = depot_factory({"files": {"format": "generic", "type": "hosted", "anonymous_read": True}},
                       extra={"tls": {"cert": str(cert), "key": str(key)}}, name="https-up")
    return up, cert


def hosted_reads(up) -> int:
    out = subprocess.run(["curl", "-sk", f"{up.url}/-/metrics"], capture_output=True, text=True, timeout=30)
    for line in out.stdout.splitlines():
        if line.startswith('depot_requests_total{format="generic",repository="files",result="hosted"}'):
            return int(float(line.split()[-1]))
    return 0


def test_https_proxy_clients_are_served_from_the_cache(depot_factory, https_upstream, tmp_path):
    up, cert = https_upstream
    payload = b"through the forward proxy\n" * 1000
    subprocess.run(["curl", "-sk", "-T", "-", f"{up.url}/files/tool/1.0/tool.tgz"], input=payload,
                   check=True, capture_output=True, timeout=30)
    forward_port = free_port()
    front = depot_factory(
        {"remote": {"format": "generic", "type": "proxy", "upstream": f"{up.url}/files/"}},
        extra={"upstream": {"ca_file": str(cert)}, "forward_proxy": {"listen": f"127.0.0.1:{forward_port}"}},
        name="front")
    wait_port(forward_port)
    ca = tmp_path / "depot-ca.pem"
    ca.write_text(front.run_cli("ca", "export").stdout)
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
    front = depot_factory(
        {"remote": {"format": "generic", "type": "proxy", "upstream": "https://127.0.0.1:1/nothing/"}},
        extra={"forward_proxy": {"listen": f"127.0.0.1:{forward_port}", "unknown_hosts": "refuse"}},
        name="front")
    wait_port(forward_port)
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-k", "--proxy",
                          f"http://127.0.0.1:{forward_port}", f"{up.url}/files/"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 or out.stdout in ("403", "000")
    assert front.log().count("listening pid=") >= 1
