"""Metrics, alert rules and the Grafana dashboard, proven against a real Prometheus.

Needs Debian's `prometheus` package (/usr/bin/prometheus, /usr/bin/promtool); the tests fail
(never skip) when it is missing. Every process runs on 127.0.0.1 and is stopped by its PID.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from depot_process import ROOT, DepotProcess, free_port, stop_group
from http_util import get, get_many
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

DASHBOARDS = ROOT / "dashboards"
DASHBOARD = DASHBOARDS / "depot.json"
RULES = DASHBOARDS / "depot.rules.yml"
RULE_TESTS = DASHBOARDS / "depot.rules.test.yml"
KiB = 1024
# Grafana's built-in variables, as a dashboard would expand them for a short time range
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def require(binary: str) -> str:
    """Absolute path of a needed program; fail loudly (never skip) when it is missing."""
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} is not installed: apt-get install -y prometheus", pytrace=False)
    return found


def scrape(url: str) -> dict[str, float]:
    """The depot's /-/metrics as {'name{label="v",...}': value} (labels sorted)."""
    with urllib.request.urlopen(url + "/-/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if k.startswith(name + "{") and all(w in k for w in want))


def worker_pids(depot: DepotProcess) -> list[int]:
    """PIDs of the worker processes forked by the depot master."""
    assert depot.proc is not None
    children = Path(f"/proc/{depot.proc.pid}/task/{depot.proc.pid}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def metrics_dir_of(pid: int) -> Path:
    """The multiprocess metrics directory a worker has mapped (found through /proc/PID/maps)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        match = re.search(r"(/\S*depot-metrics-[^/\s]+)/\S+\.db$", line)
        if match:
            return Path(match.group(1))
    raise AssertionError(f"worker {pid} maps no metrics file")


def requests_counted_by(directory: Path, pid: int) -> float:
    """depot_requests_total as counted by one worker alone (its own counter file)."""
    path = directory / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    metrics = MultiProcessCollector._read_metrics([str(path)])
    return sum(s.value for m in metrics.values() for s in m.samples if s.name == "depot_requests_total")


def rss_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll predicate() until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------------ rules and dashboard
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    promtool = require("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                          timeout=60, cwd=DASHBOARDS)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {case["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in t.get("alert_rule_test", [])}
    assert alerts and alerts == tested, f"alerts without a unit test: {alerts - tested}"
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:     # each alert: fires once, and not at all once
        outcomes = [bool(case["exp_alerts"]) for case in t["alert_rule_test"]]
        assert True in outcomes and False in outcomes, t["name"]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def expand(expr: str, repository: str) -> str:
    """Substitute Grafana's variables as Grafana would for the given repository regex."""
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    return expr.replace("${repository}", repository).replace("$repository", repository)


def test_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "repository"} <= variables
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for needed in ("hit ratio", "bytes saved", "by result", "p50 / p99", "upstream errors", "coalesced",
                   "store size vs quota", "evictions"):
        assert needed in titles, needed
    for title, expr in dashboard_exprs():
        leftover = re.findall(r"\$\w+", expand(expr, "x"))
        assert not leftover, (title, leftover)
        if not re.search(r"\(depot_store_bytes\)|depot_cache_max_bytes|depot_process|depot_workers|depot_gc"
                         r"|evicted_bytes", expr):     # the store-wide and process-wide series
            assert 'repository=~"$repository"' in expr, f"{title}: not filtered by $repository"


# ------------------------------------------------------------------------ workers
def test_counters_are_summed_over_workers_and_process_metrics_appear(upstream, depot_factory) -> None:
    upstream.put("one.txt", b"one" * 100)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}},
                          workers=2)
    pids = worker_pids(depot)
    assert len(pids) == 2
    directory = metrics_dir_of(pids[0])
    sent = 0
    for _ in range(3):       # new connection per request: the kernel spreads them over the workers
        results = [get(f"{depot.url}/remote/one.txt") for _ in range(10)]
        assert all(r.status == 200 for r in results)
        sent += 10
        per_worker = [requests_counted_by(directory, pid) for pid in pids]
        if all(n > 0 for n in per_worker):
            break
    assert all(n > 0 for n in per_worker), f"every request went to one worker: {per_worker}"
    assert sum(per_worker) == sent
    samples = scrape(depot.url)
    assert total(samples, "depot_requests_total", repository="remote") == sent
    assert total(samples, "depot_requests_total", repository="remote", format="generic", result="hit") == sent - 1
    wait_for(lambda: total(scrape(depot.url), "depot_responses_total", repository="remote", code="200") == sent,
             10, "the response counts (flushed every 2 s)")
    assert total(samples, "depot_upstream_requests_total", repository="remote", status="200") == 1

    samples = wait_for(lambda: (s := scrape(depot.url)) and s.get("depot_workers{}") == 2 and s, 10, "2 workers")
    actual = sum(rss_of(pid) for pid in pids)
    assert 0.6 * actual <= samples["depot_process_resident_memory_bytes{}"] <= 1.6 * actual
    assert samples["depot_process_open_fds{}"] > 10
    assert samples["depot_process_cpu_seconds_total{}"] > 0

    os.kill(pids[0], signal.SIGKILL)                  # the master restarts it; the dead one stops counting
    wait_for(lambda: len(worker_pids(depot)) == 2 and worker_pids(depot) != pids, 10, "a restarted worker")
    time.sleep(3)
    samples = scrape(depot.url)
    assert samples["depot_workers{}"] == 2
    assert total(samples, "depot_requests_total", repository="remote") == sent   # counters survive


