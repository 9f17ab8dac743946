"""Eclipse p2 documents (pure functions, run in worker threads): repository indexes in their
three encodings (.xml, .xml.xz, .jar), mirror removal, composite children, artifact checksums,
generated composite repositories, and uploaded update sites."""
from __future__ import annotations

import hashlib
import io
import lzma
import re
import zipfile
from typing import Callable, Iterable
from xml.etree import ElementTree

INDEX = re.compile(r"(?P<kind>content|artifacts|compositeContent|compositeArtifacts)\.(?P<enc>xml|xml\.xz|jar)")
MIRRORS = re.compile(r"""\s*<property\s+name=['"]p2\.mirrorsURL['"]\s+value=['"][^'"]*['"]\s*/>""")
CHILD = re.compile(r"""(<child\s+location=)(['"])([^'"]*)\2""")
MAX_SITE_FILES = 20_000
MAX_XML = 256 * 2**20
FOLDERS = {"osgi.bundle": "plugins", "org.eclipse.update.feature": "features", "binary": "binary"}
EXTENSIONS = {"osgi.bundle": ".jar", "org.eclipse.update.feature": ".jar", "binary": ""}
COMPOSITE = {
    "compositeContent": ("compositeMetadataRepository",
                         "org.eclipse.equinox.internal.p2.metadata.repository.CompositeMetadataRepository"),
    "compositeArtifacts": ("compositeArtifactRepository",
                           "org.eclipse.equinox.internal.p2.artifact.repository.CompositeArtifactRepository"),
}


class BadSite(ValueError):
    """An update site or index that cannot be used."""


