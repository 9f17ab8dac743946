"""Debian / apt end to end: real apt-get (private state, signed-by depot's exported key) against
real depot processes; the proxy's upstream is a second depot filled by uploads of .deb files
built with dpkg-deb, or a static tree (tests/upstream.py) for tampered indexes."""
from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from deb_fixtures import Apt, build_deb, build_source, dput, source_changes
from depot_process import DepotProcess
from http_util import get
from proxy_chain import Chain, assert_one_upstream_get, curl, depot_gets, proxy_chain, upload

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def admin() -> tuple[str, str]:
    return ("-u", ":".join(ADMIN))


def access(depot: DepotProcess, since: int, needle: str) -> list[str]:
    return [l for l in depot.log()[since:].splitlines() if "depot.access" in l and needle in l]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("debian")
    debs = {name: build_deb(work / "build", name) for name in ("dpt-one", "dpt-two", "dpt-up-a", "dpt-up-b")}
    debs["dpt-arch"] = build_deb(work / "build", "dpt-arch", arch="amd64")
    up = DepotProcess(work / "up", {"origin": {"format": "debian", "type": "hosted"}})
    for name in ("dpt-up-a", "dpt-up-b"):
        assert upload(f"{up.url}/origin/upload/main/{debs[name].name}", debs[name]) == 201
    depot = DepotProcess(work / "depot", {
        "deb-local": {"format": "debian", "type": "hosted", "anonymous_read": True},
        "deb-remote": {"format": "debian", "type": "proxy", "upstream": up.url + "/origin/",
                       "metadata_ttl": 300, "anonymous_read": True},
        "deb": {"format": "debian", "type": "group", "members": ["deb-local", "deb-remote"],
                "deploy_to": "deb-local", "anonymous_read": True},
    }, secure=True)
    yield SimpleNamespace(work=work, debs=debs, up=up, depot=depot)
    depot.stop()
    up.stop()


def signed_apt(work: Path, depot_url: str, repo: str, suite: str = "stable", proxy: str | None = None) -> Apt:
    key = work / "key.asc"
    work.mkdir(parents=True, exist_ok=True)
    key.write_bytes(get(f"{depot_url}/{repo}/key.asc").body)
    assert key.read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    return Apt(work, [f"deb [signed-by={key}] {depot_url}/{repo}/ {suite} main"], proxy=proxy)


# ---------------------------------------------------------------- hosted

def test_hosted_upload_then_apt_update_and_download_verified(env: SimpleNamespace, tmp_path: Path) -> None:
    one, two = env.debs["dpt-one"], env.debs["dpt-two"]
    assert upload(f"{env.depot.url}/deb-local/upload/main/{one.name}", one, *admin()) == 201
    assert upload(f"{env.depot.url}/deb-local/upload/main/{two.name}", two, *admin()) == 201
    apt = signed_apt(tmp_path / "apt", env.depot.url, "deb-local")
    apt.update()
    got = apt.download("dpt-one", "dpt-two")
    assert got == {one.name: one.read_bytes(), two.name: two.read_bytes()}
    packages = get(f"{env.depot.url}/deb-local/dists/stable/main/binary-all/Packages").body.decode()
    assert f"SHA256: {hashlib.sha256(one.read_bytes()).hexdigest()}" in packages
    for ext in (".gz", ".xz"):
        assert get(f"{env.depot.url}/deb-local/dists/stable/main/binary-amd64/Packages{ext}").status == 200


def test_arch_specific_package_lands_in_its_architecture_only(env: SimpleNamespace, tmp_path: Path) -> None:
    deb = env.debs["dpt-arch"]
    assert upload(f"{env.depot.url}/deb-local/upload/contrib/{deb.name}?suite=extra", deb, *admin()) == 201
    base = f"{env.depot.url}/deb-local/dists/extra"
    assert b"dpt-arch" in get(f"{base}/contrib/binary-amd64/Packages").body
    assert b"dpt-arch" not in get(f"{base}/contrib/binary-arm64/Packages").body
    release = get(f"{base}/Release").body.decode()
    assert "Components: contrib" in release and "all" in release.split("Architectures:")[1].split("\n")[0]


