"""Cleanup policies against a live depot: 30 OCI tags pushed with skopeo at controlled times and
a keep-5 + ^release- policy (a dry run lists exactly what the run then deletes; kept tags still
pull; gc reclaims the rest), and time-based expiry of a proxy cache with a controllable clock
(DEPOT_CLOCK_FILE, a test-only offset in seconds)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from admin_helpers import api, cli_json, cli_json_env, eventually, seg, skopeo
from oci_fixtures import Layout

DAY = 86400


def set_clock(path: Path, offset: float) -> None:
    path.write_text(str(offset))


def test_keep_five_and_release_tags_dry_run_matches_the_run(depot_factory, tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    set_clock(clock, 0)
    depot = depot_factory({"oci": {"format": "oci", "type": "hosted",
                                   "cleanup": {"keep_n": 5, "name_regex_keep": "^release-"}}},
                          env={"DEPOT_CLOCK_FILE": str(clock)})
    layout = Layout(tmp_path / "layout")
    tags = [f"release-{i}" if i % 6 == 0 else f"build-{i}" for i in range(30)]
    for i, tag in enumerate(tags):
        layout.tag(layout.image({"n.txt": f"image {i}\n".encode()}), tag)
    ref = f"docker://127.0.0.1:{depot.port}/oci/team/app"
    for i, tag in enumerate(tags):            # tag i created 30 - i days ago, in push order
        set_clock(clock, -(30 - i) * DAY)
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.root}:{tag}", f"{ref}:{tag}")
    set_clock(clock, 0)
    newest = set(tags[-5:])
    expected = {t for t in tags if t not in newest and not t.startswith("release-")}
    assert len(expected) == 20

    dry = cli_json(depot, "cleanup", "--dry-run")
    planned = {d["version"] for d in dry[0]["deleted"]}
    assert planned == expected and dry[0]["dry_run"] is True
    assert {d["version"] for d in api(depot, "POST", "cleanup", dry_run="true").json()["items"][0]["deleted"]} \
        == expected
    listed = {t["tag"] for t in api(depot, "GET", f"images/oci/{seg('team/app')}/tags").json()["items"]}
    assert listed == set(tags)                 # the dry runs deleted nothing

    run = api(depot, "POST", "cleanup").json()["items"][0]
    assert {d["version"] for d in run["deleted"]} == planned
    remaining = {t["tag"] for t in api(depot, "GET", f"images/oci/{seg('team/app')}/tags").json()["items"]}
    assert remaining == set(tags) - expected
    for tag in sorted(remaining)[:3]:
        skopeo("copy", "--src-tls-verify=false", f"{ref}:{tag}", f"oci:{tmp_path / 'pulled'}:{tag}")
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:build-1", check=False).returncode != 0
    gc = depot.run_cli("gc", "--grace", "0s").stdout
    assert int(re.search(r"removed (\d+)", gc).group(1)) >= 2 * 20       # a manifest and a layer per tag
    skopeo("copy", "--src-tls-verify=false", f"{ref}:{tags[-1]}", f"oci:{tmp_path / 'pulled2'}:x")
    metrics = requests.get(f"{depot.url}/-/metrics", timeout=10).text
    line = next(l for l in metrics.splitlines() if l.startswith("depot_cleanup_deleted_total{")
                and 'repository="oci"' in l)
    assert 'policy="cleanup"' in line and float(line.rsplit(" ", 1)[1]) == 20
    assert any(l.startswith("depot_cleanup_reclaimed_bytes_total{") for l in metrics.splitlines())
    shown = api(depot, "GET", "cleanup").json()["items"][0]
    assert shown["policy"]["cleanup"]["keep_n"] == 5 and shown["last_run"]["deleted"] == 20
    audit = [json.loads(l) for l in (depot.data_dir / "audit.log").read_text().splitlines()]
    assert len([a for a in audit if a["action"] == "delete" and a.get("via") == "cleanup"]) == 20


def test_proxy_entries_unused_for_expire_with_the_clock(depot_factory, upstream, tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    set_clock(clock, 0)
    upstream.put("tools/big.bin", b"x" * 5000)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/",
                                      "cleanup": {"unused_for": "90d"}}},
                          env={"DEPOT_CLOCK_FILE": str(clock)})
    url = f"{depot.url}/remote/tools/big.bin"
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(url, timeout=10).headers["X-Cache"] == "HIT"
    gets = upstream.counts().get("GET /tools/big.bin", 0)
    assert gets == 1
    set_clock(clock, 30 * DAY)
    listed = api(depot, "GET", "cache/remote", older_than="20d").json()
    assert [i["key"] for i in listed["items"]] == ["tools/big.bin"] and listed["items"][0]["size"] == 5000
    assert api(depot, "GET", "cache/remote", older_than="90d").json()["items"] == []
    assert api(depot, "POST", "cleanup").json()["items"][0]["entries"] == 0
    assert requests.get(url, timeout=10).headers["X-Cache"] == "HIT"
    set_clock(clock, 91 * DAY)
    dry = cli_json_env(depot, {"DEPOT_CLOCK_FILE": str(clock)}, "cleanup", "--dry-run")[0]
    assert dry["entries"] == 1 and dry["bytes"] == 5000
    assert api(depot, "POST", "cleanup").json()["items"][0] == {
        "repository": "remote", "policy": "unused_for", "dry_run": False, "entries": 1, "bytes": 5000}
    assert requests.get(url, timeout=10).status_code == 200
    assert upstream.counts().get("GET /tools/big.bin", 0) == 2        # fetched again after expiry


def test_cache_purge_by_pattern_reports_bytes(depot_factory, upstream) -> None:
    for name in ("a/1.bin", "a/2.bin", "b/1.bin"):
        upstream.put(name, b"y" * 100)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}})
    for name in ("a/1.bin", "a/2.bin", "b/1.bin"):
        assert requests.get(f"{depot.url}/remote/{name}", timeout=10).status_code == 200
    assert api(depot, "DELETE", "cache/remote", q="a/", dry_run="true").json()["bytes"] == 200
    assert len(api(depot, "GET", "cache/remote").json()["items"]) == 3
    purged = cli_json(depot, "cache", "purge", "remote", "-q", "a/")
    assert purged["entries"] == 2 and purged["bytes"] == 200
    assert [i["key"] for i in api(depot, "GET", "cache/remote").json()["items"]] == ["b/1.bin"]
    # the server drops its in-memory copies of purged entries at its next flush (every 2 s)
    assert eventually(lambda: requests.get(f"{depot.url}/remote/a/1.bin", timeout=10).headers["X-Cache"] == "MISS")
    assert upstream.counts().get("GET /a/1.bin") == 2


def test_scheduled_cleanup_runs_in_the_server_once_across_workers(depot_factory, upstream, tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    set_clock(clock, 0)
    upstream.put("old.bin", b"o" * 300)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/",
                                      "cleanup": {"unused_for": "90d", "schedule": "1s"}}},
                          workers=2, env={"DEPOT_CLOCK_FILE": str(clock)})
    assert requests.get(f"{depot.url}/remote/old.bin", timeout=10).status_code == 200
    assert eventually(lambda: api(depot, "GET", "cache/remote").json()["items"])
    set_clock(clock, 91 * DAY)
    assert eventually(lambda: api(depot, "GET", "cache/remote").json()["items"] == [], timeout=15)
    audit = [json.loads(l) for l in (depot.data_dir / "audit.log").read_text().splitlines()]
    purges = [a for a in audit if a["action"] == "cache.purge"]
    assert len(purges) == 1 and purges[0]["policy"] == "unused_for" and purges[0]["actor"] == "cleanup"
    assert api(depot, "GET", "cleanup").json()["items"][0]["last_run"] is not None


def test_the_ui_shows_the_policy_and_its_last_run(depot_factory) -> None:
    depot = depot_factory({"files": {"format": "generic", "type": "hosted", "cleanup": {"keep_n": 2},
                                     "protected": ["^keep/"]}})
    page = requests.get(f"{depot.url}/-/ui/repositories/files", timeout=10)
    assert page.status_code == 200, page.text
    assert "Retention" in page.text and "keep_n" in page.text and "^keep/" in page.text
    assert "Last cleanup: never" in page.text
    api(depot, "POST", "cleanup")
    page = requests.get(f"{depot.url}/-/ui/repositories/files", timeout=10).text
    assert "Last cleanup: never" not in page and "0 deleted" in page


def test_cleanup_keeps_what_was_downloaded_recently(depot_factory) -> None:
    depot = depot_factory({"files": {"format": "generic", "type": "hosted",
                                     "cleanup": {"keep_n": 0, "keep_recently_used": "7d"}}})
    for name in ("used.txt", "idle.txt"):
        assert requests.put(f"{depot.url}/files/{name}", data=name.encode(), timeout=10).status_code == 201
    assert requests.get(f"{depot.url}/files/used.txt", timeout=10).text == "used.txt"
    assert eventually(lambda: api(depot, "GET", "packages/files/used.txt").json()["downloads"] == 1)
    run = api(depot, "POST", "cleanup").json()["items"][0]
    assert [d["package"] for d in run["deleted"]] == ["idle.txt"]
    assert requests.get(f"{depot.url}/files/idle.txt", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/files/used.txt", timeout=10).status_code == 200
