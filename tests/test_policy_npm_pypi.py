"""Release cooldown at the proxy (issue 18, tests 1, 2 and 5) with the real clients: a static
upstream publishes version 1.0.0 ten days ago and 1.1.0 an hour ago; with `cooldown: 3d` every
client resolves 1.0.0, a pinned 1.1.0 fails with depot's message, `exempt` lets it through, report
mode changes nothing, and a rule change (restart) re-filters cached metadata without refetching."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from depot_process import DepotProcess
from npm_fixtures import NpmCli, installed_version, new_project, static_packument

DAY = 86400


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def npm_tarball(tmp: Path, name: str, version: str) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in (("package/package.json", json.dumps({"name": name, "version": version})),
                           ("package/index.js", f"module.exports = {version!r};\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def npm_upstream(upstream: Any, tmp_path: Path) -> Any:
    now = time.time()
    tarballs = {v: npm_tarball(tmp_path, "cool-pkg", v) for v in ("1.0.0", "1.1.0")}
    doc = static_packument("cool-pkg", tarballs, f"{upstream.url}/tarballs")
    doc["time"].update({"1.0.0": iso(now - 10 * DAY), "1.1.0": iso(now - 3600)})
    doc["dist-tags"] = {"latest": "1.1.0"}
    upstream.put("cool-pkg", json.dumps(doc).encode())
    for version, data in tarballs.items():
        upstream.put(f"tarballs/cool-pkg-{version}.tgz", data)
    return upstream


def anonymous_npm(home: Path, registry: str) -> NpmCli:
    """The isolated npm CLI with no credentials at all (a proxy is read anonymously)."""
    npm = NpmCli(home, registry)
    npm.userconfig.write_text("")
    return npm


def start(tmp: Path, upstream_url: str, policy: dict[str, Any], fmt: str = "npm") -> DepotProcess:
    repos = {f"{fmt}-remote": {"format": fmt, "type": "proxy", "upstream": upstream_url + "/"}}
    return DepotProcess(tmp, repos, extra={"policy": policy})


def test_npm_cooldown_hides_young_versions_and_refuses_pins(tmp_path: Path, npm_upstream: Any) -> None:
    depot = start(tmp_path / "d", npm_upstream.url, {"cooldown": "3d"})
    try:
        npm = anonymous_npm(tmp_path / "npm", f"{depot.url}/npm-remote/")
        tags = json.loads(npm.ok("view", "cool-pkg", "dist-tags", "--json").stdout)
        assert tags == {"latest": "1.0.0"}
        project = new_project(tmp_path / "p1", {})
        npm.ok("install", "cool-pkg", cwd=project)
        assert installed_version(project, "cool-pkg") == "1.0.0"
        pinned = npm.run("install", "cool-pkg@1.1.0", cwd=new_project(tmp_path / "p2", {}))
        assert pinned.returncode != 0
        direct = requests.get(f"{depot.url}/npm-remote/cool-pkg/-/cool-pkg-1.1.0.tgz")
        assert direct.status_code == 403 and "cooldown" in direct.json()["error"]
        assert direct.headers["X-Depot-Policy"].startswith("cooldown until ")
        assert npm_upstream.count("/tarballs/cool-pkg-1.1.0.tgz") == 0
        metrics = requests.get(f"{depot.url}/-/metrics").text
        assert 'rule="cooldown"' in metrics and 'repository="npm-remote"' in metrics
        fetched = npm_upstream.count("/cool-pkg")
        # test 5: new rules (restart with exempt) re-filter the cached packument, no refetch
        config = yaml.safe_load(depot.config_path.read_text())
        config["policy"]["exempt"] = ["cool-pkg"]
        depot.config_path.write_text(yaml.safe_dump(config))
        depot.restart()
        tags = json.loads(npm.ok("view", "cool-pkg", "dist-tags", "--json").stdout)
        assert tags == {"latest": "1.1.0"}
        assert npm_upstream.count("/cool-pkg") == fetched
        project = new_project(tmp_path / "p3", {})
        npm.ok("install", "cool-pkg@1.1.0", cwd=project)
        assert installed_version(project, "cool-pkg") == "1.1.0"
    finally:
        depot.stop()


def test_npm_report_mode_changes_nothing_and_counts(tmp_path: Path, npm_upstream: Any) -> None:
    depot = start(tmp_path / "d", npm_upstream.url, {"cooldown": "3d", "mode": "report"})
    try:
        npm = anonymous_npm(tmp_path / "npm", f"{depot.url}/npm-remote/")
        assert json.loads(npm.ok("view", "cool-pkg", "dist-tags", "--json").stdout) == {"latest": "1.1.0"}
        metrics = requests.get(f"{depot.url}/-/metrics").text
        assert ('depot_policy_blocked_total{format="npm",mode="report",repository="npm-remote",rule="cooldown"} 1.0'
                in metrics)
    finally:
        depot.stop()


@pytest.fixture
def pypi_upstream(upstream: Any, tmp_path: Path) -> Any:
    """A PEP 691 project page with upload times (1.0 ten days ago, 1.1 an hour ago) and wheels."""
    import hashlib

    from pypi_fixtures import build_dist
    now = time.time()
    files = []
    for version, uploaded in (("1.0", now - 10 * DAY), ("1.1", now - 3600)):
        wheel = build_dist(tmp_path / "build", "cool-pkg", version).wheel
        upstream.put(f"packages/{wheel.name}", wheel.read_bytes())
        files.append({"filename": wheel.name, "url": f"../../packages/{wheel.name}",
                      "hashes": {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()},
                      "upload-time": iso(uploaded)})
    page = {"meta": {"api-version": "1.1"}, "name": "cool-pkg", "files": files, "versions": ["1.0", "1.1"]}
    upstream.put("simple/cool-pkg/index.html", json.dumps(page).encode())
    upstream.young = (files[1]["filename"], files[1]["hashes"]["sha256"])
    return upstream


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=180, env=env, cwd=cwd)


def test_pypi_cooldown_with_pip_and_uv(tmp_path: Path, pypi_upstream: Any) -> None:
    depot = start(tmp_path / "d", pypi_upstream.url + "/simple", {"cooldown": "3d"}, fmt="pypi")
    index = f"{depot.url}/pypi-remote/simple/"
    try:
        page = requests.get(index + "cool-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
        assert [f["filename"].split("-")[1] for f in page["files"]] == ["1.0"] and page["versions"] == ["1.0"]
        html = requests.get(index + "cool-pkg/").text
        assert "cool_pkg-1.0-" in html and "cool_pkg-1.1-" not in html
        got = pip("download", "--no-deps", "--index-url", index, "-d", str(tmp_path / "dl"), "cool-pkg",
                  cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert [p.name.split("-")[1] for p in (tmp_path / "dl").iterdir()] == ["1.0"]
        pinned = pip("download", "--no-deps", "--index-url", index, "-d", str(tmp_path / "dl2"), "cool-pkg==1.1",
                     cwd=tmp_path)
        assert pinned.returncode != 0
        filename, sha = pypi_upstream.young          # as a lockfile with URLs would name it
        direct = pip("download", "--no-deps", "-d", str(tmp_path / "dl3"),
                     f"{depot.url}/pypi-remote/files/cool-pkg/{sha}/{filename}", cwd=tmp_path)
        assert direct.returncode != 0 and "cooldown" in direct.stdout + direct.stderr
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
        env.update({"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_NO_CONFIG": "1"})
        venv = tmp_path / "venv"
        subprocess.run([uv, "venv", str(venv)], check=True, capture_output=True, env=env, timeout=120)
        done = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", index,
                               "cool-pkg"], capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        shown = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import importlib.metadata as m; print(m.version('cool-pkg'))"],
                               capture_output=True, text=True, timeout=60)
        assert shown.stdout.strip() == "1.0"
    finally:
        depot.stop()


def test_pnpm_and_yarn_see_the_same_filtered_view(tmp_path: Path, npm_upstream: Any) -> None:
    pnpm, yarn = shutil.which("pnpm"), shutil.which("yarn")
    assert pnpm and yarn, "pnpm and yarn 4 are required (tests/clients/policy.sh installs them)"
    depot = start(tmp_path / "d", npm_upstream.url, {"cooldown": "3d"})
    registry = f"{depot.url}/npm-remote/"
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith(("npm_config_", "yarn_"))}
    env.update({"HOME": str(tmp_path / "home"), "npm_config_registry": registry,
                "npm_config_userconfig": str(tmp_path / "npmrc"), "COREPACK_ENABLE_STRICT": "0"})
    (tmp_path / "npmrc").write_text("")
    try:
        project = new_project(tmp_path / "pnpm-project", {})
        done = subprocess.run([pnpm, "add", "cool-pkg", "--registry", registry, "--store-dir",
                               str(tmp_path / "pnpm-store")], cwd=project, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed_version(project, "cool-pkg") == "1.0.0"
        refused = subprocess.run([pnpm, "add", "cool-pkg@1.1.0", "--registry", registry, "--store-dir",
                                  str(tmp_path / "pnpm-store")], cwd=project, env=env, capture_output=True,
                                 text=True, timeout=300)
        assert refused.returncode != 0
        ydir = tmp_path / "yarn-project"
        ydir.mkdir()
        (ydir / "package.json").write_text(json.dumps({"name": "y", "version": "1.0.0", "private": True}))
        (ydir / ".yarnrc.yml").write_text(yaml.safe_dump({
            "npmRegistryServer": registry.rstrip("/"), "unsafeHttpWhitelist": ["127.0.0.1"],
            "enableGlobalCache": False, "cacheFolder": str(tmp_path / "yarn-cache"), "nodeLinker": "node-modules",
            "enableTelemetry": False, "npmMinimalAgeGate": 0}))   # yarn's own gate off: depot's view only
        added = subprocess.run([yarn, "add", "cool-pkg"], cwd=ydir, env=env, capture_output=True, text=True,
                               timeout=300)
        assert added.returncode == 0, added.stdout + added.stderr
        assert installed_version(ydir, "cool-pkg") == "1.0.0"
    finally:
        depot.stop()
