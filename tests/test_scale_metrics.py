"""Metrics of several nodes: every node labels its series with `node`, and the Grafana dashboard
adds the nodes up (one real Prometheus scraping two depot nodes on one PostgreSQL and Ceph)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from test_observability import DASHBOARD, RULES, Prometheus, dashboard_exprs, expand, require
from test_scale import cluster  # noqa: F401  (the fixture: nodes on one database and bucket)

AGGREGATORS = ("sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
               "quantile", "count_values")
_AGGREGATION = re.compile(r"\b(?:%s)\s*(?:(by|without)\s*\(([^)]*)\))?\s*$" % "|".join(AGGREGATORS))


def _closing(expr: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced parentheses in {expr}")


def _drops_node(clause: str | None, labels: str | None) -> bool:
    names = {name.strip() for name in (labels or "").split(",")}
    return clause is None or (clause == "by") != ("node" in names)


def _summed_over_nodes(expr: str, position: int) -> bool:
    """Whether the series selected at `position` pass through an aggregation that drops `node`
    (`sum(…)`, `sum by (repository) (…)`, `sum(…) by (le)`, `max without (node) (…)`)."""
    depth = 0
    for index in range(position - 1, -1, -1):
        char = expr[index]
        if char == ")":
            depth += 1
        elif char == "(" and depth:
            depth -= 1
        elif char == "(":
            head = _AGGREGATION.search(expr[:index])
            if head is not None:
                after = re.match(r"\s*(by|without)\s*\(([^)]*)\)", expr[_closing(expr, index) + 1:])
                clause, labels = (head.group(1), head.group(2)) if head.group(1) or not after else after.groups()
                if _drops_node(clause, labels):
                    return True
    return False


def unsummed_selectors(expr: str) -> list[str]:
    """The depot_* series of a PromQL expression that reach its result per node."""
    return [m.group() for m in re.finditer(r"\bdepot_\w+", expr) if not _summed_over_nodes(expr, m.start())]


def test_the_checker_tells_summed_from_per_node_expressions():
    assert unsummed_selectors('sum by (repository) (rate(depot_requests_total{x="y"}[1m]))') == []
    assert unsummed_selectors("histogram_quantile(0.5, sum by (le) (rate(depot_a_bucket[1m])))") == []
    assert unsummed_selectors("sum(rate(depot_a[1m])) by (repository) / max(depot_b)") == []
    assert unsummed_selectors("max without (node) (depot_a)") == []
    assert unsummed_selectors("rate(depot_a[1m])") == ["depot_a"]
    assert unsummed_selectors("sum by (node) (depot_a) / sum(depot_b)") == ["depot_a"]
    assert unsummed_selectors("max without (repository) (depot_a)") == ["depot_a"]
    assert unsummed_selectors("sum(depot_a) / depot_b") == ["depot_b"]


def test_every_dashboard_expression_sums_over_nodes(tmp_path: Path):
    """Each panel query aggregates the `node` label away, and promtool accepts its syntax."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 25
    per_node = {title: unsummed_selectors(expr) for title, expr in exprs if unsummed_selectors(expr)}
    assert per_node == {}, f"panels that show one line per node: {per_node}"
    rules = tmp_path / "dashboard.rules.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, (_, expr) in enumerate(exprs):
        lines += [f"      - record: dashboard:expr_{index}", f"        expr: '{expand(expr, '.*')}'"]
    rules.write_text("\n".join(lines) + "\n")
    checked = subprocess.run([require("promtool"), "check", "rules", str(rules)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _samples(node: Any) -> dict[str, list[dict[str, str]]]:
    text = requests.get(f"{node.url}/-/metrics", timeout=30).text
    return {family.name: [sample.labels for sample in family.samples]
            for family in text_string_to_metric_families(text)}


def test_two_nodes_label_their_metrics_and_the_dashboard_adds_them_up(cluster, upstream, tmp_path):  # noqa: F811
    body = os.urandom(300 * 1024)
    upstream.put("pkg/a.tgz", body)
    a, b = cluster(2, node_ids=["alpha", None])
    for node, count in ((a, 3), (b, 2)):
        for _ in range(count):
            got = requests.get(f"{node.url}/remote/pkg/a.tgz", timeout=30)
            assert got.status_code == 200 and got.content == body
    # every sample of each node carries its own node label (B: the host name, no `node` configured)
    for node, name in ((a, "alpha"), (b, socket.gethostname())):
        families = _samples(node)
        assert families["depot_requests"], families.keys()
        for family, labels in families.items():
            assert all(label.get("node") == name for label in labels), (family, name, labels[:2])

    prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], RULES)
    try:
        def query(expr: str) -> list[dict[str, Any]]:
            return prom.query(expand(expr, ".*"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = query("count(count by (node) (depot_requests_total))")
            stored = query('sum(depot_store_bytes{repository="remote"})')
            if nodes and nodes[0]["value"][1] == "2" and stored and float(stored[0]["value"][1]) == 2 * len(body):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"prometheus did not see both nodes: {nodes} {stored}\n{prom.log()}")
        for title, expr in dashboard_exprs():
            for series in query(expr):
                assert "node" not in series["metric"], (title, series)
        # requests are added up over the nodes; the shared store is counted once, not once per node
        total = query('sum by (repository) (depot_requests_total{repository="remote"})')
        assert [float(s["value"][1]) for s in total] == [5.0]
        exprs = dict((title + expr, expr) for title, expr in dashboard_exprs())
        whole = next(e for e in exprs.values() if e.startswith("sum(max by (repository) (depot_store_bytes))")
                     and "/" not in e)
        assert float(query(whole)[0]["value"][1]) == len(body)
    finally:
        prom.stop()
    assert DASHBOARD.is_file()
