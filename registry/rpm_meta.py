"""RPM repository metadata: package headers (rpmfile) in, repodata (primary, filelists, other,
repomd) out, and primary.xml read back (for proxies and group merges).

A package is described by a plain JSON-able dict (`read_rpm`), stored as the hosted file's
metadata, so repodata is rendered from the catalog without reading any package again.
Pure functions (blocking: callers run them in a thread).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import bz2
import stat
from typing import Any, Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

import rpmfile
from defusedxml import ElementTree as SafeET

COMMON = "http://linux.duke.edu/metadata/common"
RPM_NS = "http://linux.duke.edu/metadata/rpm"
FLAG_NAMES = {2: "LT", 4: "GT", 8: "EQ", 10: "LE", 12: "GE"}
NAME_FLAGS = {v: k for k, v in FLAG_NAMES.items()}
RPMLIB = 1 << 24
PRE = 64 | 512 | 1024        # RPMSENSE_PREREQ | SCRIPT_PRE | SCRIPT_POST
GHOST = 64
DEPENDENCIES = (("provides", "provides", "provideflags", "provideversion"),
                ("requires", "requirename", "requireflags", "requireversion"),
                ("conflicts", "conflictname", "conflictflags", "conflictversion"),
                ("obsoletes", "obsoletes", "obsoleteflags", "obsoleteversion"))


class BadRpm(ValueError):
    """The upload is not an RPM package depot can index."""


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else b""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def split_evr(text: str) -> tuple[str, str, str]:
    """'E:V-R' -> (epoch, version, release), epoch "0" when absent."""
    epoch, _, rest = text.rpartition(":") if ":" in text else ("0", "", text)
    version, _, release = rest.partition("-")
    return epoch or "0", version, release


def _dependencies(headers: dict[str, Any], names: str, flags: str, versions: str) -> list[list[Any]]:
    out = []
    for name, flag, version in zip(_list(headers.get(names)), _list(headers.get(flags)),  # noqa: B905
                                   _list(headers.get(versions))):
        if int(flag) & RPMLIB:
            continue
        out.append([_text(name), int(flag), _text(version)])
    return out


def _files(headers: dict[str, Any]) -> list[list[str]]:
    dirs = [_text(d) for d in _list(headers.get("dirnames"))]
    modes, flags = _list(headers.get("filemodes")), _list(headers.get("fileflags"))
    files = []
    pairs = zip(_list(headers.get("basenames")), _list(headers.get("dirindexes")), strict=False)
    for i, (base, index) in enumerate(pairs):
        path = dirs[int(index)] + _text(base)
        kind = "dir" if i < len(modes) and stat.S_ISDIR(int(modes[i]) & 0xFFFF) else ""
        if i < len(flags) and int(flags[i]) & GHOST:
            kind = "ghost"
        files.append([path, kind])
    return files


def read_rpm(data: bytes) -> dict[str, Any]:
    """A package's repodata fields from its header (BadRpm when it is not a binary RPM)."""
    if data[:4] != b"\xed\xab\xee\xdb":
        raise BadRpm("not an RPM package (bad lead magic)")
    try:
        with rpmfile.RPMFile(fileobj=io.BytesIO(data)) as rpm:
            headers, (start, end) = rpm.headers, rpm.header_range
    except Exception as exc:          # rpmfile raises several types on damaged headers
        raise BadRpm(f"not an RPM package: {exc}") from None
    if not headers.get("name") or not headers.get("version"):
        raise BadRpm("RPM header lacks a name or version")
    meta: dict[str, Any] = {
        "name": _text(headers["name"]),
        "epoch": str(_list(headers.get("serial"))[0]) if headers.get("serial") is not None else "0",
        "version": _text(headers["version"]), "release": _text(headers.get("release")),
        "arch": _text(headers.get("arch")) if headers.get("sourcerpm") else "src",
        "summary": _text(headers.get("summary")), "description": _text(headers.get("description")),
        "packager": _text(headers.get("packager")), "url": _text(headers.get("url")),
        "license": _text(headers.get("copyright")), "vendor": _text(headers.get("vendor")),
        "group": _text(headers.get("group")), "buildhost": _text(headers.get("buildhost")),
        "sourcerpm": _text(headers.get("sourcerpm")), "buildtime": int(_list(headers.get("buildtime"))[0] or 0)
        if headers.get("buildtime") is not None else 0,
        "installed": int(_list(headers.get("size"))[0]) if headers.get("size") is not None else 0,
        "archive": int(_list(headers.get("payloadsize") or headers.get("archivesize") or [0])[0]),
        "header_start": start, "header_end": end, "files": _files(headers)}
    for key, names, flags, versions in DEPENDENCIES:
        meta[key] = _dependencies(headers, names, flags, versions)
    return meta


