"""Numbers that add up: every request is counted once, at the repository that answered it (from
cache or upstream); a group shows the sum of what its members served through it; `depot stats`
totals never add a group to its members; every proxy and group answer says X-Cache, 404s and
negative-cache answers included, and negative answers are a category of their own."""
from __future__ import annotations

import json
import re
import time
from urllib.parse import urljoin
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from http_util import get
from pypi_fixtures import build_dist, write_simple_project


def samples(depot, name: str) -> dict[tuple[str, str], float]:
    text = get(f"{depot.url}/-/metrics").body.decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = (sample.labels["repository"], sample.labels["result"])
                out[key] = out.get(key, 0) + sample.value
    return out


def test_groups_show_what_members_served_and_totals_count_once(depot_factory, upstream, tmp_path: Path) -> None:
    dist = build_dist(tmp_path / "build", "demo", "1.0")
    write_simple_project(upstream.root, "demo", dist.files)
    depot = depot_factory({
        "pypi-remote": {"format": "pypi", "type": "proxy", "upstream": f"{upstream.url}/simple/", "negative_ttl": "1h"},
        "pypi-local": {"format": "pypi", "type": "hosted"},
        "pypi": {"format": "pypi", "type": "group", "members": ["pypi-local", "pypi-remote"],
                 "deploy_to": "pypi-local"}})
    answers = [get(f"{depot.url}/pypi/simple/demo/") for _ in range(3)]            # 1 miss, 2 hits
    href = re.search(r'href="([^"#]+\.whl)', answers[0].body.decode()).group(1)
    answers.append(get(urljoin(f"{depot.url}/pypi/simple/demo/", href)))          # miss at the proxy
    answers.append(get(f"{depot.url}/pypi-remote/simple/demo/"))                   # a direct hit
    missing = [get(f"{depot.url}/pypi/simple/nosuch/"), get(f"{depot.url}/pypi-remote/simple/nosuch/"),
               get(f"{depot.url}/pypi-remote/simple/nosuch/")]                    # 404 upstream, then negative
    for answer in answers:
        assert answer.status == 200 and answer.headers.get("X-Cache") in ("HIT", "MISS"), answer.headers
    for answer in missing:
        assert answer.status == 404 and answer.headers.get("X-Cache"), answer.headers
    assert [a.headers["X-Cache"] for a in answers[:3]] == ["MISS", "HIT", "HIT"]

    counted = samples(depot, "depot_requests_total")
    assert not any(repo == "pypi" for repo, _ in counted if counted[(repo, _)])       # nothing counted at the group
    assert counted[("pypi-remote", "hit")] == 3 and counted[("pypi-remote", "miss")] == 2
    assert counted[("pypi-remote", "negative")] >= 1                                # its own category
    served = samples(depot, "depot_group_requests_total")
    assert served[("pypi", "hit")] == 2 and served[("pypi", "miss")] == 2           # the group's requests only

    stats = json.loads(get(f"{depot.url}/-/api/stats").body)["repositories"]
    assert stats["pypi"]["results"]["hit"] == 2 and stats["pypi"]["results"]["miss"] == 2
    assert stats["pypi-remote"]["results"]["hit"] == 3

    deadline = time.monotonic() + 15            # counters reach the database within a few seconds
    while True:
        rows = {r["name"]: r for r in json.loads(depot.run_cli("stats", "--json").stdout)}
        if rows["pypi-remote"]["hits"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (rows["pypi"]["hits"], rows["pypi"]["misses"]) == (2, 2)
    assert rows["pypi"]["counted_in_total"] is False
    assert (rows["pypi-remote"]["hits"], rows["pypi-remote"]["misses"]) == (3, 2)
    assert rows["pypi-remote"]["negative"] >= 1
    text = depot.run_cli("stats").stdout
    assert "hit ratio 60.0%" in text                # 3 / (3 + 2): the group's 4 are not added again
