"""Memory per transfer stays bounded with object storage: a node streams a blob much larger
than its memory budget (hosted upload, S3 hits with a slow reader, a proxy fill) without its
resident memory growing with the blob. bench/scale_rss.py gives the 1 GiB figures."""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import requests

from test_scale import cluster  # noqa: F401  (the fixture: nodes on one database and bucket)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from scale_rss import peaks  # noqa: E402

MiB = 1024 * 1024
SIZE = 192 * MiB
BOUND = 80 * MiB        # growth allowed to any process of the node (a buffered blob would be SIZE)


def _blob(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for index in range(SIZE // (8 * MiB)):
            piece = hashlib.sha256(str(index).encode()).digest() * (8 * MiB // 32)
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(4 * MiB):
            yield block


def _read(url: str, results: list[str], slow: bool) -> None:
    digest, got, start = hashlib.sha256(), 0, time.monotonic()
    with requests.get(url, stream=True, timeout=300) as answer:
        for chunk in answer.iter_content(256 * 1024):
            digest.update(chunk)
            got += len(chunk)
            if slow and got < 64 * MiB:          # 32 MiB/s for the first 64 MiB
                time.sleep(max(0.0, got / (32 * MiB) - (time.monotonic() - start)))
    results.append(digest.hexdigest())


def _growth(node, before: list[int]) -> int:  # type: ignore[no-untyped-def]
    return max(after - ref for after, ref in zip(peaks(node), before, strict=False))


def test_a_blob_larger_than_memory_streams_through_s3(cluster, upstream, tmp_path):  # noqa: F811
    (node,) = cluster(1, extra={"cache": {"max_size": "4GiB"}})
    source = Path(upstream.root) / "big.bin"
    expect = _blob(source)
    requests.put(f"{node.url}/local/warm.bin", data=b"x" * MiB, timeout=30)
    assert requests.get(f"{node.url}/local/warm.bin", timeout=30).status_code == 200
    peaks(node)                                   # reset: what follows is measured on its own
    before = [int(line.split()[1]) * 1024 for pid in _pids(node)
              for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]

    put = requests.put(f"{node.url}/local/big.bin", data=_chunks(source), timeout=300,
                       headers={"X-Checksum-Sha256": expect})
    assert put.status_code == 201, put.text
    assert _growth(node, before) < BOUND

    for path in ("/local/big.bin", "/remote/big.bin"):      # an S3 hit, then a proxy fill
        results: list[str] = []
        readers = [threading.Thread(target=_read, args=(node.url + path, results, i == 0)) for i in range(3)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(300)
        assert results == [expect] * 3
        growth = _growth(node, before)
        assert growth < BOUND, f"{path}: a process grew by {growth / MiB:.0f} MiB"
    assert upstream.count("/big.bin") == 1


def _pids(node) -> list[int]:  # type: ignore[no-untyped-def]
    from scale_rss import processes
    return processes(node)