def decode(name: str, body: bytes) -> bytes:
    """The XML inside an index file of any encoding."""
    found = INDEX.fullmatch(name.rsplit("/", 1)[-1])
    enc = found["enc"] if found else "xml"
    try:
        if enc == "xml.xz":
            return lzma.decompress(body)
        if enc == "jar":
            with zipfile.ZipFile(io.BytesIO(body)) as jar:
                inner = next((i for i in jar.infolist() if i.filename.endswith(".xml")), None)
                if inner is None or inner.file_size > MAX_XML:
                    raise BadSite(f"{name} holds no XML document")
                return jar.read(inner)
    except (lzma.LZMAError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadSite(f"{name} cannot be decoded: {exc}") from None
    return body


def encode(name: str, original: bytes, xml: bytes) -> bytes:
    """`xml` in the encoding of `name` (a .jar keeps the inner file name of `original`)."""
    enc = INDEX.fullmatch(name.rsplit("/", 1)[-1])
    kind = enc["enc"] if enc else "xml"
    if kind == "xml.xz":
        return lzma.compress(xml, format=lzma.FORMAT_XZ)
    if kind == "jar":
        with zipfile.ZipFile(io.BytesIO(original)) as jar:
            inner = next(i.filename for i in jar.infolist() if i.filename.endswith(".xml"))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr(zipfile.ZipInfo(inner, (2000, 1, 1, 0, 0, 0)), xml)
        return out.getvalue()
    return xml


def rewrite_index(name: str, body: bytes, url: str, mapped: Callable[[str], str | None] | None = None) -> bytes:
    """An upstream index (at depot path `name`, fetched from `url`) for clients of depot:
    `p2.mirrorsURL` removed (clients would go to the mirrors instead), composite children under
    the document's own directory made relative, and children elsewhere that `mapped` knows
    (absolute URL -> path under the repository root) pointed at that path, so they all resolve
    through depot."""
    xml = decode(name, body)
    text = xml.decode("utf-8")
    new = MIRRORS.sub("", text)
    if new != text:
        new = re.sub(r"<properties\s+size=['\"](\d+)['\"]",
                     lambda m: f"<properties size='{int(m[1]) - len(MIRRORS.findall(text))}'", new, count=1)
    directory = url.rsplit("/", 1)[0] + "/"
    up = "../" * name.count("/")              # from the document's directory to the repository root

    def child(location: str) -> str:
        relative = _relative(location, directory)
        local = mapped(location) if relative == location and mapped is not None else None
        return relative if local is None else up + local
    new = CHILD.sub(lambda m: m[1] + m[2] + child(m[3]) + m[2], new)
    return body if new == text else encode(name, body, new.encode("utf-8"))


def _relative(location: str, directory: str) -> str:
    base = directory.rstrip("/")
    loc = location.rstrip("/")
    if loc == base:
        return "."
    if loc.startswith(base + "/"):
        return loc[len(base) + 1:]
    return location


def artifact_checksums(xml: bytes) -> dict[str, str | None]:
    """Repository-relative file -> sha256 (None: no sha256 given) of an artifacts.xml."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise BadSite(f"artifacts index is not XML: {exc}") from None
    out: dict[str, str | None] = {}
    for artifact in root.iter("artifact"):
        classifier, ident, version = (artifact.get(k) for k in ("classifier", "id", "version"))
        if classifier not in FOLDERS or not ident or not version:
            continue
        props = {p.get("name"): p.get("value") for p in artifact.iter("property")}
        sha = props.get("download.checksum.sha-256")
        path = f"{FOLDERS[classifier]}/{ident}_{version}{EXTENSIONS[classifier]}"
        if any(p.get("name") == "format" and p.get("value") == "packed" for p in artifact.iter("property")):
            path += ".pack.gz"
        out[path] = sha.lower() if sha and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None
    return out


def checksums_of(name: str, body: bytes) -> dict[str, str | None]:
    """artifact_checksums() of an artifacts index in any encoding."""
    return artifact_checksums(decode(name, body))


def composite(kind: str, children: Iterable[str], timestamp: int) -> bytes:
    """A generated compositeContent.xml / compositeArtifacts.xml."""
    pi, rtype = COMPOSITE[kind]
    kids = list(children)
    lines = ["<?xml version='1.0' encoding='UTF-8'?>", f"<?{pi} version='1.0.0'?>",
             f"<repository name='depot' type='{rtype}' version='1.0.0'>",
             "  <properties size='2'>", f"    <property name='p2.timestamp' value='{timestamp}'/>",
             "    <property name='p2.atomic.composite.loading' value='true'/>", "  </properties>",
             f"  <children size='{len(kids)}'>", *(f"    <child location='{k}'/>" for k in kids),
             "  </children>", "</repository>", ""]
    return "\n".join(lines).encode()


P2_INDEX = (b"version=1\nmetadata.repository.factory.order=compositeContent.xml,\\!\n"
            b"artifact.repository.factory.order=compositeArtifacts.xml,\\!\n")


def read_site(data: bytes, check: Callable[[str], str]) -> dict[str, bytes]:
    """The files of a zipped update site (path -> bytes), the top directory stripped when there
    is one; it must hold a content and an artifacts index, and every artifact file it lists with
    a sha256 must match."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadSite(f"not a zip file: {exc}") from None
    if len(infos) > MAX_SITE_FILES:
        raise BadSite(f"more than {MAX_SITE_FILES} files")
    names = [i.filename for i in infos]
    prefix = ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        prefix = tops.pop() + "/"
    files: dict[str, bytes] = {}
    try:
        for info in infos:
            files[check(info.filename[len(prefix):])] = archive.read(info)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadSite(f"the zip cannot be read: {exc}") from None
    content = next((n for n in ("content.xml.xz", "content.jar", "content.xml") if n in files), None)
    artifacts = next((n for n in ("artifacts.xml.xz", "artifacts.jar", "artifacts.xml") if n in files), None)
    if content is None or artifacts is None:
        raise BadSite("not a p2 repository: no content.(jar|xml|xml.xz) and artifacts.(jar|xml|xml.xz) at its top")
    for path, sha in artifact_checksums(decode(artifacts, files[artifacts])).items():
        if path not in files:
            raise BadSite(f"{artifacts} lists {path}, which the zip does not hold")
        if sha and hashlib.sha256(files[path]).hexdigest() != sha:
            raise BadSite(f"{path} does not match the sha-256 in {artifacts}")
    return files


# ---------------------------------------------------------------- supply-chain policy (proxies)
UNIT = re.compile(r"""<(?P<tag>unit|artifact)\s(?P<attrs>[^>]*?)(?:/>|>.*?</(?P=tag)>)\s*""", re.S)
ATTR = re.compile(r"""(\w+)=(['"])(.*?)\2""")
CONTAINER_SIZE = re.compile(r"""(<(?P<tag>units|artifacts)\s+size=)(['"])\d+\3""")


def _identity(attrs: str) -> tuple[str, str] | None:
    found = {m[1]: m[3] for m in ATTR.finditer(attrs)}
    return (found["id"], found["version"]) if "id" in found and "version" in found else None


def offered(name: str, body: bytes) -> list[tuple[str, str]]:
    """(id, version) of every installable unit or artifact a content/artifacts index lists."""
    if INDEX.fullmatch(name.rsplit("/", 1)[-1]) is None or "composite" in name.rsplit("/", 1)[-1]:
        return []
    text = decode(name, body).decode("utf-8", "replace")
    return [found for m in UNIT.finditer(text) if (found := _identity(m["attrs"])) is not None]


def without(name: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    """The index without the hidden units/artifacts (the container sizes kept right), re-encoded."""
    text = decode(name, body).decode("utf-8")
    counts = {"unit": 0, "artifact": 0}

    def keep(match: re.Match[str]) -> str:
        if _identity(match["attrs"]) in hidden:
            return ""
        counts[match["tag"]] += 1
        return match[0]
    new = UNIT.sub(keep, text)
    outer = "units" if name.rsplit("/", 1)[-1].startswith("content") else "artifacts"   # not units' own <artifacts>
    new = CONTAINER_SIZE.sub(lambda m: f"{m[1]}{m[3]}{counts[outer[:-1]]}{m[3]}" if m["tag"] == outer else m[0],
                             new, count=1 if outer == "artifacts" else 0)
    return encode(name, body, new.encode("utf-8"))
