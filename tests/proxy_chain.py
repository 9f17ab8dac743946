"""Shared proxy fixtures of the distribution formats' tests (Debian, RPM, CRAN, Conda).

* `proxy_chain`: an upstream depot (one hosted repository `origin`, filled by HTTP uploads of
  files the test built with the real tools) and a second depot whose proxy repository has it
  as its upstream.
* `assert_one_upstream_get`: N concurrent clients ask one uncached file; each gets the whole
  expected body and the upstream saw one GET (counted by the caller's `upstream_gets`).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from depot_process import DepotProcess
from http_util import get_many


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60)


def upload(url: str, path: Path, *curl_args: str) -> int:
    """PUT a file with curl (curl_args: `-u user:pass` …); the HTTP status."""
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", "-T", str(path), *curl_args, url).stdout)


def depot_gets(depot: DepotProcess, path: str) -> int:
    """GETs of `path` (from the server root) in a depot's access log."""
    return sum(1 for line in depot.log().splitlines() if "depot.access" in line and f"GET {path} " in line)


@dataclass
class Chain:
    up: DepotProcess          # hosted repository "origin"
    depot: DepotProcess       # proxy repository `repo` in front of it
    repo: str
    files: list[Path]

    @property
    def base(self) -> str:
        return f"{self.depot.url}/{self.repo}"


def proxy_chain(depot_factory: Any, fmt: str, files: Sequence[Path], upload_path: Callable[[Path], str],
                repo: str, **proxy_options: Any) -> Chain:
    """Upload `files` to the upstream depot's `origin/<upload_path(file)>`, then start a depot
    proxying it as `repo` (metadata_ttl 1 unless proxy_options say otherwise)."""
    up = depot_factory({"origin": {"format": fmt, "type": "hosted"}}, name="up")
    for path in files:
        assert upload(f"{up.url}/origin/{upload_path(path)}", path) == 201, path
    options = {"format": fmt, "type": "proxy", "upstream": up.url + "/origin/", "metadata_ttl": 1, **proxy_options}
    depot = depot_factory({repo: options}, name="proxy")
    return Chain(up, depot, repo, list(files))


def assert_one_upstream_get(url: str, expected: bytes, upstream_gets: Callable[[], int], clients: int = 20) -> None:
    """`clients` concurrent GETs of one uncached url: all complete and equal, one upstream GET."""
    before = upstream_gets()
    answers = get_many(url, clients)
    assert [a.status for a in answers] == [200] * clients
    assert all(a.complete and a.body == expected for a in answers)
    assert upstream_gets() - before == 1, upstream_gets() - before