# ------------------------------------------------------------------ writing

def _entry(dep: list[Any], pre: bool = True) -> str:
    name, flags, version = dep
    attrs = f"name={quoteattr(name)}"
    sense = FLAG_NAMES.get(int(flags) & 0xE)
    if sense and version:
        epoch, ver, rel = split_evr(version)
        attrs += f' flags="{sense}" epoch="{epoch}" ver={quoteattr(ver)}'
        if rel:
            attrs += f" rel={quoteattr(rel)}"
    if pre and int(flags) & PRE:
        attrs += ' pre="1"'
    return f"<rpm:entry {attrs}/>"


def _primary_file(path: str) -> bool:
    return path.startswith("/etc/") or "bin/" in path or path == "/usr/lib/sendmail"


def _version(p: dict[str, Any]) -> str:
    return f'<version epoch="{p["epoch"]}" ver={quoteattr(p["version"])} rel={quoteattr(p["release"])}/>'


def primary_package(p: dict[str, Any]) -> str:
    """One <package> of primary.xml; `p` also carries sha256, href, size and time."""
    deps = "".join(f"<rpm:{key}>{''.join(_entry(d, key == 'requires') for d in p[key])}</rpm:{key}>"
                   for key, *_ in DEPENDENCIES if p.get(key))
    files = "".join(f"<file{' type=' + quoteattr(kind) if kind else ''}>{escape(path)}</file>"
                    for path, kind in p.get("files", []) if _primary_file(path))
    return (f'<package type="rpm"><name>{escape(p["name"])}</name><arch>{escape(p["arch"])}</arch>{_version(p)}'
            f'<checksum type="sha256" pkgid="YES">{p["sha256"]}</checksum>'
            f'<summary>{escape(p["summary"])}</summary><description>{escape(p["description"])}</description>'
            f'<packager>{escape(p["packager"])}</packager><url>{escape(p["url"])}</url>'
            f'<time file="{int(p["time"])}" build="{p["buildtime"]}"/>'
            f'<size package="{p["size"]}" installed="{p["installed"]}" archive="{p["archive"]}"/>'
            f'<location href={quoteattr(p["href"])}/><format>'
            f'<rpm:license>{escape(p["license"])}</rpm:license><rpm:vendor>{escape(p["vendor"])}</rpm:vendor>'
            f'<rpm:group>{escape(p["group"])}</rpm:group><rpm:buildhost>{escape(p["buildhost"])}</rpm:buildhost>'
            f'<rpm:sourcerpm>{escape(p["sourcerpm"])}</rpm:sourcerpm>'
            f'<rpm:header-range start="{p["header_start"]}" end="{p["header_end"]}"/>'
            f'{deps}{files}</format></package>\n')


def primary_xml(packages: list[dict[str, Any]]) -> bytes:
    body = "".join(primary_package(p) for p in packages)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="{COMMON}" xmlns:rpm="{RPM_NS}" '
            f'packages="{len(packages)}">\n{body}</metadata>\n').encode()


