"""Malicious-package and vulnerability records in OSV format, imported from a file an operator
brings in (a zip or a folder of OSV JSON documents, e.g. the OpenSSF malicious-packages data),
kept in the metadata database, and turned into per-format deny records (gate.Advisory)."""
from __future__ import annotations

import json
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .gate import Advisory

# OSV ecosystem -> depot format
ECOSYSTEMS = {
    "PyPI": "pypi", "npm": "npm", "Maven": "maven", "Go": "go", "crates.io": "cargo", "NuGet": "nuget",
    "RubyGems": "rubygems", "Packagist": "composer", "Hex": "hex", "Pub": "pub", "ConanCenter": "conan",
    "Debian": "debian", "CRAN": "cran", "SwiftURL": "swift",
}
SEVERITY_ORDER = ("LOW", "MODERATE", "MEDIUM", "HIGH", "CRITICAL")

SCHEMA = """
CREATE TABLE IF NOT EXISTS advisories (
    format TEXT NOT NULL,
    package TEXT NOT NULL,
    id TEXT NOT NULL,
    malicious INTEGER NOT NULL,
    severity TEXT,
    affected TEXT NOT NULL,
    PRIMARY KEY (format, package, id)
);
CREATE TABLE IF NOT EXISTS advisory_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value REAL NOT NULL);
"""


def iter_documents(source: Path) -> Iterator[dict[str, Any]]:
    """Every OSV JSON document in a zip file or under a folder (other files are ignored)."""
    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            yield json.loads(path.read_text())
        return
    if not zipfile.is_zipfile(source):
        yield json.loads(source.read_text())
        return
    with zipfile.ZipFile(source) as archive:
        for name in archive.namelist():
            if name.endswith(".json"):
                yield json.loads(archive.read(name))


def _severity(doc: dict[str, Any]) -> str | None:
    text = str((doc.get("database_specific") or {}).get("severity") or "").upper()
    return text if text in SEVERITY_ORDER else None


def records(doc: dict[str, Any]) -> Iterator[tuple[str, str, str, bool, str | None, dict[str, Any]]]:
    """(format, package, id, malicious, severity, affected) for each affected package of one document."""
    osv_id = str(doc.get("id") or "")
    if not osv_id:
        raise ValueError("an OSV document without an id")
    malicious = osv_id.startswith("MAL-") or "malicious" in str(doc.get("summary", "")).lower()
    for item in doc.get("affected") or []:
        pkg = item.get("package") or {}
        fmt = ECOSYSTEMS.get(str(pkg.get("ecosystem", "")).split(":")[0])
        name = pkg.get("name")
        if fmt is None or not name:
            continue
        ranges = []
        for rng in item.get("ranges") or []:
            introduced = fixed = last = None
            for event in rng.get("events") or []:
                introduced = event.get("introduced", introduced)
                fixed = event.get("fixed", fixed)
                last = event.get("last_affected", last)
            ranges.append([introduced, fixed, last])
        versions = [str(v) for v in item.get("versions") or []]
        everything = not versions and (not ranges or any(r == ["0", None, None] for r in ranges))
        yield fmt, str(name), osv_id, malicious, _severity(doc), {
            "versions": versions, "ranges": ranges, "all": everything}


def import_into(conn: sqlite3.Connection, source: Path,
                progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Load a dump in one transaction (replacing records with the same id); (documents, records)."""
    conn.executescript(SCHEMA)
    documents = rows = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for doc in iter_documents(source):
            documents += 1
            for fmt, name, osv_id, malicious, severity, affected in records(doc):
                conn.execute("INSERT OR REPLACE INTO advisories VALUES (?, ?, ?, ?, ?, ?)",
                             (fmt, name.lower(), osv_id, int(malicious), severity, json.dumps(affected)))
                rows += 1
            if progress is not None and documents % 100 == 0:
                progress(documents)
        conn.execute("INSERT OR REPLACE INTO advisory_generation VALUES (1, ?)", (time.time(),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return documents, rows


def generation(conn: sqlite3.Connection) -> float:
    """Changes whenever a dump is imported (servers reload then)."""
    conn.executescript(SCHEMA)
    row = conn.execute("SELECT value FROM advisory_generation WHERE id = 1").fetchone()
    return float(row[0]) if row else 0.0


def load(conn: sqlite3.Connection, min_severity: str | None = None) -> dict[str, dict[str, list[Advisory]]]:
    """format -> package -> advisories that act as deny rules: every malicious record, and
    vulnerabilities at or above `min_severity` when one is configured."""
    conn.executescript(SCHEMA)
    out: dict[str, dict[str, list[Advisory]]] = {}
    floor = SEVERITY_ORDER.index(min_severity) if min_severity in SEVERITY_ORDER else None
    for fmt, package, osv_id, malicious, severity, affected in conn.execute(
            "SELECT format, package, id, malicious, severity, affected FROM advisories"):
        if not malicious:
            if floor is None or severity not in SEVERITY_ORDER or SEVERITY_ORDER.index(severity) < floor:
                continue
        data = json.loads(affected)
        advisory = Advisory(osv_id, frozenset(data["versions"]),
                            tuple(tuple(r) for r in data["ranges"]), bool(data["all"]))
        out.setdefault(fmt, {}).setdefault(package, []).append(advisory)
    return out
