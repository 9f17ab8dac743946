"""The same front-door behaviour from every registered format, checked over a real depot.

For each format in depot.registry.FORMATS (so a new format is covered the day it lands):
anonymous writes get 401 with the format's challenge, a missing file is a 404 in the format's
own error shape, a method no route takes is a 405 with Allow, a proxy answer carries X-Cache
(404s included), and a write to a proxy repository is refused. Sample paths come from each
route's own regex (hypothesis `from_regex`), not from a hand-kept list.
"""
from __future__ import annotations

import functools
import string
from typing import Any, Iterator

import pytest
import requests
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st

from depot.registry import FORMATS
from depot.registry.base import Route
from depot.registry.repo import RepoConfig

from depot_process import DepotProcess

SAFE = set(string.ascii_letters + string.digits + "-._~/:@!+=,")
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
WRITE_METHODS = ("PUT", "POST")


def mount(fmt: str, repo: str) -> str:
    return f"/v2/{repo}/" if fmt == "oci" else f"/{repo}/"


@functools.lru_cache(maxsize=None)
def sample_path(route: Route) -> str | None:
    """A short, URL-safe path the route's regex accepts (None when it has none)."""
    try:
        return find(st.from_regex(route.pattern, fullmatch=True),
                    lambda p: 0 < len(p) < 80 and set(p) <= SAFE and "//" not in p and not p.startswith("/")
                    and ".." not in p,
                    settings=settings(max_examples=2000, database=None,
                                      suppress_health_check=list(HealthCheck)))
    except Exception:
        return None


def routes_of(fmt: str, repo_type: str, methods: tuple[str, ...]) -> Iterator[tuple[Route, str]]:
    for route in FORMATS[fmt].routes:
        if repo_type in route.types and set(methods) & route.methods and route.perm != "none":
            path = sample_path(route)
            if path is not None:
                yield route, path


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory, module_upstream: Any) -> Iterator[DepotProcess]:
    repos: dict[str, Any] = {}
    for fmt in FORMATS:
        repos[f"{fmt}-hosted"] = {"format": fmt, "type": "hosted"}
        repos[f"{fmt}-proxy"] = {"format": fmt, "type": "proxy", "upstream": module_upstream.url + "/"}
        repos[f"{fmt}-group"] = {"format": fmt, "type": "group", "members": [f"{fmt}-hosted", f"{fmt}-proxy"],
                                 "deploy_to": f"{fmt}-hosted"}
    process = DepotProcess(tmp_path_factory.mktemp("conformance"), repos, secure=True)
    yield process
    process.stop()


def _repo(fmt: str, kind: str) -> RepoConfig:
    return RepoConfig(name=f"{fmt}-{kind}", format=fmt, type=kind, upstream="http://127.0.0.1:1/")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_anonymous_write_gets_the_format_challenge(depot: DepotProcess, fmt: str) -> None:
    tried = 0
    for route, path in routes_of(fmt, "hosted", WRITE_METHODS):
        method = sorted(set(WRITE_METHODS) & route.methods)[0]
        url = depot.url + mount(fmt, f"{fmt}-hosted") + path
        answer = requests.request(method, url, data=b"x", timeout=30)
        assert answer.status_code == 401, (method, url, answer.status_code, answer.text[:200])
        assert answer.headers.get("WWW-Authenticate"), (method, url)
        tried += 1
    assert tried, f"{fmt}: no hosted write route to try"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_missing_file_is_404_in_the_format_shape(depot: DepotProcess, fmt: str) -> None:
    expected = FORMATS[fmt]().error(None, 404, "probe").content_type
    tried = 0
    for _route, path in routes_of(fmt, "hosted", ("GET",)):
        url = depot.url + mount(fmt, f"{fmt}-hosted") + path
        answer = requests.get(url, auth=ADMIN, timeout=30)
        if answer.status_code == 404:
            assert answer.headers.get("Content-Type", "").split(";")[0] == expected, (url, answer.headers)
            tried += 1
        else:     # some paths are documents generated even when empty (indexes): never a 5xx
            assert answer.status_code < 500, (url, answer.status_code, answer.text[:200])
    assert tried, f"{fmt}: no GET route answered 404 for a missing file"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_unrouted_method_is_405_with_allow(depot: DepotProcess, fmt: str) -> None:
    cls = FORMATS[fmt]()
    repo = _repo(fmt, "hosted")
    tried = 0
    for _route, path in routes_of(fmt, "hosted", ("GET", "HEAD", "PUT", "POST", "DELETE")):
        allowed = set(cls.allowed_methods(repo, path))
        method = next((m for m in ("PATCH", "PROPFIND") if m not in allowed), None)
        if method is None:
            continue
        answer = requests.request(method, depot.url + mount(fmt, repo.name) + path, auth=ADMIN, timeout=30)
        assert answer.status_code == 405, (method, path, answer.status_code)
        assert set(answer.headers.get("Allow", "").replace(" ", "").split(",")) == allowed
        tried += 1
        break
    assert tried, f"{fmt}: no route to probe"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_proxy_answers_carry_x_cache_even_404(depot: DepotProcess, fmt: str) -> None:
    tried = 0
    for _route, path in routes_of(fmt, "proxy", ("GET",)):
        answer = requests.get(depot.url + mount(fmt, f"{fmt}-proxy") + path, timeout=30)
        assert answer.status_code < 500 or answer.status_code in (502, 504), (path, answer.status_code)
        if answer.status_code in (200, 404):
            assert answer.headers.get("X-Cache"), (fmt, path, answer.status_code, dict(answer.headers))
            tried += 1
    assert tried, f"{fmt}: no proxy GET route to probe"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_proxy_refuses_writes(depot: DepotProcess, fmt: str) -> None:
    for route, path in routes_of(fmt, "hosted", WRITE_METHODS):
        method = sorted(set(WRITE_METHODS) & route.methods)[0]
        answer = requests.request(method, depot.url + mount(fmt, f"{fmt}-proxy") + path, data=b"x",
                                  auth=ADMIN, timeout=30)
        assert answer.status_code in (403, 404, 405), (method, path, answer.status_code)