def filelists_xml(packages: list[dict[str, Any]]) -> bytes:
    parts = []
    for p in packages:
        files = "".join(f"<file{' type=' + quoteattr(kind) if kind else ''}>{escape(path)}</file>"
                        for path, kind in p.get("files", []))
        parts.append(f'<package pkgid="{p["sha256"]}" name={quoteattr(p["name"])} arch={quoteattr(p["arch"])}>'
                     f"{_version(p)}{files}</package>\n")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<filelists xmlns="http://linux.duke.edu/metadata/filelists" '
            f'packages="{len(packages)}">\n{"".join(parts)}</filelists>\n').encode()


def other_xml(packages: list[dict[str, Any]]) -> bytes:
    parts = [f'<package pkgid="{p["sha256"]}" name={quoteattr(p["name"])} arch={quoteattr(p["arch"])}>'
             f"{_version(p)}</package>\n" for p in packages]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<otherdata xmlns="http://linux.duke.edu/metadata/other" '
            f'packages="{len(packages)}">\n{"".join(parts)}</otherdata>\n').encode()


def render_repodata(packages: list[dict[str, Any]], revision: int) -> dict[str, bytes]:
    """repodata/ files: checksum-named primary, filelists, other (.xml.gz) and repomd.xml."""
    packages = sorted(packages, key=lambda p: (p["name"], p["arch"], p["href"]))
    files: dict[str, bytes] = {}
    data = []
    for kind, xml in (("primary", primary_xml(packages)), ("filelists", filelists_xml(packages)),
                      ("other", other_xml(packages))):
        packed = gzip.compress(xml, mtime=0)
        digest = hashlib.sha256(packed).hexdigest()
        href = f"repodata/{digest}-{kind}.xml.gz"
        files[href] = packed
        data.append(f'<data type="{kind}"><checksum type="sha256">{digest}</checksum>'
                    f'<open-checksum type="sha256">{hashlib.sha256(xml).hexdigest()}</open-checksum>'
                    f'<location href="{href}"/><timestamp>{revision}</timestamp><size>{len(packed)}</size>'
                    f"<open-size>{len(xml)}</open-size></data>\n")
    files["repodata/repomd.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" '
        f'xmlns:rpm="{RPM_NS}">\n<revision>{revision}</revision>\n{"".join(data)}</repomd>\n').encode()
    return files


# ------------------------------------------------------------------ reading repodata back

