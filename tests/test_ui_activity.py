"""Per-repository pages for the ops team (issue 12): sparklines of requests, hits, misses, bytes
served and saved, hit ratio, top packages and the last upstream errors, after real pip and npm
installs through a 2-worker depot. The numbers must add up with /-/metrics, and the page is
rendered by headless Chromium (`chromium --headless --screenshot`) into a non-blank PNG."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from depot_process import DepotProcess
from http_util import get
from npm_fixtures import NpmCli, installed_version, new_project, static_packument
from pypi_fixtures import build_dist, write_simple_project
from test_policy_npm_pypi import npm_tarball
from test_ui import chromium_binary
from upstream import Upstream, start_upstream

HITS = ("hit", "stale", "revalidated")


def pip_install(index: str, target: Path, *packages: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    done = subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
                           "--no-cache-dir", "--no-deps", "--index-url", index, "--target", str(target), *packages],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DepotProcess, Upstream]]:
    """A 2-worker depot in front of a static upstream, after two pip and two npm installs."""
    tmp = tmp_path_factory.mktemp("activity")
    (tmp / "up").mkdir()
    up = start_upstream(tmp / "up")
    dist = build_dist(tmp / "build", "demo-pkg", "1.0")
    write_simple_project(up.root, "demo-pkg", dist.files)
    tarball = npm_tarball(tmp, "cool-pkg", "1.0.0")
    up.put("cool-pkg", json.dumps(static_packument("cool-pkg", {"1.0.0": tarball}, f"{up.url}/tarballs")).encode())
    up.put("tarballs/cool-pkg-1.0.0.tgz", tarball)
    repos = {"pypi-remote": {"format": "pypi", "type": "proxy", "upstream": f"{up.url}/simple/"},
             "pypi": {"format": "pypi", "type": "group", "members": ["pypi-remote"]},
             "npm-remote": {"format": "npm", "type": "proxy", "upstream": up.url + "/", "negative_ttl": "1h"}}
    depot = DepotProcess(tmp / "depot", repos, workers=2)
    try:
        for run in (1, 2):        # the second run: the same files again, from the cache
            pip_install(f"{depot.url}/pypi/simple/", tmp / f"site{run}", "demo-pkg")
            npm = NpmCli(tmp / f"npm{run}", f"{depot.url}/npm-remote/")
            npm.userconfig.write_text("")
            project = new_project(tmp / f"project{run}", {})
            npm.ok("install", "cool-pkg", cwd=project)
            assert installed_version(project, "cool-pkg") == "1.0.0"
        assert up.count("/tarballs/cool-pkg-1.0.0.tgz") == 1
        for _ in range(2):      # upstream 404, then the negative cache answers
            assert get(f"{depot.url}/npm-remote/no-such-pkg").status == 404
        yield depot, up
    finally:
        depot.stop()
        up.stop()


def metric(depot: DepotProcess, name: str, label: str) -> dict[str, dict[str, float]]:
    """{repository: {label value: value}} of one counter family from /-/metrics."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(get(f"{depot.url}/-/metrics").body.decode()):
        for sample in family.samples:
            if sample.name == name:
                repo = out.setdefault(sample.labels["repository"], {})
                repo[sample.labels[label]] = repo.get(sample.labels[label], 0) + sample.value
    return out


