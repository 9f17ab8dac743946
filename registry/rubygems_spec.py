"""A .gem read safely, and what depot derives from its gemspec (compact index line, Marshal spec).

A .gem is a plain tar holding `metadata.gz`: the Gem::Specification as YAML with Ruby tags
(`!ruby/object:Gem::Specification`, `…:Gem::Version`, `…:Gem::Requirement`, …). It is parsed
with a safe loader that turns every `!ruby/…` tag into a plain mapping, list or string and
resolves no implicit types but null (a version `1.10` stays the string "1.10"); other tags are
refused. Nothing is ever instantiated from the document.
"""
from __future__ import annotations

import base64
import gzip
import io
import re
import tarfile
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from . import rubygems_marshal as rm

MAX_METADATA = 1 << 20           # decompressed gemspec YAML
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}\Z")
VERSION = re.compile(r"[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?\Z")
PLATFORM = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
OPERATORS = ("=", "!=", ">", "<", ">=", "<=", "~>")
Req = list[tuple[str, str]]


class GemError(ValueError):
    """A .gem or gemspec that cannot be accepted (the message says why)."""


@dataclass
class GemSpec:
    """The parts of a Gem::Specification depot serves."""

    name: str
    version: str
    platform: str = "ruby"
    dependencies: list[tuple[str, Req]] = field(default_factory=list)         # runtime
    dev_dependencies: list[tuple[str, Req]] = field(default_factory=list)
    required_ruby_version: Req = field(default_factory=list)
    required_rubygems_version: Req = field(default_factory=list)
    summary: str = ""
    description: str | None = None
    authors: list[str] = field(default_factory=list)
    email: Any = None
    homepage: str | None = None
    licenses: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    rubygems_version: str = "3.3.15"
    date: str | None = None

    @property
    def full_name(self) -> str:
        """`name-version[-platform]`, the file name stem of the .gem and its quick spec."""
        return full_name(self.name, self.version, self.platform)

    @property
    def prerelease(self) -> bool:
        return is_prerelease(self.version)

    def to_meta(self) -> dict[str, Any]:
        """A JSON-safe form for the stored file's meta."""
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "GemSpec":
        """The inverse of to_meta()."""
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta}
        for key in ("dependencies", "dev_dependencies"):
            known[key] = [(n, [tuple(p) for p in r]) for n, r in known.get(key, [])]
        for key in ("required_ruby_version", "required_rubygems_version"):
            known[key] = [tuple(p) for p in known.get(key, [])]
        return cls(**known)


def full_name(name: str, version: str, platform: str = "ruby") -> str:
    return f"{name}-{version}" + ("" if platform in ("ruby", "") else f"-{platform}")


def is_prerelease(version: str) -> bool:
    return any(c.isalpha() for c in version)


def version_key(version: str) -> tuple[Any, ...]:
    """Gem::Version ordering: numeric segments compare as numbers, a letter segment sorts
    before any number (1.0.a < 1.0 < 1.0.1)."""
    parts = re.findall(r"[0-9]+|[a-zA-Z]+", version)
    key: list[tuple[int, Any]] = [(1, int(p)) if p.isdigit() else (0, p) for p in parts]
    while key and key[-1] == (1, 0):
        key.pop()
    return tuple(key)


# ---------------------------------------------------------------------- the safe YAML loader

class _GemLoader(yaml.SafeLoader):
    """Plain values only: `!ruby/…` tags become mappings/lists/strings, scalars stay strings."""


_GemLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _ruby_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _binary(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    raw = loader.construct_scalar(node)  # type: ignore[arg-type]
    return base64.b64decode(str(raw)).decode("utf-8", "replace")


_GemLoader.add_multi_constructor("!ruby/", _ruby_tag)
_GemLoader.add_constructor("!binary", _binary)
_GemLoader.add_constructor("tag:yaml.org,2002:binary", _binary)


# ---------------------------------------------------------------------- reading a .gem

def read_metadata(gem: bytes) -> bytes:
    """The gemspec YAML of a .gem (the decompressed `metadata.gz`)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gem), mode="r:") as tar:
            member = next((m for m in tar.getmembers() if m.name == "metadata.gz"), None)
            if member is None or not member.isfile():
                raise GemError("not a gem: metadata.gz is missing")
            handle = tar.extractfile(member)
            assert handle is not None
            packed = handle.read(MAX_METADATA)
    except (tarfile.TarError, EOFError) as exc:
        raise GemError(f"not a gem (a tar archive is expected): {exc}") from None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(packed)) as unzip:
            text = unzip.read(MAX_METADATA + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise GemError(f"metadata.gz is not gzip: {exc}") from None
    if len(text) > MAX_METADATA:
        raise GemError(f"the gemspec is larger than {MAX_METADATA} bytes")
    return text


def _requirement(raw: Any, what: str) -> Req:
    if raw is None:
        return []
    pairs = raw.get("requirements") if isinstance(raw, dict) else None
    if not isinstance(pairs, list):
        raise GemError(f"{what}: not a Gem::Requirement")
    out = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise GemError(f"{what}: bad requirement {pair!r}")
        op, ver = pair
        ver = ver.get("version") if isinstance(ver, dict) else ver
        if op not in OPERATORS or not isinstance(ver, str) or not VERSION.match(ver):
            raise GemError(f"{what}: bad requirement {op!r} {ver!r}")
        out.append((op, ver))
    return [] if out == [(">=", "0")] else out


def _platform(raw: Any) -> str:
    if raw is None:
        return "ruby"
    if isinstance(raw, dict):       # a Gem::Platform object: cpu, os, version
        raw = "-".join(str(raw[k]) for k in ("cpu", "os", "version") if raw.get(k))
    if not isinstance(raw, str) or not PLATFORM.match(raw):
        raise GemError(f"bad platform {raw!r}")
    return raw


def _text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) else None


def parse_spec(text: bytes) -> GemSpec:
    """A GemSpec from gemspec YAML (validated: name, version, platform, requirements)."""
    try:
        doc = yaml.load(text, Loader=_GemLoader)  # noqa: S506 (a safe loader: see _GemLoader)
    except yaml.YAMLError as exc:
        raise GemError(f"the gemspec is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise GemError("the gemspec is not a Gem::Specification")
    name, version = doc.get("name"), doc.get("version")
    version = version.get("version") if isinstance(version, dict) else version
    if not isinstance(name, str) or not NAME.match(name) or not re.search(r"[A-Za-z]", name):
        raise GemError(f"bad gem name {name!r}")
    if not isinstance(version, str) or not VERSION.match(version):
        raise GemError(f"bad gem version {version!r}")
    spec = GemSpec(name, version, _platform(doc.get("platform")))
    for dep in doc.get("dependencies") or []:
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str) or not NAME.match(dep["name"]):
            raise GemError(f"bad dependency {dep!r}")
        req = _requirement(dep.get("requirement") or dep.get("version_requirements"), dep["name"])
        target = spec.dev_dependencies if dep.get("type") == ":development" else spec.dependencies
        target.append((dep["name"], req))
    spec.required_ruby_version = _requirement(doc.get("required_ruby_version"), "required_ruby_version")
    spec.required_rubygems_version = _requirement(doc.get("required_rubygems_version"), "required_rubygems_version")
    spec.summary = _text(doc.get("summary")) or ""
    spec.description, spec.homepage = _text(doc.get("description")), _text(doc.get("homepage"))
    spec.authors = [a for a in doc.get("authors") or [] if isinstance(a, str)]
    spec.email = doc.get("email") if isinstance(doc.get("email"), (str, list)) else None
    spec.licenses = [x for x in doc.get("licenses") or [] if isinstance(x, str)]
    meta = doc.get("metadata")
    spec.metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    spec.rubygems_version = _text(doc.get("rubygems_version")) or spec.rubygems_version
    found = re.match(r"\d{4}-\d{2}-\d{2}", str(doc.get("date") or ""))
    spec.date = found.group(0) if found else None
    return spec


def parse_gem(gem: bytes) -> GemSpec:
    """The validated GemSpec of a .gem file."""
    return parse_spec(read_metadata(gem))


# ---------------------------------------------------------------------- what depot serves

def requirement_text(req: Req) -> str:
    """`~> 1.0&>= 1.0.1` (compact index), `>= 0` when empty."""
    return "&".join(f"{op} {v}" for op, v in req) or ">= 0"


def info_line(spec: GemSpec, sha256: str) -> str:
    """The compact index line of one gem version (`/info/<name>`)."""
    head = spec.version if spec.platform == "ruby" else f"{spec.version}-{spec.platform}"
    deps = ",".join(f"{name}:{requirement_text(req)}" for name, req in spec.dependencies)
    tail = f"checksum:{sha256}"
    if spec.required_ruby_version:
        tail += f",ruby:{requirement_text(spec.required_ruby_version)}"
    if spec.required_rubygems_version:
        tail += f",rubygems:{requirement_text(spec.required_rubygems_version)}"
    return f"{head} {deps}|{tail}"


def marshal_spec(spec: GemSpec) -> bytes:
    """`Marshal.dump(spec)` of a Gem::Specification (its `_dump` array, specification_version 4)."""
    deps = [rm.dependency(n, r) for n, r in spec.dependencies] + \
        [rm.dependency(n, r, "development") for n, r in spec.dev_dependencies]
    fields = [spec.rubygems_version, 4, spec.name, rm.version(spec.version), spec.date, spec.summary,
              rm.requirement(spec.required_ruby_version), rm.requirement(spec.required_rubygems_version),
              spec.platform, deps, "", spec.email, spec.authors, spec.description, spec.homepage, True,
              spec.platform, spec.licenses, spec.metadata]
    return rm.dumps(rm.UserDef("Gem::Specification", rm.dumps(fields)))


def quick_spec(spec: GemSpec) -> bytes:
    """`quick/Marshal.4.8/<full_name>.gemspec.rz`: the Marshal spec, zlib-deflated."""
    return zlib.compress(marshal_spec(spec))


def specs_index(tuples: list[tuple[str, str, str]]) -> bytes:
    """`specs.4.8.gz` and its siblings: gzip of a Marshal array of [name, Gem::Version, platform]."""
    body = rm.dumps([[name, rm.version(version), platform] for name, version, platform in tuples])
    return gzip.compress(body, mtime=0)


def dependencies_answer(entries: list[dict[str, Any]]) -> bytes:
    """`/api/v1/dependencies`: Marshal array of {name:, number:, platform:, dependencies: [[n, req]]}."""
    return rm.dumps([{rm.Symbol("name"): e["name"], rm.Symbol("number"): e["number"],
                      rm.Symbol("platform"): e["platform"],
                      rm.Symbol("dependencies"): [[n, r] for n, r in e["dependencies"]]} for e in entries])