def decompress(name: str, body: bytes) -> bytes:
    """A repodata file's XML (gz, xz, bz2, zst or plain)."""
    if name.endswith(".gz") or body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    if name.endswith(".xz") or body[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(body)
    if name.endswith(".bz2") or body[:3] == b"BZh":
        return bz2.decompress(body)
    if name.endswith(".zst") or body[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    return body


def repomd_entries(body: bytes) -> dict[str, dict[str, str]]:
    """href -> {type, algo, checksum} of every <data> in a repomd.xml."""
    root = SafeET.fromstring(body)
    out = {}
    for data in root.iter("{http://linux.duke.edu/metadata/repo}data"):
        location = data.find("{http://linux.duke.edu/metadata/repo}location")
        checksum = data.find("{http://linux.duke.edu/metadata/repo}checksum")
        if location is None or checksum is None:
            continue
        out[location.get("href", "")] = {"type": data.get("type", ""), "algo": checksum.get("type", "sha256"),
                                         "checksum": (checksum.text or "").strip().lower()}
    return out


def _q(tag: str, ns: str = COMMON) -> str:
    return f"{{{ns}}}{tag}"


def iter_primary(xml: bytes) -> Iterator[dict[str, Any]]:
    """Packages of a primary.xml as the dicts render_repodata writes (streamed parse)."""
    for _, elem in SafeET.iterparse(io.BytesIO(xml), events=("end",)):
        if elem.tag != _q("package"):
            continue
        yield _primary_dict(elem)
        elem.clear()


def _primary_dict(elem: Any) -> dict[str, Any]:
    def text(tag: str, ns: str = COMMON, parent: Any = elem) -> str:
        found = parent.find(_q(tag, ns))
        return (found.text or "") if found is not None else ""
    version, checksum = elem.find(_q("version")), elem.find(_q("checksum"))
    timing, size, location = elem.find(_q("time")), elem.find(_q("size")), elem.find(_q("location"))
    fmt = elem.find(_q("format"))
    header = fmt.find(_q("header-range", RPM_NS)) if fmt is not None else None
    p: dict[str, Any] = {
        "name": text("name"), "arch": text("arch"), "epoch": version.get("epoch", "0"),
        "version": version.get("ver", ""),
        "release": version.get("rel", ""), "sha256": (checksum.text or "").strip().lower(),
        "checksum_type": checksum.get("type", "sha256"), "summary": text("summary"),
        "description": text("description"), "packager": text("packager"), "url": text("url"),
        "time": int(timing.get("file", 0)), "buildtime": int(timing.get("build", 0)),
        "size": int(size.get("package", 0)), "installed": int(size.get("installed", 0)),
        "archive": int(size.get("archive", 0)), "href": location.get("href", ""),
        "base": location.get("{http://www.w3.org/XML/1998/namespace}base"),
        "header_start": int(header.get("start", 0)) if header is not None else 0,
        "header_end": int(header.get("end", 0)) if header is not None else 0, "files": []}
    for key in ("license", "vendor", "group", "buildhost", "sourcerpm"):
        p[key] = text(key, RPM_NS, fmt) if fmt is not None else ""
    for key, *_ in DEPENDENCIES:
        p[key] = []
        block = fmt.find(_q(key, RPM_NS)) if fmt is not None else None
        for entry in (block if block is not None else []):
            evr = ""
            if entry.get("ver") is not None:
                epoch = entry.get("epoch", "0")
                evr = ("" if epoch == "0" else f"{epoch}:") + entry.get("ver", "") + \
                    (f'-{entry.get("rel")}' if entry.get("rel") else "")
            flags = NAME_FLAGS.get(entry.get("flags", ""), 0) | (PRE if entry.get("pre") == "1" else 0)
            p[key].append([entry.get("name", ""), flags, evr])
    return p


def merge_filelists(packages: list[dict[str, Any]], xml: bytes) -> None:
    """Fill each package's `files` from a filelists.xml (matched by pkgid)."""
    by_id = {p["sha256"]: p for p in packages}
    ns = "http://linux.duke.edu/metadata/filelists"
    for _, elem in SafeET.iterparse(io.BytesIO(xml), events=("end",)):
        if elem.tag != f"{{{ns}}}package":
            continue
        target = by_id.get(elem.get("pkgid", "").lower())
        if target is not None:
            target["files"] = [[f.text or "", f.get("type", "")] for f in elem.findall(f"{{{ns}}}file")]
        elem.clear()


def package_hrefs(packages: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """href -> (checksum type, checksum) of primary packages."""
    return {p["href"]: (p.get("checksum_type", "sha256"), p["sha256"]) for p in packages}


def package_checksums(xml: bytes) -> dict[str, tuple[str, str]]:
    """href -> (checksum type, checksum) of every package of a primary.xml (light streamed parse)."""
    out: dict[str, tuple[str, str]] = {}
    checksum: tuple[str, str] | None = None
    for _, elem in SafeET.iterparse(io.BytesIO(xml), events=("end",)):
        if elem.tag == _q("checksum"):
            checksum = (elem.get("type", "sha256"), (elem.text or "").strip().lower())
        elif elem.tag == _q("location") and checksum is not None:
            out[elem.get("href", "")] = checksum
        elif elem.tag == _q("package"):
            checksum = None
            elem.clear()
    return out