def activity(depot: DepotProcess, repo: str, query: str = "") -> dict[str, Any]:
    answer = get(f"{depot.url}/-/api/repositories/{repo}/activity{query}")
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def settled(depot: DepotProcess, repo: str, check: Any, timeout: float = 20) -> dict[str, Any]:
    """The activity once `check(activity)` holds (each worker writes it every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = activity(depot, repo)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_numbers_add_up_with_metrics_after_pip_and_npm(busy) -> None:
    depot, _ = busy
    requests = metric(depot, "depot_requests_total", "result")
    served = metric(depot, "depot_bytes_served_total", "source")
    through_group = metric(depot, "depot_group_requests_total", "result")
    for repo in ("pypi-remote", "npm-remote"):
        counts, sent = requests[repo], served[repo]
        hits = sum(counts.get(r, 0) for r in HITS)
        found = settled(depot, repo, lambda a, counts=counts, sent=sent: sum(a["series"]["requests"])
                        == sum(counts.values()) and sum(a["series"]["bytes_served"]) == sum(sent.values()))
        series, totals = found["series"], found["totals"]
        assert hits >= 2 and counts["miss"] >= 2, counts         # metadata and a file each, both runs
        assert sum(series["requests"]) == sum(counts.values())
        assert sum(series["hits"]) == hits and sum(series["misses"]) == counts["miss"]
        assert sum(series["bytes_served"]) == sum(sent.values()) > 0
        assert sum(series["bytes_saved"]) == sent["cache"] == totals["bytes_saved"] > 0
        assert {k: v for k, v in totals["results"].items() if v} == {k: v for k, v in counts.items() if v}
        assert totals["hit_ratio"] == pytest.approx(hits / (hits + counts["miss"] + counts.get("error", 0)))
        assert sum(series["negative"]) == counts.get("negative", 0)
        assert len(series["hits"]) == 60 and found["range"]["step_seconds"] == 60
    assert requests["npm-remote"]["negative"] >= 1             # a category of its own
    group = settled(depot, "pypi", lambda a: sum(a["series"]["requests"]) == sum(through_group["pypi"].values()))
    assert sum(group["series"]["hits"]) == sum(through_group["pypi"].get(r, 0) for r in HITS) > 0
    assert "bytes_saved" not in group["series"] and group["totals"]["bytes_saved"] is None
    day = activity(depot, "npm-remote", "?range=24h")
    assert len(day["series"]["hits"]) == 96 and sum(day["series"]["hits"]) == sum(
        requests["npm-remote"].get(r, 0) for r in HITS)
    # top packages: the files downloaded (wheel, tarball), not the index pages or .metadata companions
    assert [(p["package"], p["downloads"]) for p in activity(depot, "npm-remote")["top_packages"]] == [("cool-pkg", 2)]
    assert [(p["package"], p["downloads"]) for p in activity(depot, "pypi-remote")["top_packages"]] == [("demo-pkg", 2)]
    assert [(p["package"], p["downloads"]) for p in activity(depot, "pypi")["top_packages"]] == [("demo-pkg", 2)]
    assert get(f"{depot.url}/-/api/repositories/npm-remote/activity?range=7d").status == 400
    assert get(f"{depot.url}/-/api/repositories/nosuch/activity").status == 404


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw pixels) of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    step = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * step, [], bytes(width * step)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = prev[i], prev[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        prev = bytes(line)
        rows.append(prev[:])
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, step)]  # type: ignore[misc]


def screenshot(url: str, path: Path) -> bytes:
    """`chromium --headless --screenshot` of a page (private profile, loopback only)."""
    profile = path.parent / f"{path.stem}-profile"
    done = subprocess.run([chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={path}",
                           "--window-size=1280,1600", url], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and path.exists(), done.stdout + done.stderr
    return path.read_bytes()


def test_repository_page_renders_sparklines_packages_and_last_error(busy, tmp_path: Path) -> None:
    depot, up = busy
    up.mode("/cool-missing", "status", status=503)              # the upstream fails for one package
    failed = get(f"{depot.url}/npm-remote/cool-missing")
    assert failed.status >= 500, failed.status
    found = settled(depot, "npm-remote", lambda a: any(e["path"].endswith("cool-missing") for e in a["last_errors"]))
    upstream_errors = [e for e in found["last_errors"] if e["kind"] == "upstream"]
    assert upstream_errors and upstream_errors[0]["path"].endswith("cool-missing") and "503" in upstream_errors[0]["detail"]
    assert any(e["kind"] == "answer" and e["path"] == "/npm-remote/cool-missing" and e["status"] == str(failed.status)
               for e in found["last_errors"])

    page = get(f"{depot.url}/-/ui/repositories/npm-remote").body.decode()
    for series in ("requests", "hits", "misses", "negative", "bytes_served", "bytes_saved"):
        total = sum(found["series"][series])
        assert f'<svg class="sparkline" data-series="{series}" data-total="{total}"' in page, series
    assert '<td class="package">cool-pkg</td>' in page
    assert 'id="negrate"' in page                              # the live chart's negative line
    assert "<code>/npm-remote/cool-missing</code>" in page and "upstream answered 503" in page
    assert f'id="bytes-saved" data-bytes="{found["totals"]["bytes_saved"]}"' in page
    index = get(f"{depot.url}/-/ui/").body.decode()
    assert index.count('<svg class="sparkline" data-series="requests"') == 3     # one per repository

    shot = screenshot(f"{depot.url}/-/ui/repositories/npm-remote", tmp_path / "npm-remote.png")
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 1600)
    colours = set(pixels)
    assert len(colours) > 50, "the screenshot is blank"
    green = sum(1 for p in pixels if p[1] > p[0] + 40 and p[1] > p[2] + 30)
    blue = sum(1 for p in pixels if p[2] > p[0] + 60 and p[2] > p[1] + 30)
    assert green > 50 and blue > 50, "no sparkline was drawn (hits are green, requests blue)"


def test_activity_follows_the_visibility_rule(tmp_path: Path, upstream) -> None:
    repos = {"open-remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"},
             "secret-local": {"format": "generic", "type": "hosted"}}
    depot = DepotProcess(tmp_path / "secure", repos, secure=True)
    try:
        assert get(f"{depot.url}/-/api/repositories/open-remote/activity").status == 200
        denied = get(f"{depot.url}/-/api/repositories/secret-local/activity")
        assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert 'data-series="requests"' in get(f"{depot.url}/-/ui/").body.decode()
    finally:
        depot.stop()
