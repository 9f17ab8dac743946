"""The web UI (/-/ui/) in a real headless Chromium, driven over the DevTools protocol.

Needs Debian's `chromium` package (/usr/bin/chromium); the tests fail (never skip) when it is
missing. Chromium runs on 127.0.0.1 with a private profile and is stopped by its PID.
Console messages of level error, uncaught exceptions and failed loads are collected and must
be none; screenshots land in the test's tmp dir.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from depot_process import DepotProcess, stop_group
from http_util import get

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                  "--window-size=1200,1000")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: apt-get install -y chromium", pytrace=False)


class Chromium:
    """A headless Chromium with a private profile, reachable over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile.parent / "chromium.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                          "about:blank"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"chromium did not start:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def page_ws_url(self) -> str:
        """The DevTools websocket of a fresh page target."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["webSocketDebuggerUrl"]

    def stop(self) -> None:
        stop_group(self.proc)


class Page:
    """One page over a DevTools websocket: calls, and the problems the page reported."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.problems.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                      for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append("exception: " + str(details.get("exception", {}).get("description")
                                                     or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.problems.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            self.problems.append(f"dialog: {params.get('message')}")
        self.events.append(event)

    async def _receive(self, timeout: float) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"devtools connection closed: {message}")
        return json.loads(message.data)

    async def call(self, method: str, timeout: float = 20, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self._receive(timeout)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)

    async def wait_event(self, method: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            message = await self._receive(max(0.1, deadline - time.monotonic()))
            self._note(message)

    async def goto(self, url: str) -> None:
        self.events.clear()
        result = await self.call("Page.navigate", url=url)
        assert not result.get("errorText"), result
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_true(self, expression: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout}s: {expression}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data


async def open_page(chromium: Chromium, session: aiohttp.ClientSession) -> Page:
    ws = await session.ws_connect(chromium.page_ws_url(), max_msg_size=0)
    page = Page(ws)
    for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
        await page.call(domain)
    return page


def run_in_page(chromium: Chromium, script: Any) -> Any:
    """Run `await script(page)` against a fresh page; returns what it returns."""
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            page = await open_page(chromium, session)
            try:
                return await script(page)
            finally:
                await page.ws.close()
    return asyncio.run(main())


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield browser
    browser.stop()


UI_REPOS = {
    "files-remote": {"format": "generic", "type": "proxy", "upstream": "UPSTREAM/"},
    "files-local": {"format": "generic", "type": "hosted"},
    "files": {"format": "generic", "type": "group", "members": ["files-local", "files-remote"],
              "deploy_to": "files-local"},
    "pypi-local": {"format": "pypi", "type": "hosted"},
    "npm-remote": {"format": "npm", "type": "proxy", "upstream": "UPSTREAM/"},
}


@pytest.fixture(scope="module")
def ui_depot(module_upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DepotProcess]:
    repos = json.loads(json.dumps(UI_REPOS).replace("UPSTREAM", module_upstream.url))
    depot = DepotProcess(tmp_path_factory.mktemp("ui-depot"), repos, workers=2)
    module_upstream.put("dist/app-1.0.tgz", os.urandom(3000))
    module_upstream.put("dist/app-1.1.tgz", os.urandom(5000))
    for path in ("dist/app-1.0.tgz", "dist/app-1.1.tgz", "dist/app-1.0.tgz"):
        assert get(f"{depot.url}/files-remote/{path}").status == 200
    put = urllib.request.Request(f"{depot.url}/files/tools/2.0/tool.bin", data=b"x" * 1234, method="PUT")
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 201
    yield depot
    depot.stop()


def keep_busy(url: str, seconds: float) -> threading.Thread:
    """Hits on `url` in the background for a while (so the live chart has something to draw)."""
    def run() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            get(url)
            time.sleep(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


GREEN_PIXELS = """(() => {
  const c = document.getElementById("hitchart");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) { if (d[i + 1] > d[i] + 40 && d[i + 1] > d[i + 2] + 30) n++; }
  return n;
})()"""


def assert_png(data: bytes, path: Path) -> None:
    assert path.exists() and path.stat().st_size > 2000 and data.startswith(PNG_MAGIC), path


def test_repository_list_loads_cleanly_with_a_live_chart(chromium, ui_depot, tmp_path) -> None:
    busy = keep_busy(f"{ui_depot.url}/files-remote/dist/app-1.0.tgz", 10)

    async def script(page: Page) -> dict[str, Any]:
        await page.goto(f"{ui_depot.url}/-/ui/")
        await page.wait_true('Number(document.getElementById("hitchart").dataset.polls) >= 4'
                             ' && Number(document.getElementById("hitrate").textContent) > 0')
        green = await page.evaluate(GREEN_PIXELS)
        shot = await page.screenshot(tmp_path / "ui-index.png")
        await page.goto(f"{ui_depot.url}/-/ui/")      # counts reach the table once flushed (every 2 s)
        rows = await page.evaluate('[...document.querySelectorAll("tbody tr")].map('
                                   'r => [...r.cells].map(c => c.textContent.trim()))')
        await page.evaluate('document.querySelector(\'a[href="repositories/pypi-local"]\').click()')
        await page.wait_event("Page.loadEventFired")
        location = await page.evaluate("location.pathname")
        return {"rows": rows, "green": green, "shot": shot, "location": location, "problems": page.problems}

    got = run_in_page(chromium, script)
    busy.join()
    assert got["problems"] == []
    assert_png(got["shot"], tmp_path / "ui-index.png")
    table = {row[0]: row[1:] for row in got["rows"]}
    assert sorted(table) == sorted(UI_REPOS)
    assert table["files-remote"][:4] == ["generic", "proxy", "2", "7.8 KiB"]
    assert table["files-remote"][4].endswith("%")
    assert table["files-local"][:4] == ["generic", "hosted", "1", "1.2 KiB"]
    assert table["pypi-local"][:2] == ["pypi", "hosted"]
    assert got["green"] > 20, "the hits line was not drawn"
    assert got["location"] == "/-/ui/repositories/pypi-local"


def test_repository_pages_browse_and_show_snippets(chromium, ui_depot, tmp_path) -> None:
    base = ui_depot.url
    pages = {"files-remote": "?path=dist/", "files-local": "?path=tools/2.0/", "pypi-local": "",
             "npm-remote": "", "files": ""}

    async def script(page: Page) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, query in pages.items():
            await page.goto(f"{base}/-/ui/repositories/{name}{query}")
            await page.wait_true('Number(document.getElementById("hitchart").dataset.polls) >= 1')
            seen[name] = await page.evaluate(
                '({snippets: [...document.querySelectorAll("pre.snippet")].map(p => p.textContent),'
                ' cells: [...document.querySelectorAll("#browse tbody td:first-child")].map(c => c.textContent),'
                ' links: [...document.querySelectorAll("#browse tbody td a, ol a")].map(a => a.href)})')
            seen[name]["shot"] = await page.screenshot(tmp_path / f"ui-{name}.png")
        seen["problems"] = page.problems
        return seen

    got = run_in_page(chromium, script)
    assert got["problems"] == []
    for name in pages:
        assert_png(got[name]["shot"], tmp_path / f"ui-{name}.png")
    assert got["files-remote"]["cells"] == ["app-1.0.tgz", "app-1.1.tgz"]
    assert f"{base}/files-remote/dist/app-1.1.tgz" in got["files-remote"]["links"]
    assert got["files-local"]["cells"] == ["tool.bin"]
    assert f"{base}/files-local/tools/2.0/tool.bin" in got["files-local"]["links"]
    creds = "$REGISTRY_USER:$REGISTRY_TOKEN"
    assert any(f'curl -f -u "{creds}" -T file.tgz' in s and f"{base}/files-local/" in s
               for s in got["files-local"]["snippets"])
    # a private hosted repository: publishing and installs with credentials, no anonymous pip.conf
    assert any(f"twine upload --repository-url {base}/pypi-local/" in s for s in got["pypi-local"]["snippets"])
    assert any(f'--index-url "http://{creds}@{base[7:]}/pypi-local/simple/"' in s for s in got["pypi-local"]["snippets"])
    assert not any("index-url = " in s for s in got["pypi-local"]["snippets"])
    assert got["npm-remote"]["snippets"][0] == f"registry={base}/npm-remote/\n"
    assert not any("npm publish" in s for s in got["npm-remote"]["snippets"])   # a proxy takes no publish
    assert got["files"]["links"] == [f"{base}/-/ui/repositories/files-local", f"{base}/-/ui/repositories/files-remote"]


def test_snippet_follows_the_public_url_of_a_trusted_proxy(ui_depot) -> None:
    page = get(f"{ui_depot.url}/-/ui/repositories/pypi-local",
               headers={"X-Forwarded-Host": "depot.example.test", "X-Forwarded-Proto": "https"})
    text = page.body.decode()
    assert page.status == 200 and "https://$REGISTRY_USER:$REGISTRY_TOKEN@depot.example.test/pypi-local/simple/" in text
    assert "trusted-host" not in text


def test_everything_is_escaped(chromium, ui_depot) -> None:
    missing = get(f"{ui_depot.url}/-/ui/repositories/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert missing.status == 404
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in missing.body and b"<script>alert" not in missing.body
    evil = "<img src=x onerror=window.pwned=1>/"

    async def script(page: Page) -> dict[str, Any]:
        query = urllib.parse.urlencode({"path": evil})
        await page.goto(f"{ui_depot.url}/-/ui/repositories/files-local?{query}")
        await page.wait_true('Number(document.getElementById("hitchart").dataset.polls) >= 1')
        return {"pwned": await page.evaluate("window.pwned === undefined ? null : window.pwned"),
                "images": await page.evaluate('document.querySelectorAll("img").length'),
                "crumbs": await page.evaluate('document.querySelector("nav.crumbs").textContent'),
                "problems": page.problems}

    got = run_in_page(chromium, script)
    assert got["problems"] == [] and got["pwned"] is None and got["images"] == 0
    assert "<img src=x onerror=window.pwned=1>" in got["crumbs"]


def test_stats_api_sums_the_workers(ui_depot) -> None:
    stats = json.loads(get(f"{ui_depot.url}/-/api/stats").body)
    assert set(stats["repositories"]) == set(UI_REPOS)
    remote = stats["repositories"]["files-remote"]
    assert remote["format"] == "generic" and remote["type"] == "proxy"
    with urllib.request.urlopen(f"{ui_depot.url}/-/metrics", timeout=10) as resp:
        exposition = resp.read().decode()
    from prometheus_client.parser import text_string_to_metric_families
    hits = sum(s.value for f in text_string_to_metric_families(exposition) for s in f.samples
               if s.name == "depot_requests_total" and s.labels["repository"] == "files-remote"
               and s.labels["result"] == "hit")
    assert remote["results"]["hit"] == hits >= 1
    assert remote["results"]["miss"] == 2
    assert remote["bytes"]["cache"] > 0 and remote["bytes"]["upstream"] == 8000


def test_ui_shows_only_what_the_requester_may_read(module_upstream, tmp_path) -> None:
    repos = {"files-remote": {"format": "generic", "type": "proxy", "upstream": module_upstream.url + "/"},
             "secret-local": {"format": "generic", "type": "hosted"}}
    depot = DepotProcess(tmp_path / "secure", repos, secure=True)
    try:
        admin = {"Authorization": "Basic " + base64.b64encode(
            f"admin:{DepotProcess.ADMIN_PASSWORD}".encode()).decode()}
        anonymous = get(f"{depot.url}/-/ui/").body.decode()
        assert "files-remote" in anonymous and "secret-local" not in anonymous
        denied = get(f"{depot.url}/-/ui/repositories/secret-local")
        assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert "secret-local" not in json.loads(get(f"{depot.url}/-/api/stats").body)["repositories"]
        assert "secret-local" in get(f"{depot.url}/-/ui/", headers=admin).body.decode()
        assert get(f"{depot.url}/-/ui/repositories/secret-local", headers=admin).status == 200
        wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}
        assert get(f"{depot.url}/-/ui/", headers=wrong).status == 401
    finally:
        depot.stop()
