"""The format table of bench/pullthrough.py: one builder per format writes a realistic static tree
(the index documents a client reads first, then N package files of the given sizes) and says which
paths a client asks of depot and of nginx (the same upstream path, unless depot's layout differs).

Package bodies are random bytes where depot's proxy only checks them against the index's digest
(it never parses a proxied package), real archives where the index needs their contents.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from cargo_fixtures import index_path  # noqa: E402
from go_fixtures import escape  # noqa: E402

Pair = tuple[str, str]          # (path under depot's /<repo>/, path on the upstream and on nginx)


@dataclass
class Tree:
    """What a client of this format asks for: index documents first (in order), then files."""

    meta: list[Pair]
    files: list[Pair]
    upstream_suffix: str = ""                       # appended to the upstream URL in depot's config
    options: dict[str, Any] = field(default_factory=dict)


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _same(paths: list[str]) -> list[Pair]:
    return [(p, p) for p in paths]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def maven(root: Path, up: str, sizes: list[int]) -> Tree:
    """Maven: per artifact a pom and a jar with their .sha1 sidecars; mvn reads maven-metadata.xml
    of a few, then pom, pom.sha1, jar, jar.sha1 of each."""
    files: list[str] = []
    meta: list[str] = []
    for i, size in enumerate(sizes):
        base = f"org/bench/a{i}/1.0"
        jar, pom = os.urandom(size), f"<project><artifactId>a{i}</artifactId><version>1.0</version></project>".encode()
        for name, body in ((f"a{i}-1.0.pom", pom), (f"a{i}-1.0.jar", jar)):
            _write(root, f"{base}/{name}", body)
            _write(root, f"{base}/{name}.sha1", hashlib.sha1(body).hexdigest().encode())
            files += [f"{base}/{name}", f"{base}/{name}.sha1"]
        if i % 10 == 0:
            _write(root, f"org/bench/a{i}/maven-metadata.xml",
                   f"<metadata><groupId>org.bench</groupId><artifactId>a{i}</artifactId><versioning>"
                   f"<latest>1.0</latest><release>1.0</release><versions><version>1.0</version></versions>"
                   f"</versioning></metadata>".encode())
            meta.append(f"org/bench/a{i}/maven-metadata.xml")
    return Tree(_same(meta), _same(files), "/")


def go(root: Path, up: str, sizes: list[int]) -> Tree:
    """Go: list, .info, .mod of each module, then its .zip (a real module zip, stored)."""
    import io
    import zipfile
    meta, files = [], []
    for i, size in enumerate(sizes):
        path = f"example.org/Bench{i}"
        base = f"{escape(path)}/@v"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n")
            archive.writestr(f"{path}@v1.0.0/blob.bin", os.urandom(size))
        _write(root, f"{base}/v1.0.0.zip", buf.getvalue())
        _write(root, f"{base}/v1.0.0.mod", f"module {path}\n".encode())
        _write(root, f"{base}/v1.0.0.info", b'{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}')
        _write(root, f"{base}/list", b"v1.0.0\n")
        meta += [f"{base}/list", f"{base}/v1.0.0.info", f"{base}/v1.0.0.mod"]
        files.append(f"{base}/v1.0.0.zip")
    return Tree(_same(meta), _same(files))


def cargo(root: Path, up: str, sizes: list[int]) -> Tree:
    """Cargo sparse: config.json and the index file of each crate, then the .crate (checked
    against the index's cksum); depot serves crates at api/v1/crates/<n>/<v>/download."""
    _write(root, "config.json", json.dumps({"dl": up + "/dl/{crate}/{crate}-{version}.crate", "api": up}).encode())
    meta, files = [("config.json", "config.json")], []
    for i, size in enumerate(sizes):
        name, data = f"bench{i}", os.urandom(size)
        _write(root, f"dl/{name}/{name}-1.0.0.crate", data)
        entry = {"name": name, "vers": "1.0.0", "deps": [], "cksum": _sha256(data), "features": {},
                 "yanked": False, "links": None}
        _write(root, index_path(name), (json.dumps(entry) + "\n").encode())
        meta.append((index_path(name), index_path(name)))
        files.append((f"api/v1/crates/{name}/1.0.0/download", f"dl/{name}/{name}-1.0.0.crate"))
    return Tree(meta, files)


def debian(root: Path, up: str, sizes: list[int]) -> Tree:
    """apt: Release and main/binary-amd64/Packages.gz of suite `stable`, then the pool files
    (each verified by depot against the sha256 its Packages stanza gives)."""
    stanzas, files = [], []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        pool = f"pool/main/b/bench{i}/bench{i}_1.0_amd64.deb"
        _write(root, pool, data)
        stanzas.append(f"Package: bench{i}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: bench <b@b>\n"
                       f"Description: bench package {i}\nFilename: {pool}\nSize: {size}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {_sha256(data)}\n")
        files.append(pool)
    text = "\n".join(stanzas).encode()
    indexes = {"main/binary-amd64/Packages": text, "main/binary-amd64/Packages.gz": gzip.compress(text, mtime=0)}
    release = ("Origin: bench\nSuite: stable\nCodename: stable\nDate: Tue, 01 Dec 2026 00:00:00 UTC\n"
               "Architectures: amd64\nComponents: main\nSHA256:\n" +
               "".join(f" {_sha256(b)} {len(b)} {n}\n" for n, b in sorted(indexes.items())))
    for name, body in indexes.items():
        _write(root, f"dists/stable/{name}", body)
    _write(root, "dists/stable/Release", release.encode())
    return Tree(_same(["dists/stable/Release", "dists/stable/main/binary-amd64/Packages.gz"]), _same(files), "/")


def rpm(root: Path, up: str, sizes: list[int]) -> Tree:
    """dnf: repomd.xml, primary and filelists, then the packages (checked against primary.xml)."""
    from depot.registry import rpm_meta
    packages, files = [], []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        href = f"Packages/bench{i}-1.0-1.x86_64.rpm"
        _write(root, href, data)
        packages.append({"name": f"bench{i}", "epoch": "0", "version": "1.0", "release": "1", "arch": "x86_64",
                         "summary": "bench", "description": "bench", "packager": "", "url": "", "license": "MIT",
                         "vendor": "", "group": "", "buildhost": "", "sourcerpm": f"bench{i}-1.0-1.src.rpm",
                         "buildtime": 0, "installed": size, "archive": size, "header_start": 0, "header_end": 0,
                         "files": [], "sha256": _sha256(data), "href": href, "size": size, "time": 0})
        files.append(href)
    repodata = rpm_meta.render_repodata(packages, 1)
    for name, body in repodata.items():
        _write(root, name, body)
    meta = ["repodata/repomd.xml"] + sorted(n for n in repodata if "-primary" in n or "-filelists" in n)
    return Tree(_same(meta), _same(files), "/")


def conda(root: Path, up: str, sizes: list[int]) -> Tree:
    """Conda: noarch/ and linux-64/ repodata.json, then the packages (checked against the sha256)."""
    docs = {s: {"info": {"subdir": s}, "packages": {}, "packages.conda": {}, "repodata_version": 1}
            for s in ("noarch", "linux-64")}
    files = []
    for i, size in enumerate(sizes):
        data, fn = os.urandom(size), f"bench{i}-1.0-0.tar.bz2"
        _write(root, f"noarch/{fn}", data)
        docs["noarch"]["packages"][fn] = {"name": f"bench{i}", "version": "1.0", "build": "0", "build_number": 0,
                                          "depends": [], "subdir": "noarch", "sha256": _sha256(data),
                                          "md5": hashlib.md5(data).hexdigest(), "size": size}
        files.append(f"noarch/{fn}")
    for subdir, doc in docs.items():
        _write(root, f"{subdir}/repodata.json", json.dumps(doc).encode())
    return Tree(_same(["noarch/repodata.json", "linux-64/repodata.json"]), _same(files))


def rubygems(root: Path, up: str, sizes: list[int]) -> Tree:
    """Bundler's compact index: /versions, /info/<gem>, then the .gem files (checked against
    the checksum in /info)."""
    infos, files, meta = {}, [], ["versions"]
    for i, size in enumerate(sizes):
        name, data = f"bench_{i}", os.urandom(size)
        _write(root, f"gems/{name}-1.0.0.gem", data)
        infos[name] = f"---\n1.0.0 |checksum:{_sha256(data)}\n"
        _write(root, f"info/{name}", infos[name].encode())
        meta.append(f"info/{name}")
        files.append(f"gems/{name}-1.0.0.gem")
    versions = "created_at: 2024-01-01T00:00:00Z\n---\n" + "".join(
        f"{n} 1.0.0 {hashlib.md5(t.encode()).hexdigest()}\n" for n, t in sorted(infos.items()))
    _write(root, "versions", versions.encode())
    return Tree(_same(meta), _same(files))


def composer(root: Path, up: str, sizes: list[int]) -> Tree:
    """Composer v2: packages.json and p2/<vendor>/<name>.json, then the dists (same origin as the
    upstream, checked against `shasum`); depot serves them at dists/<name>/<version>/<ref>.zip."""
    _write(root, "packages.json", json.dumps({"packages": [], "metadata-url": "/p2/%package%.json"}).encode())
    meta, files = [("packages.json", "packages.json")], []
    for i, size in enumerate(sizes):
        name, data, ref = f"bench/p{i}", os.urandom(size), f"ref{i:04d}"
        _write(root, f"dl/p{i}.zip", data)
        doc = {"packages": {name: [{"name": name, "version": "1.0.0", "version_normalized": "1.0.0.0",
                                    "dist": {"type": "zip", "url": f"{up}/dl/p{i}.zip", "reference": ref,
                                             "shasum": hashlib.sha1(data).hexdigest()}}]},
               "minified": "composer/2.0"}
        _write(root, f"p2/{name}.json", json.dumps(doc).encode())
        meta.append((f"p2/{name}.json", f"p2/{name}.json"))
        files.append((f"dists/{name}/1.0.0/{ref}.zip", f"dl/p{i}.zip"))
    return Tree(meta, files)


def nuget(root: Path, up: str, sizes: list[int]) -> Tree:
    """NuGet v3: the service index and each package's flat-container version list, then the
    .nupkg files (depot: v3/index.json and v3-flatcontainer/…; upstream: index.json and flat/…)."""
    from nuget_fixtures import nupkg
    _write(root, "index.json", json.dumps({"version": "3.0.0", "resources": [
        {"@id": f"{up}/flat/", "@type": "PackageBaseAddress/3.0.0"},
        {"@id": f"{up}/reg/", "@type": "RegistrationsBaseUrl"}]}).encode())
    meta, files = [("v3/index.json", "index.json")], []
    for i, size in enumerate(sizes):
        pid = f"bench.p{i}"
        _write(root, f"flat/{pid}/index.json", b'{"versions": ["1.0.0"]}')
        package = nupkg(f"Bench.P{i}", "1.0.0", payload=os.urandom(size).hex()[:size])
        _write(root, f"flat/{pid}/1.0.0/{pid}.1.0.0.nupkg", package)
        meta.append((f"v3-flatcontainer/{pid}/index.json", f"flat/{pid}/index.json"))
        files.append((f"v3-flatcontainer/{pid}/1.0.0/{pid}.1.0.0.nupkg", f"flat/{pid}/1.0.0/{pid}.1.0.0.nupkg"))
    return Tree(meta, files, "/index.json")


def conan(root: Path, up: str, sizes: list[int]) -> Tree:
    """Conan 2: the recipe files of a known revision only (depot answers `latest` from the
    upstream's `revisions` listing, a directory in a static tree: no index documents here)."""
    meta, files = [], []
    for i, size in enumerate(sizes):
        ref, rrev = f"v2/conans/bench{i}/1.0/_/_", f"{i:032x}"
        _write(root, f"{ref}/revisions/{rrev}/files/conanfile.py", b"from conan import ConanFile\n")
        _write(root, f"{ref}/revisions/{rrev}/files/conan_export.tgz", os.urandom(size))
        files += [f"{ref}/revisions/{rrev}/files/conanfile.py", f"{ref}/revisions/{rrev}/files/conan_export.tgz"]
    return Tree(_same(meta), _same(files))


# format -> builder; the issue each answers: #14 maven/go/cargo, #17 debian/rpm/conda, #15 the rest
TREES: dict[str, Callable[[Path, str, list[int]], Tree]] = {
    "maven": maven, "go": go, "cargo": cargo,
    "debian": debian, "rpm": rpm, "conda": conda,
    "rubygems": rubygems, "composer": composer, "nuget": nuget, "conan": conan,
}