# ------------------------------------------------------------------------ real Prometheus
class Prometheus:
    """A private /usr/bin/prometheus scraping one depot (or several nodes) every second."""

    def __init__(self, workdir: Path, target: str | list[str], rules: Path) -> None:
        binary = require("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": "depot", "metrics_path": "/-/metrics",
                                      "static_configs": [{"targets": [target] if isinstance(target, str) else target}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_for(self._ready, 30, f"prometheus to be ready:\n{self.log()}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(depot: DepotProcess) -> Prometheus:
        prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{depot.port}", RULES)
        started.append(prom)
        return prom
    yield start
    for prom in started:
        prom.stop()


def observed_repos(upstream_url: str, dead_url: str) -> dict[str, Any]:
    return {"remote": {"format": "generic", "type": "proxy", "upstream": upstream_url + "/",
                       "metadata_patterns": ["*.json"], "metadata_ttl": "1s", "negative_ttl": "30s"},
            "dead-remote": {"format": "generic", "type": "proxy", "upstream": dead_url + "/"},
            "files-local": {"format": "generic", "type": "hosted"},
            "files": {"format": "generic", "type": "group", "members": ["files-local", "remote"],
                      "deploy_to": "files-local"}}


def drive_traffic(depot: DepotProcess, upstream: Any) -> int:
    """Misses, hits, a coalesced slow fetch, 404s, upstream 503s, a dead upstream, a publish,
    and enough bytes to make the 1 MiB store evict. Returns how many requests 'remote' counted."""
    url = depot.url
    upstream.put("meta.json", b'{"v": 1}')
    for name in ("a", "b", "c"):
        upstream.put(f"big-{name}.bin", os.urandom(400 * KiB))
    upstream.put("slow.bin", os.urandom(256 * KiB))
    upstream.mode("/slow.bin", "slow", chunk=32 * KiB, delay=0.1)
    upstream.mode("/broken.bin", "status", status=503)
    assert all(r.status == 200 for r in get_many(f"{url}/remote/slow.bin", 6))     # 6: one fetch, coalesced
    for name in ("a", "b", "c"):                                                      # 6: misses then hits
        assert get(f"{url}/remote/big-{name}.bin").status == 200
        assert get(f"{url}/remote/big-{name}.bin").status == 200
    for _ in range(5):                                                                # 5: a miss, 4 hits
        assert get(f"{url}/remote/meta.json").status == 200
    time.sleep(1.2)
    assert get(f"{url}/remote/meta.json").headers["X-Cache"] == "REVALIDATED"         # 1 revalidated
    assert get(f"{url}/remote/missing.bin").status == 404                             # 1 negative (upstream)
    assert get(f"{url}/remote/missing.bin").status == 404                             # 1 negative (cached)
    assert get(f"{url}/remote/broken.bin").status == 502                              # 1 error
    assert get(f"{url}/dead-remote/x.bin").status in (502, 504)
    put = urllib.request.Request(f"{url}/files/tools/1.0/tool.txt", data=b"tool", method="PUT")
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 201
    assert get(f"{url}/files/tools/1.0/tool.txt").status == 200
    put = urllib.request.Request(f"{url}/files/tools/1.0/old.txt", data=b"old, unreferenced", method="PUT")
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 201
    delete = urllib.request.Request(f"{url}/files/tools/1.0/old.txt", method="DELETE")
    with urllib.request.urlopen(delete, timeout=10) as resp:
        assert resp.status == 204
    assert "removed 1 " in depot.run_cli("gc", "--grace", "0s").stdout     # `depot gc` is its own process
    return 21


def test_prometheus_scrapes_depot_and_every_dashboard_query_returns_data(
        upstream, depot_factory, prometheus_for) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    depot = depot_factory(observed_repos(upstream.url, dead), workers=2,
                          extra={"cache": {"max_size": "1MiB"}, "upstream": {"retries": 0}})
    prom = prometheus_for(depot)
    sent_remote = drive_traffic(depot, upstream)

    def settled() -> bool:
        got = prom.query('sum(depot_requests_total{repository="remote"})')
        return bool(got and float(got[0]["value"][1]) >= sent_remote
                    and prom.query("sum(depot_evictions_total) > 0") and prom.query("sum(depot_entries) > 0")
                    and prom.query("depot_gc_runs_total == 1")
                    and prom.query('depot_responses_total{repository="remote", code="502"}')
                    and prom.query('count_over_time(up{job="depot"}[1m]) >= 5'))
    wait_for(settled, 30, "prometheus to see the traffic, the evictions and the store")
    time.sleep(2)                                                  # a couple more scrapes for rate()

    got = {r["metric"]["result"]: float(r["value"][1]) for r in prom.query(
        'sum by (result) (depot_requests_total{repository="remote", format="generic"})')}
    assert sum(got.values()) == sent_remote, got
    assert (got["revalidated"], got["negative"], got["error"]) == (1, 2, 1), got
    assert got["miss"] >= 5 and got["hit"] >= 4, got
    assert got == {k: total(scrape(depot.url), "depot_requests_total", repository="remote", result=k)
                   for k in got}
    assert prom.query('depot_responses_total{repository="remote", code="502"}')
    assert prom.query('depot_upstream_requests_total{repository="dead-remote", status="error"}')
    assert prom.query('depot_publishes_total{repository="files-local", format="generic"} == 2')
    assert prom.query("sum(depot_coalesced_total) > 0")
    assert prom.query("depot_workers == 2")
    assert prom.query(f"depot_gc_freed_bytes_total == {len(b'old, unreferenced')}")

    repos = prom.api("label/repository/values", **{"match[]": "depot_requests_total"})
    assert {"remote", "files-local"} <= set(repos)
    empty = []
    for title, expr in dashboard_exprs():
        for repository in (".*", "remote|files-local"):
            if not prom.query(expand(expr, repository)):
                empty.append(f"{title}: {expand(expr, repository)}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == 5 and all(r["health"] == "ok" for r in rules), rules
