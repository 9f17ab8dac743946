"""Profile one cold `pip install` through depot with pyinstrument (server side, in-process).

    .venv/bin/pip install pyinstrument
    .venv/bin/python bench/profile_cold.py [--packages 30]

Builds `--packages` small projects (a dependency chain), serves them from a static upstream
(tests/upstream.py), runs depot's app in this process under pyinstrument with a proxy `pypi`
in front of it, and installs the top project once with pip (--no-cache-dir, empty depot).
Prints the profile's top frames (and writes bench/profile_cold.html).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from pyinstrument import Profiler
    from pypi_fixtures import build_many, write_simple_project
    from upstream import start_upstream
    from depot_process import free_port

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", type=int, default=30, help="projects in the dependency chain")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="depot-profile-"))
    specs = [(f"prof-pkg{i}", "1.0", (f"prof-pkg{i + 1}",) if i + 1 < args.packages else ())
             for i in range(args.packages)]
    dists = build_many(work / "build", specs)
    for (project, _), dist in dists.items():
        write_simple_project(work / "up", project, dist.files)
    upstream = start_upstream(work / "up")
    port = free_port()
    from depot.proxy.config import validate
    config = validate({"listen": f"127.0.0.1:{port}", "data_dir": str(work / "data"), "access_log": True,
                       "open_access": True,
                       "repositories": {"pypi": {"format": "pypi", "type": "proxy",
                                                 "upstream": f"{upstream.url}/simple/"}}})
    from aiohttp import web
    from depot.proxy.app import build_app, with_hot_path
    from depot.proxy.access_log import BufferedAccessLogger
    import logging
    ready, stop = threading.Event(), threading.Event()
    profiler = Profiler(interval=0.0005, async_mode="disabled")

    def serve() -> None:
        async def run() -> None:
            app = build_app(config)
            runner = web.AppRunner(app, access_log=logging.getLogger("depot.access"),
                                   access_log_class=BufferedAccessLogger)
            await runner.setup()
            runner.server.request_handler = with_hot_path(app, runner.server.request_handler)
            await web.TCPSite(runner, "127.0.0.1", port).start()
            profiler.start()          # the server's thread (the event loop and what runs on it)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            profiler.stop()
            await runner.cleanup()
        asyncio.run(run())

    (work / "data").mkdir()
    thread = threading.Thread(target=serve)
    thread.start()
    ready.wait(30)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "DEPOT_"))}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "--target",
                    str(work / "target"), "--index-url", f"http://127.0.0.1:{port}/pypi/simple/", "prof-pkg0"],
                   check=True, env=env, capture_output=True, timeout=600)
    print(f"cold install of {args.packages} projects through depot: {time.monotonic() - started:.2f} s")
    stop.set()
    thread.join()
    upstream.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    (ROOT / "bench" / "profile_cold.html").write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