def test_indexes_of_a_previous_state_stay_reachable_by_hash(env: SimpleNamespace, tmp_path: Path) -> None:
    """apt reads InRelease, then fetches the indexes by hash: an upload in between must not
    leave it with a Release whose indexes are gone."""
    base = f"{env.depot.url}/deb-local/dists/hashes"
    first = build_deb(tmp_path, "dpt-hash-a")
    assert upload(f"{env.depot.url}/deb-local/upload/main/{first.name}?suite=hashes", first, *admin()) == 201
    release = get(f"{base}/Release").body.decode()
    assert "Acquire-By-Hash: yes" in release
    sha = next(line.split()[0] for line in release.split("SHA256:")[1].splitlines()
               if line.endswith(" main/binary-all/Packages.xz"))
    old = get(f"{base}/main/binary-all/by-hash/SHA256/{sha}")
    assert old.status == 200 and hashlib.sha256(old.body).hexdigest() == sha
    second = build_deb(tmp_path, "dpt-hash-b")
    assert upload(f"{env.depot.url}/deb-local/upload/main/{second.name}?suite=hashes", second, *admin()) == 201
    assert get(f"{base}/Release").body.decode() != release
    assert get(f"{base}/main/binary-all/by-hash/SHA256/{sha}").body == old.body


def test_signature_is_really_checked(env: SimpleNamespace, upstream: Any, tmp_path: Path) -> None:
    """A Release whose content was changed after signing is refused by apt, as is a Release
    signed by another key than the one apt was given."""
    deb = env.debs["dpt-one"]
    assert upload(f"{env.depot.url}/deb-local/upload/main/{deb.name}", deb, *admin()) in (200, 201)
    base = f"{env.depot.url}/deb-local/dists/stable"
    inrelease = get(f"{base}/InRelease").body
    tampered = inrelease.replace(b"Origin: depot", b"Origin: evil!")
    assert tampered != inrelease
    upstream.put("dists/stable/InRelease", tampered)
    for name in ("main/binary-amd64/Packages", "main/binary-all/Packages"):
        upstream.put(f"dists/stable/{name}", get(f"{base}/{name}").body)
    apt = Apt(tmp_path / "tampered", [f"deb [signed-by={tmp_path}/key.asc] {upstream.url}/ stable main"])
    (tmp_path / "key.asc").write_bytes(get(f"{env.depot.url}/deb-local/key.asc").body)
    out = apt.update(check=False)
    assert "BADSIG" in out.stdout + out.stderr or "not signed" in out.stdout + out.stderr, out.stderr
    # the group's key is another key: the hosted repository's InRelease does not verify with it
    other = Apt(tmp_path / "otherkey", [f"deb [signed-by={tmp_path}/group.asc] {env.depot.url}/deb-local/ stable main"])
    (tmp_path / "group.asc").write_bytes(get(f"{env.depot.url}/deb/key.asc").body)
    out = other.update(check=False)
    assert "NO_PUBKEY" in out.stdout + out.stderr, out.stdout + out.stderr


def test_anonymous_upload_401_and_read_token_403(env: SimpleNamespace) -> None:
    deb = env.debs["dpt-one"]
    url = f"{env.depot.url}/deb-local/upload/main/other_1.0_all.deb"
    out = curl("-D", "-", "-o", "/dev/null", "-T", str(deb), url).stdout.decode().lower()
    assert "http/1.1 401" in out and "www-authenticate: basic" in out
    token = env.depot.run_cli("token", "create", "--repo", "deb-local", "--perm", "read").stdout.split()[-1]
    assert upload(url, deb, "-u", f"reader:{token}") == 403
    assert get(f"{env.depot.url}/deb-local/pool/main/d/dpt-one/other_1.0_all.deb").status == 404
    for name in ("other_1.0.dsc", "other_1.0.orig.tar.gz", "other_1.0_source.changes"):   # source uploads too
        source_url = f"{env.depot.url}/deb-local/upload/main/{name}"
        assert (upload(source_url, deb), upload(source_url, deb, "-u", f"reader:{token}")) == (401, 403)
        assert get(f"{env.depot.url}/deb-local/pool/main/o/other/{name}").status == 404


