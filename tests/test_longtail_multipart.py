"""The shared multipart/form-data reader (registry/multipart.py) of the formats whose publish is a
form: Helm, Puppet, Chef, CocoaPods and Swift. A client that stalls or trickles its form is cut
off after client_timeout like every other upload path (408 in the format's own error shape),
and nothing is stored; the formats share one helper instead of importing Helm's private one."""
from __future__ import annotations

import base64
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from depot_process import DepotProcess

REPOS = {fmt: {"format": fmt, "type": "hosted"} for fmt in ("helm", "puppet", "chef", "cocoapods", "swift")}
FORMS = {                                     # repository -> (method, path, extra headers, error field)
    "helm": ("POST", "api/charts", "", b'"error"'),
    "puppet": ("POST", "v3/releases", "", b'"errors"'),
    "chef": ("POST", "api/v1/cookbooks", "", b'"error_messages"'),
    "cocoapods": ("POST", "api/pods", "", b'"error"'),
    "swift": ("PUT", "mona/LinkedList/1.0.0", "Accept: application/vnd.swift.registry.v1+json\r\n", b'"detail"'),
}
AUTH = base64.b64encode(f"admin:{DepotProcess.ADMIN_PASSWORD}".encode()).decode()


def test_formats_share_the_public_multipart_helper() -> None:
    registry = Path(__file__).resolve().parent.parent / "registry"
    importers = [p.name for p in registry.glob("*.py") if re.search(r"from \.helm import _multipart", p.read_text())]
    assert importers == []
    users = sorted(p.stem for p in registry.glob("*.py") if "from .multipart import form_fields" in p.read_text())
    assert users == ["chef", "cocoapods", "helm", "puppet", "swift"]


def _stalled_form(port: int, repo: str, trickle: bool) -> tuple[bytes, float]:
    """Start a form upload of 100000 announced bytes, then go silent (or send a byte every 0.4 s):
    the answer and how long it took."""
    method, path, extra, _ = FORMS[repo]
    head = (f"{method} /{repo}/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {AUTH}\r\n{extra}"
            "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.tgz\"\r\n\r\nstart")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.4 if trickle else 30)
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < 25 and not answer:
            try:
                answer = sock.recv(4096)
            except socket.timeout:
                sock.sendall(b"t")
        return answer, time.monotonic() - started


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickle"])
def test_a_stalled_form_upload_is_cut_off_in_every_form_format(depot_factory: Any, trickle: bool) -> None:
    depot = depot_factory(REPOS, extra={"client_timeout": "2s"})
    for repo in FORMS:
        answer, waited = _stalled_form(depot.port, repo, trickle)
        assert answer.startswith(b"HTTP/1.1 408"), (repo, answer[:300])
        assert waited < 12, (repo, waited)
        assert FORMS[repo][3] in answer, (repo, answer[:300])        # the format's own error shape
