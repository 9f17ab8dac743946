"""The activity store behind the per-repository UI pages (cache/activity.py), on SQLite and on
PostgreSQL: per-minute counts add up with what was counted, downloads are grouped by package,
the last errors are kept newest first and bounded."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from depot.cache import activity, stats
from depot.cache.metrics import RepoMetrics
from depot.cache.storage import open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def meta_db(request: Any, tmp_path: Path) -> Iterator[Any]:
    url = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    storage = open_storage(tmp_path / "data", "local", database_url=url)
    try:
        yield storage.db
    finally:
        storage.close()


def test_flushes_add_up_and_read_back(meta_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(activity.RESOLVERS, "generic", lambda path: (path.split("/")[0], "") if "/" in path else None)
    repo = f"r{time.monotonic_ns()}"          # metric children are process-wide: a fresh repository
    metrics = RepoMetrics(repo, "generic")
    get = SimpleNamespace(method="GET", path=f"/{repo}/tools/tool-1.0.tgz")
    index = SimpleNamespace(method="GET", path=f"/{repo}/index")

    async def main() -> dict[str, Any]:
        for hits in (3, 2):                    # two flushes
            for _ in range(hits):
                metrics.result("hit")
                metrics.from_cache.inc(100)
                activity.RECORDER.download(repo, "generic", get, "hit")
            metrics.result("miss")
            metrics.from_upstream.inc(7)
            activity.RECORDER.download(repo, "generic", index, "miss")          # no package: not a download
            activity.RECORDER.download(repo, "generic", get, "negative")        # not an answer with a file
            await stats.add_counts(meta_db, [metrics])
        for i in range(activity.KEEP_ERRORS + 5):
            activity.RECORDER.error(repo, "upstream", 503, f"key{i}", "upstream answered 503")
        await stats.add_counts(meta_db, [metrics])
        store = activity.ActivityStore(meta_db)
        return {"history": await store.history([repo, "other"], int(time.time() // 60) - 5),
                "top": await store.top_packages(repo), "errors": await store.last_errors(repo, 100),
                "counters": await stats.persisted_counts(meta_db)}

    got = asyncio.run(main())
    totals: dict[str, int] = {}
    for counts in got["history"][repo].values():
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    assert totals == {"hit": 5, "miss": 2, "bytes:cache": 500, "bytes:upstream": 14}
    assert got["history"]["other"] == {}
    assert {k: got["counters"][repo][k] for k in ("hit", "miss")} == {"hit": 5, "miss": 2}
    assert [(p["package"], p["downloads"]) for p in got["top"]] == [("tools", 5)]
    assert len(got["errors"]) == activity.KEEP_ERRORS
    assert got["errors"][0]["path"] == f"key{activity.KEEP_ERRORS + 4}" and got["errors"][0]["status"] == "503"
    assert [e["time"] for e in got["errors"]] == sorted((e["time"] for e in got["errors"]), reverse=True)


def test_request_paths_map_to_the_path_a_format_sees() -> None:
    assert activity.path_in_repository("/npm-remote/cool-pkg/-/cool-pkg-1.0.0.tgz") == "cool-pkg/-/cool-pkg-1.0.0.tgz"
    assert activity.path_in_repository("/v2/hub/team/app/blobs/sha256:ab") == "team/app/blobs/sha256:ab"
    assert activity.path_in_repository("/solo") == ""