def test_bad_archive_is_400_and_nothing_stored(env: SimpleNamespace, tmp_path: Path) -> None:
    bad = tmp_path / "broken_1.0_all.deb"
    bad.write_bytes(b"!<arch>\nthis is not a deb at all")
    before = get(f"{env.depot.url}/deb-local/dists/stable/main/binary-all/Packages").body
    out = curl("-w", "\n%{http_code}", "-T", str(bad), *admin(),
               f"{env.depot.url}/deb-local/upload/main/broken_1.0_all.deb").stdout.decode()
    assert out.endswith("400") and "Debian binary package" in out
    assert get(f"{env.depot.url}/deb-local/pool/main/b/broken/broken_1.0_all.deb").status == 404
    assert get(f"{env.depot.url}/deb-local/dists/stable/main/binary-all/Packages").body == before
    assert get(f"{env.depot.url}/deb-local/.depot/signing-key.asc").status == 404   # never served


def release_entries(release: str) -> dict[str, tuple[str, int]]:
    """name -> (sha256, size) of a Release's SHA256 list."""
    lines = release.split("SHA256:\n", 1)[1].splitlines()
    entries = {}
    for line in lines:
        if not line.startswith(" "):
            break
        sha, size, name = line.split()
        entries[name] = (sha, int(size))
    return entries


def test_sources_translation_and_contents_fetched_by_apt(env: SimpleNamespace, tmp_path: Path) -> None:
    """A source package uploaded file by file (.dsc first) is listed in Sources once complete and
    `apt-get source` gets it; apt's update with deb-src, Translation-en and apt-file's Contents
    target passes without a warning; every file the signed Release lists has its hash."""
    dsc, orig, debian_tar = build_source(tmp_path / "src", "dpt-src")
    deb = build_deb(tmp_path / "build", "dpt-described", extra_control=(
        " A longer description of the package,\n .\n over two paragraphs.\nSection: utils\n"))
    base = f"{env.depot.url}/deb-local"
    assert upload(f"{base}/upload/main/{deb.name}?suite=src", deb, *admin()) == 201
    assert upload(f"{base}/upload/main/{dsc.name}?suite=src", dsc, *admin()) == 201
    sources = f"{base}/dists/src/main/source/Sources"
    assert b"dpt-src" not in get(sources).body                    # its tarballs are not there yet
    for part in (orig, debian_tar):
        assert upload(f"{base}/upload/main/{part.name}?suite=src", part, *admin()) == 201
    assert b"Package: dpt-src\n" in get(sources).body

    key = tmp_path / "key.asc"
    key.write_bytes(get(f"{base}/key.asc").body)
    lines = [f"{kind} [signed-by={key}] {base}/ src main" for kind in ("deb", "deb-src")]
    apt = Apt(tmp_path / "apt", lines, languages="en", contents=True)
    apt.update()                                            # fails on any W: or E: line
    fetched = {p.name.split("_dists_src_")[-1].rsplit(".lz4", 1)[0] for p in (apt.work / "lists").iterdir()}
    assert {"main_i18n_Translation-en", "main_source_Sources", "main_Contents-amd64"} <= fetched, fetched
    shown = apt.run("--print-uris", "source", "dpt-src").stdout
    assert f"pool/main/d/dpt-src/{dsc.name}" in shown
    apt.run("source", "--download-only", "dpt-src")
    for part in (dsc, orig, debian_tar):
        assert (apt.work / "archives" / part.name).read_bytes() == part.read_bytes()
    contents = apt.contents()
    assert any(line.split() == ["usr/share/dpt-described/payload", "utils/dpt-described"]
               for line in contents.splitlines()), contents
    translation = get(f"{base}/dists/src/main/i18n/Translation-en").body.decode()
    assert "Package: dpt-described\nDescription-md5: " in translation and " over two paragraphs." in translation

    release = get(f"{base}/dists/src/Release").body.decode()
    entries = release_entries(release)
    for name in ("main/source/Sources.xz", "main/i18n/Translation-en.bz2", "main/Contents-amd64.gz",
                 "main/Contents-all.gz", "main/binary-amd64/Packages.xz"):
        assert name in entries, sorted(entries)
    for name, (sha, size) in entries.items():
        body = get(f"{base}/dists/src/{name}").body
        assert (hashlib.sha256(body).hexdigest(), len(body)) == (sha, size), name


