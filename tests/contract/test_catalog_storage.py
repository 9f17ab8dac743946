"""Contract of CatalogStorage and EntryStorage/NegativeCache (cache/storage.py)."""
from __future__ import annotations

import asyncio
import time

from depot.cache.entries import Entry
from depot.cache.storage import CatalogStorage, EntryStorage, NegativeCache

D1, D2, D3 = "1" * 64, "2" * 64, "3" * 64


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_implements_the_protocols(storage):
    assert isinstance(storage.catalog, CatalogStorage)
    assert isinstance(storage.entries, EntryStorage)
    assert isinstance(storage.entries, NegativeCache)


def test_put_new_is_create_only(storage):
    cat = storage.catalog
    assert run(cat.put_new("r", "a/b", D1, 1, "text/plain", {"k": 1}))
    assert not run(cat.put_new("r", "a/b", D2, 2))
    found = run(cat.get("r", "a/b"))
    assert (found.digest, found.size, found.content_type, found.meta) == (D1, 1, "text/plain", {"k": 1})
    assert run(cat.get("other", "a/b")) is None


def test_racing_creates_have_one_winner(storage):
    cat = storage.catalog

    async def race() -> list[bool]:
        return await asyncio.gather(*(cat.put_new("r", "p", d, 1) for d in (D1, D2, D3)))
    assert sorted(run(race())) == [False, False, True]


def test_swap_is_compare_and_swap(storage):
    cat = storage.catalog
    assert run(cat.swap("r", "doc", None, D1, 1))          # create when absent
    assert not run(cat.swap("r", "doc", None, D2, 1))      # ... only when absent
    assert not run(cat.swap("r", "doc", D3, D2, 1))        # stale expectation loses
    assert run(cat.swap("r", "doc", D1, D2, 2))
    assert run(cat.get("r", "doc")).digest == D2


def test_put_all_new_is_all_or_nothing(storage):
    cat = storage.catalog
    assert run(cat.put_new("r", "taken", D1, 1))
    rows = [("fresh-1", D2, 2, None, {}), ("taken", D3, 3, None, {})]
    assert not run(cat.put_all_new("r", rows))
    assert run(cat.get("r", "fresh-1")) is None
    assert run(cat.put_all_new("r", [("fresh-1", D2, 2, None, {}), ("fresh-2", D3, 3, None, {})]))
    assert [f.path for f in run(cat.list("r"))] == ["fresh-1", "fresh-2", "taken"]


def test_list_by_prefix_in_path_order(storage):
    cat = storage.catalog
    for path in ("b/2", "a/1", "b/1", "c"):
        run(cat.put("r", path, D1, 1))
    assert [f.path for f in run(cat.list("r", "b/"))] == ["b/1", "b/2"]
    assert [f.path for f in run(cat.list("r"))] == ["a/1", "b/1", "b/2", "c"]


def test_delete_with_tombstone(storage):
    cat = storage.catalog
    run(cat.put("r", "v1", D1, 1))
    run(cat.put("r", "v2", D2, 1))
    assert run(cat.delete("r", "v1", tombstone=True))
    assert run(cat.delete("r", "v2"))
    assert not run(cat.delete("r", "v2"))
    assert run(cat.tombstone("r", "v1")) == D1 and run(cat.tombstone("r", "v2")) is None


def test_entries_round_trip_and_stats(storage):
    entries = storage.entries
    now = time.time()
    entry = Entry("r", "k", D1, 10, "text/plain", {"ETag": '"x"'}, '"x"', None, "metadata", now, now + 60)
    run(entries.put(entry))
    assert run(entries.get("r", "k")) == entry
    run(entries.refresh(entry.refreshed(now + 5, 60)))
    assert run(entries.get("r", "k")).expires_at == now + 65
    assert run(entries.stats())["r"] == {"entries": 1, "bytes": 10}
    run(entries.delete("r", "k"))
    assert run(entries.get("r", "k")) is None


def test_negative_cache_expires(storage):
    neg = storage.entries
    neg.set_negative("r", "missing", 0.3, 404)
    assert neg.is_negative("r", "missing") and not neg.is_negative("r", "other")
    time.sleep(0.5)
    assert not neg.is_negative("r", "missing")
    neg.set_negative("r", "gone", 60, 410)
    neg.clear_negative("r", "gone")
    assert not neg.is_negative("r", "gone")


def test_commit_is_all_or_nothing_with_expectations(storage):
    from depot.cache.catalog import ANY, Write
    cat = storage.catalog
    assert run(cat.commit("r", [Write("a", D1, 1, expect=None), Write("b", D2, 2, expect=None, once=True)]))
    assert not run(cat.commit("r", [Write("c", D3, 3, expect=None), Write("a", D2, 1, expect=D3)]))
    assert run(cat.get("r", "c")) is None and run(cat.get("r", "a")).digest == D1
    assert run(cat.commit("r", [Write("a", D2, 1, expect=D1), Write("c", D3, 3, expect=ANY)]))
    assert run(cat.published_digest("r", "b")) == D2 and run(cat.published_digest("r", "a")) is None


def test_pins_outlive_entries(storage):
    entries = storage.entries
    run(entries.pin("r", "k", D1))
    assert run(entries.pinned("r", "k")) == D1 and run(entries.pinned("r", "other")) is None