def test_source_files_that_disagree_or_are_broken_are_400_and_not_stored(env: SimpleNamespace,
                                                                        tmp_path: Path) -> None:
    dsc, orig, debian_tar = build_source(tmp_path / "src", "dpt-srcbad")
    other = build_source(tmp_path / "other", "dpt-srcbad")[1]            # another orig.tar.gz, same name
    other.write_bytes(other.read_bytes() + b"\0" * 512)
    base = f"{env.depot.url}/deb-local"
    pool = f"{base}/pool/main/d/dpt-srcbad"

    def put(path: Path, name: str | None = None) -> tuple[int, str]:
        out = curl("-w", "\n%{http_code}", "-T", str(path), *admin(),
                   f"{base}/upload/main/{name or path.name}?suite=srcbad").stdout.decode()
        body, _, code = out.rpartition("\n")
        return int(code), body
    assert put(dsc)[0] == 201
    code, body = put(other, orig.name)
    assert code == 400 and dsc.name in body, body                        # not the orig the .dsc lists
    assert get(f"{pool}/{orig.name}").status == 404
    garbage = tmp_path / "garbage.tar.xz"
    garbage.write_bytes(b"not an archive")
    code, body = put(garbage, debian_tar.name)
    assert code == 400 and "archive" in body, body
    not_dsc = tmp_path / "x.dsc"
    not_dsc.write_bytes(b"Source: dpt-other\nVersion: 1\n")
    assert put(not_dsc, "dpt-other_1.dsc")[0] == 400
    assert put(dsc, "dpt-wrongname_1.0-1.dsc")[0] == 400
    assert get(f"{base}/pool/main/d/dpt-other/dpt-other_1.dsc").status == 404
    assert b"dpt-srcbad" not in get(f"{base}/dists/srcbad/main/source/Sources").body
    assert get(f"{base}/dists/srcbad/InRelease").status == 200        # signed, listing an empty Sources


def test_dput_http_upload_of_a_source_package(env: SimpleNamespace, tmp_path: Path) -> None:
    """dput's http method uploads the files of a .changes, then the .changes, which depot accepts
    only when every file it lists is stored with its sha256."""
    files = build_source(tmp_path / "src", "dpt-dput")
    changes = source_changes(tmp_path / "src", "dpt-dput")
    done = dput(tmp_path, changes, f"127.0.0.1:{env.depot.port}", "/deb-local/upload/main", *ADMIN)
    assert done.returncode == 0 and "Successfully uploaded" in done.stdout + done.stderr, done.stdout + done.stderr
    pool = f"{env.depot.url}/deb-local/pool/main/d/dpt-dput"
    assert get(f"{pool}/{changes.name}").body == changes.read_bytes()
    assert b"Package: dpt-dput\n" in get(f"{env.depot.url}/deb-local/dists/stable/main/source/Sources").body
    for part in files:
        assert get(f"{pool}/{part.name}").body == part.read_bytes()
    # a .changes listing a file that was never uploaded is refused and not stored
    other = build_source(tmp_path / "other", "dpt-dput2")
    changes2 = source_changes(tmp_path / "other", "dpt-dput2")
    assert upload(f"{env.depot.url}/deb-local/upload/main/{other[0].name}", other[0], *admin()) == 201
    out = curl("-w", "\n%{http_code}", "-T", str(changes2), *admin(),
               f"{env.depot.url}/deb-local/upload/main/{changes2.name}").stdout.decode()
    assert out.endswith("400") and other[1].name in out, out
    assert get(f"{env.depot.url}/deb-local/pool/main/d/dpt-dput2/{changes2.name}").status == 404


# ---------------------------------------------------------------- group

def test_group_merges_members_and_signs_with_its_own_key(env: SimpleNamespace, tmp_path: Path) -> None:
    one = env.debs["dpt-one"]
    assert upload(f"{env.depot.url}/deb/upload/main/{one.name}", one, *admin()) in (200, 201)   # deploy_to
    apt = signed_apt(tmp_path / "apt", env.depot.url, "deb")
    apt.update()
    got = apt.download("dpt-one", "dpt-up-a")
    assert got == {one.name: one.read_bytes(), "dpt-up-a_1.0_all.deb": env.debs["dpt-up-a"].read_bytes()}
    assert get(f"{env.depot.url}/deb/dists/stable/InRelease").headers["X-Cache"] == "HIT"   # rendered once
    merged = get(f"{env.depot.url}/deb/dists/stable/main/binary-all/Packages").body.decode()
    assert "Package: dpt-one" in merged and "Package: dpt-up-b" in merged


def test_group_merges_sources_and_contents_of_its_members(env: SimpleNamespace, tmp_path: Path) -> None:
    """A source package and a .deb published through the group (deploy_to) reach apt through the
    group's own signed suite: Sources, Contents and Translation-en included."""
    files = build_source(tmp_path / "src", "dpt-grpsrc")
    deb = build_deb(tmp_path / "build", "dpt-grpbin", extra_control="Section: devel\n")
    for path in (deb, *files):
        assert upload(f"{env.depot.url}/deb/upload/main/{path.name}?suite=grp", path, *admin()) == 201
    key = tmp_path / "group.asc"
    key.write_bytes(get(f"{env.depot.url}/deb/key.asc").body)
    lines = [f"{kind} [signed-by={key}] {env.depot.url}/deb/ grp main" for kind in ("deb", "deb-src")]
    apt = Apt(tmp_path / "apt", lines, languages="en", contents=True)
    apt.update()
    apt.run("source", "--download-only", "dpt-grpsrc")
    assert {p.name: p.read_bytes() for p in files} == {p.name: (apt.work / "archives" / p.name).read_bytes()
                                                       for p in files}
    assert "usr/share/dpt-grpbin/payload" in apt.contents()
    assert b"Package: dpt-grpbin\n" in get(f"{env.depot.url}/deb/dists/grp/main/i18n/Translation-en").body


def test_group_lists_the_sources_of_a_proxy_member(env: SimpleNamespace, tmp_path: Path) -> None:
    """deb-src through a group whose proxy member's upstream has the source package: the group's
    Sources merges the mirror's, the files come through the proxy (verified against its Sources)."""
    files = build_source(tmp_path / "src", "dpt-upsrc")
    deb = build_deb(tmp_path / "build", "dpt-upbin")
    for path in (deb, *files):
        assert upload(f"{env.up.url}/origin/upload/main/{path.name}?suite=upgrp", path) == 201
    key = tmp_path / "group.asc"
    key.write_bytes(get(f"{env.depot.url}/deb/key.asc").body)
    lines = [f"{kind} [signed-by={key}] {env.depot.url}/deb/ upgrp main" for kind in ("deb", "deb-src")]
    apt = Apt(tmp_path / "apt", lines)
    apt.update()
    apt.run("source", "--download-only", "dpt-upsrc")
    for path in files:
        assert (apt.work / "archives" / path.name).read_bytes() == path.read_bytes()


# ---------------------------------------------------------------- proxy

@pytest.fixture
def chain(depot_factory: Any, tmp_path: Path) -> Chain:
    """An upstream depot (hosted, filled with two .deb files) and a depot proxying it."""
    debs = [build_deb(tmp_path / "build", name) for name in ("dpt-px-a", "dpt-px-b")]
    return proxy_chain(depot_factory, "debian", debs, lambda deb: f"upload/main/{deb.name}", "deb-remote")


@pytest.fixture
def up_key(chain: Chain, tmp_path: Path) -> Path:
    key = tmp_path / "up-key.asc"
    key.write_bytes(get(f"{chain.up.url}/origin/key.asc").body)
    return key


def proxied_apt(work: Path, chain: Chain, key: Path) -> Apt:
    return Apt(work, [f"deb [signed-by={key}] {chain.base}/ stable main"])


def test_proxy_second_run_all_hits_then_upstream_stopped(chain: Chain, up_key: Path, tmp_path: Path) -> None:
    expected = {d.name: d.read_bytes() for d in chain.files}
    first = proxied_apt(tmp_path / "run1", chain, up_key)
    first.update()
    assert first.download("dpt-px-a", "dpt-px-b") == expected
    mark = len(chain.depot.log())
    second = proxied_apt(tmp_path / "run2", chain, up_key)
    second.run("-o", "Acquire::Check-Valid-Until=false", "update")
    assert second.download("dpt-px-a", "dpt-px-b") == expected
    lines = access(chain.depot, mark, "/deb-remote/")
    data = [l for l in lines if "/pool/" in l or "Packages" in l or "by-hash" in l]
    assert data and all(l.endswith('"HIT"') for l in data), lines
    assert all(l.endswith(('"HIT"', '"REVALIDATED"')) for l in lines), lines
    chain.up.stop()
    third = proxied_apt(tmp_path / "run3", chain, up_key)
    third.update()
    assert third.download("dpt-px-a", "dpt-px-b") == expected


def test_twenty_clients_one_upstream_get(chain: Chain) -> None:
    assert get(f"{chain.base}/dists/stable/InRelease").status == 200
    assert get(f"{chain.base}/dists/stable/main/binary-all/Packages.xz").status == 200
    pool = "pool/main/d/dpt-px-a/dpt-px-a_1.0_all.deb"
    assert_one_upstream_get(f"{chain.base}/{pool}", chain.files[0].read_bytes(),
                            lambda: depot_gets(chain.up, f"/origin/{pool}"))


def test_files_disagreeing_with_their_index_are_never_served(depot_factory: Any, upstream: Any,
                                                            tmp_path: Path) -> None:
    good = build_deb(tmp_path, "dpt-good")
    evil = build_deb(tmp_path / "evil", "dpt-good", payload=b"something else entirely\n")
    pool = "pool/main/d/dpt-good/dpt-good_1.0_all.deb"
    stanza = (f"Package: dpt-good\nVersion: 1.0\nArchitecture: all\nFilename: {pool}\n"
              f"Size: {good.stat().st_size}\nSHA256: {hashlib.sha256(good.read_bytes()).hexdigest()}\n\n").encode()
    honest_gz = gzip.compress(stanza, mtime=0)
    release = ("Suite: stable\nComponents: main\nArchitectures: all\nSHA256:\n"
               f" {hashlib.sha256(honest_gz).hexdigest()} {len(honest_gz)} main/binary-all/Packages.gz\n"
               f" {hashlib.sha256(stanza).hexdigest()} {len(stanza)} main/binary-all/Packages\n")
    upstream.put("dists/stable/Release", release.encode())
    upstream.put("dists/stable/main/binary-all/Packages.gz", honest_gz)
    upstream.put("dists/stable/main/binary-all/Packages", stanza.replace(b"dpt-good", b"dpt-bad"))  # disagrees
    upstream.put(pool, evil.read_bytes())                                                           # disagrees
    depot = depot_factory({"r": {"format": "debian", "type": "proxy", "upstream": upstream.url + "/"}})
    base = f"{depot.url}/r"
    assert get(f"{base}/dists/stable/main/binary-all/Packages.gz").body == honest_gz
    for _ in range(2):       # refused, or cut short before the last bytes: never a whole bad file
        for path in ("dists/stable/main/binary-all/Packages", pool):
            answer = get(f"{base}/{path}")
            assert answer.status == 502 or not answer.complete, (path, answer.status)
    assert get(f"{base}/dists/stable/main/binary-all/Packages.bz2").status == 404    # not in the Release
    upstream.put(pool, good.read_bytes())
    assert get(f"{base}/{pool}").body == good.read_bytes()


def test_proxy_serves_source_packages_verified_against_sources(chain: Chain, up_key: Path,
                                                             tmp_path: Path) -> None:
    """deb-src through a proxy: the Sources index is served from the Release, the source files
    from pool/ verified against the sha256 Sources lists for them."""
    files = build_source(tmp_path / "src", "dpt-pxsrc")
    for part in files:
        assert upload(f"{chain.up.url}/origin/upload/main/{part.name}", part) == 201
    lines = [f"{kind} [signed-by={up_key}] {chain.base}/ stable main" for kind in ("deb", "deb-src")]
    apt = Apt(tmp_path / "apt", lines)
    apt.update()
    apt.run("source", "--download-only", "dpt-pxsrc")
    for part in files:
        assert (apt.work / "archives" / part.name).read_bytes() == part.read_bytes()
    assert get(f"{chain.base}/pool/main/d/dpt-pxsrc/dpt-pxsrc_9.9.orig.tar.gz").status == 404   # listed nowhere


def test_source_files_disagreeing_with_sources_are_never_served(depot_factory: Any, upstream: Any,
                                                                tmp_path: Path) -> None:
    files = build_source(tmp_path, "dpt-srcv")
    directory = "pool/main/d/dpt-srcv"
    listed = "".join(f" {hashlib.sha256(f.read_bytes()).hexdigest()} {f.stat().st_size} {f.name}\n" for f in files)
    sources = gzip.compress(f"Package: dpt-srcv\nVersion: 1.0-1\nDirectory: {directory}\n"
                            f"Checksums-Sha256:\n{listed}\n".encode(), mtime=0)
    upstream.put("dists/stable/Release", ("Suite: stable\nComponents: main\nArchitectures: all\nSHA256:\n"
                                          f" {hashlib.sha256(sources).hexdigest()} {len(sources)} "
                                          "main/source/Sources.gz\n").encode())
    upstream.put("dists/stable/main/source/Sources.gz", sources)
    dsc, orig = files[0], files[1]
    upstream.put(f"{directory}/{dsc.name}", dsc.read_bytes().replace(b"dpt-srcv", b"dpt-evil"))   # disagrees
    upstream.put(f"{directory}/{orig.name}", orig.read_bytes())
    depot = depot_factory({"r": {"format": "debian", "type": "proxy", "upstream": upstream.url + "/"}})
    base = f"{depot.url}/r"
    assert get(f"{base}/dists/stable/main/source/Sources.gz").body == sources
    for _ in range(2):
        answer = get(f"{base}/{directory}/{dsc.name}")
        assert answer.status == 502 or not answer.complete, answer.status
    assert get(f"{base}/{directory}/{orig.name}").body == orig.read_bytes()
    assert get(f"{base}/{directory}/dpt-srcv_0.1.orig.tar.gz").status == 404        # listed nowhere
    upstream.put(f"{directory}/{dsc.name}", dsc.read_bytes())
    assert get(f"{base}/{directory}/{dsc.name}").body == dsc.read_bytes()


def test_apt_cacher_ng_mode_with_only_a_proxy_line(chain: Chain, up_key: Path, tmp_path: Path) -> None:
    """apt keeps the upstream's URL in sources.list and sets only Acquire::http::Proxy: depot
    answers the absolute-URI requests from the proxy repository whose upstream matches."""
    lines = [f"deb [signed-by={up_key}] {chain.up.url}/origin/ stable main"]
    apt = Apt(tmp_path / "acng", lines, proxy=chain.depot.url + "/")
    mark = len(chain.depot.log())
    apt.update()
    assert apt.download("dpt-px-b") == {chain.files[1].name: chain.files[1].read_bytes()}
    served = access(chain.depot, mark, "")
    assert any("/pool/" in l for l in served) and any("InRelease" in l for l in served), chain.depot.log()[mark:]
    outside = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", chain.depot.url,
                   "http://elsewhere.invalid/debian/dists/stable/InRelease").stdout
    assert outside == b"403"
    own = curl("-x", chain.depot.url, f"{chain.depot.url}/-/healthz").stdout      # depot's own URLs as usual
    assert own == b"ok\n"
    by_name = curl("-x", chain.depot.url, f"http://localhost:{chain.depot.port}/-/healthz").stdout
    assert by_name == b"ok\n"
    other_port = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", chain.depot.url,
                      f"http://localhost:{chain.up.port}/origin/key.asc").stdout
    assert other_port == b"403"               # another server on this machine is not depot


def test_export_key_cli_prints_the_served_key(env: SimpleNamespace, tmp_path: Path) -> None:
    served = get(f"{env.depot.url}/deb-local/key.asc").body.decode()
    printed = env.depot.run_cli("debian", "export-key", "deb-local").stdout
    assert printed == served and printed.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # a repository that never signed anything gets its key at first use, the server then uses it
    first = env.depot.run_cli("debian", "export-key", "deb").stdout
    assert first == get(f"{env.depot.url}/deb/key.asc").body.decode()
    assert env.depot.run_cli("debian", "export-key", "deb-remote", check=False).returncode == 2


# ---------------------------------------------------------------- default upstream

def test_default_upstream_is_the_first_deb_uri_of_the_apt_sources(tmp_path: Path) -> None:
    from depot.registry.apt_sources import first_deb_uri
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    assert first_deb_uri(etc) is None
    (etc / "sources.list.d" / "a.sources").write_text(
        "Types: deb-src\nURIs: http://src.example.invalid/d\nSuites: s\nComponents: main\n\n"
        "Types: deb\nURIs: http://off.example.invalid/d\nSuites: s\nComponents: main\nEnabled: no\n\n"
        "Types: deb deb-src\nURIs: http://mirror-b.example.invalid/debian\nSuites: s\nComponents: main\n")
    assert first_deb_uri(etc) == "http://mirror-b.example.invalid/debian/"
    (etc / "sources.list.d" / "0-first.list").write_text(
        "# deb http://commented.example.invalid/x s main\n"
        "deb-src http://src.example.invalid/x s main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror-a.example.invalid/debian s main\n")
    assert first_deb_uri(etc) == "http://mirror-a.example.invalid/debian/"
    (etc / "sources.list").write_text("deb http://main-list.example.invalid/debian/ s main\n")
    assert first_deb_uri(etc) == "http://main-list.example.invalid/debian/"


def test_release_signature_follows_the_release_served(depot_factory: Any, upstream: Any) -> None:
    """Release.gpg is always the one of the Release depot serves, even when the two were cached
    at different moments and the upstream changed in between."""
    upstream.put("dists/s/Release", b"Suite: s\nDate: A\n")
    upstream.put("dists/s/Release.gpg", b"signature of A")
    depot = depot_factory({"r": {"format": "debian", "type": "proxy", "upstream": upstream.url + "/",
                                 "metadata_ttl": 2}})
    base = f"{depot.url}/r/dists/s"
    assert get(f"{base}/Release").body == b"Suite: s\nDate: A\n"
    time.sleep(1.2)
    assert get(f"{base}/Release.gpg").body == b"signature of A"
    upstream.put("dists/s/Release", b"Suite: s\nDate: B\n")
    upstream.put("dists/s/Release.gpg", b"signature of B")
    time.sleep(1.0)
    assert get(f"{base}/Release").body == b"Suite: s\nDate: B\n"
    assert get(f"{base}/Release.gpg").body == b"signature of B"


def test_two_workers_serve_one_consistent_signed_suite(depot_factory: Any, tmp_path: Path) -> None:
    """Each worker renders and signs the suite itself: the Release bytes and indexes agree, so apt
    may read InRelease from one worker and Packages from the other."""
    depot = depot_factory({"w": {"format": "debian", "type": "hosted"}}, workers=2)
    debs = [build_deb(tmp_path / "build", name) for name in ("dpt-w-a", "dpt-w-b")]
    for deb in debs:
        assert upload(f"{depot.url}/w/upload/main/{deb.name}", deb) == 201
    releases = {get(f"{depot.url}/w/dists/stable/Release").body for _ in range(12)}
    assert len(releases) == 1
    for run in range(3):
        apt = signed_apt(tmp_path / f"apt{run}", depot.url, "w")
        apt.update()
        assert apt.download("dpt-w-a", "dpt-w-b") == {d.name: d.read_bytes() for d in debs}


def test_without_gnupg_signing_fails_clearly_and_uploads_still_work(depot_factory: Any, tmp_path: Path) -> None:
    import sys
    depot = depot_factory({"w": {"format": "debian", "type": "hosted"}},
                          env={"PATH": str(Path(sys.executable).parent)})          # no gpg on PATH
    deb = build_deb(tmp_path, "dpt-nogpg")
    assert upload(f"{depot.url}/w/upload/main/{deb.name}", deb) == 201
    for path in ("dists/stable/InRelease", "key.asc"):
        answer = get(f"{depot.url}/w/{path}")
        assert answer.status == 500 and b"gnupg" in answer.body.lower(), answer.body


def test_upload_to_a_pool_path_and_delete(env: SimpleNamespace, tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "dpt-pooled")
    url = f"{env.depot.url}/deb-local/pool/extras/d/dpt-pooled/{deb.name}"
    assert upload(url + "?suite=pooled", deb, *admin()) == 201
    packages = get(f"{env.depot.url}/deb-local/dists/pooled/extras/binary-amd64/Packages").body.decode()
    assert f"Filename: pool/extras/d/dpt-pooled/{deb.name}" in packages
    assert get(url).body == deb.read_bytes()
    assert int(curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", *admin(), url).stdout) == 204
    assert get(f"{env.depot.url}/deb-local/dists/pooled/InRelease").status == 404     # the suite is empty now
