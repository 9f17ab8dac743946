"""Supply-chain policy decisions (pure, no I/O): release cooldown, deny/allow/exempt rules and
malicious-package records, for every format at once.

A format tells the engine which versions a metadata document offers and when each was
published (Format.metadata_versions); this module decides which of them are hidden, and whether
a direct download of one file is refused. Version ranges are written in each format's own
syntax, chosen by the format's `version_scheme` (see SCHEMES).
"""
from __future__ import annotations

import fnmatch
import re
import time
from datetime import datetime
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import semantic_version
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

MODES = ("enforce", "report")


# ---------------------------------------------------------------- version schemes
def _pep440_in(version: str, spec: str) -> bool:
    try:
        return Version(version) in SpecifierSet(spec, prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        return False


def _semver_in(version: str, spec: str) -> bool:
    try:
        return semantic_version.Version.coerce(version) in semantic_version.NpmSpec(spec)
    except ValueError:
        return False


_COMPARATOR = re.compile(r"\s*(<=|>=|<|>|==|=|!=)?\s*([^\s,<>=!]+)\s*")


def loose_key(version: str) -> tuple[Any, ...]:
    """An ordering key for versions of any scheme: numbers compare as numbers, words as text
    (pre-release words sort before the release)."""
    parts: list[tuple[int, Any]] = []
    for token in re.findall(r"\d+|[A-Za-z]+", version):
        parts.append((1, int(token)) if token.isdigit() else (0, token.lower()))
    return tuple(parts)


def _loose_in(version: str, spec: str) -> bool:
    """Comparators joined by ',' (all must hold): `<1.2`, `>=1.0,<2`, `==1.4.1`, or a bare version.
    Something that does not look like a version (`latest`, `release-7`) is in no range."""
    if not re.match(r"v?\d", version):
        return False
    key = loose_key(version)
    for part in spec.split(","):
        found = _COMPARATOR.fullmatch(part)
        if not found:
            return False
        op, bound = found.group(1) or "==", loose_key(found.group(2))
        ok = {"<": key < bound, "<=": key <= bound, ">": key > bound, ">=": key >= bound,
              "==": key == bound, "=": key == bound, "!=": key != bound}[op]
        if not ok:
            return False
    return True


def _maven_in(version: str, spec: str) -> bool:
    """Maven ranges: `[1.0,2.0)`, `(,1.0]`, `[1.2]`, several joined by ','; else loose comparators."""
    ranges = re.findall(r"([\[(])([^\])]*)([\])])", spec)
    if not ranges:
        return _loose_in(version, spec)
    key = loose_key(version)
    for low_mark, body, high_mark in ranges:
        low, _, high = body.partition(",") if "," in body else (body, "", body)
        ok = True
        if low.strip():
            ok = key >= loose_key(low) if low_mark == "[" else key > loose_key(low)
        if ok and high.strip():
            ok = key <= loose_key(high) if high_mark == "]" else key < loose_key(high)
        if ok:
            return True
    return False


SCHEMES: dict[str, Callable[[str, str], bool]] = {
    "pep440": _pep440_in, "semver": _semver_in, "maven": _maven_in, "generic": _loose_in,
}


def version_in(scheme: str, version: str, spec: str) -> bool:
    """Whether `version` is in `spec`, read in the format's own syntax."""
    return SCHEMES.get(scheme, _loose_in)(version, spec)


@dataclass(frozen=True)
class VersionInfo:
    """One version a metadata document offers (Format.metadata_versions)."""

    package: str
    version: str
    published: float | None = None        # epoch seconds upstream, None when unknown


# ---------------------------------------------------------------- rules and configuration
@dataclass(frozen=True)
class Rule:
    """`name-glob` or `name-glob@range` (npm scopes keep their leading '@')."""

    pattern: str
    spec: str | None = None
    source: str = "config"

    def matches(self, scheme: str, package: str, version: str | None) -> bool:
        if not fnmatch.fnmatchcase(package.lower(), self.pattern.lower()):
            return False
        if self.spec is None:
            return True
        return version is not None and version_in(scheme, version, self.spec)

    def label(self) -> str:
        return self.pattern + (f"@{self.spec}" if self.spec else "")


def parse_rule(text: str, source: str = "config") -> Rule:
    """'pkg', 'pkg@<1.0.1', '@scope/pkg@^2', 'evil-*' -> Rule (ValueError on an empty pattern)."""
    text = str(text).strip()
    at = text.find("@", 1)
    pattern, spec = (text[:at], text[at + 1:].strip()) if at > 0 else (text, None)
    if not pattern:
        raise ValueError(f"empty package pattern in {text!r}")
    return Rule(pattern, spec or None, source)


@dataclass(frozen=True)
class Policy:
    """The rules one repository applies (global ones plus its own)."""

    mode: str = "enforce"
    cooldown: float | None = None          # seconds; None: no cooldown
    deny: tuple[Rule, ...] = ()
    allow: tuple[Rule, ...] = ()           # when non-empty: nothing else passes
    exempt: tuple[Rule, ...] = ()          # skip the cooldown
    apply_to_hosted: bool = False
    generation: int = 0                    # bumped when rules change (re-filter cached documents)

    @property
    def active(self) -> bool:
        return bool(self.cooldown or self.deny or self.allow)

    def merged(self, other: "Policy") -> "Policy":
        """These rules plus a repository's own (its cooldown and mode win when it sets them)."""
        return Policy(other.mode if other.mode != "enforce" else self.mode,
                      other.cooldown if other.cooldown is not None else self.cooldown,
                      self.deny + other.deny, self.allow + other.allow, self.exempt + other.exempt,
                      self.apply_to_hosted or other.apply_to_hosted, self.generation)


def parse_policy(raw: Mapping[str, Any] | None, parse_duration: Callable[[Any], float]) -> Policy:
    """A `policy:` mapping -> Policy; ValueError('key: why') on bad input."""
    raw = raw or {}
    known = {"mode", "cooldown", "deny", "allow", "exempt", "hosted"}
    for key in raw:
        if key not in known:
            raise ValueError(f"{key}: unknown setting; known: {', '.join(sorted(known))}")
    mode = raw.get("mode", "enforce")
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {', '.join(MODES)}")
    cooldown = raw.get("cooldown")
    try:
        seconds = None if cooldown in (None, 0, "0") else float(parse_duration(cooldown))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cooldown: {exc}") from None
    lists = {}
    for key in ("deny", "allow", "exempt"):
        value = raw.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"{key}: must be a list of package patterns")
        try:
            lists[key] = tuple(parse_rule(v) for v in value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return Policy(mode, seconds, lists["deny"], lists["allow"], lists["exempt"], bool(raw.get("hosted", False)))


# ---------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Verdict:
    """Why a version is hidden or refused; `until` for a cooldown."""

    rule: str                  # cooldown | deny | allow | malicious
    detail: str
    until: float | None = None

    def message(self, package: str, version: str | None) -> str:
        what = f"{package} {version}" if version else package
        if self.rule == "cooldown" and self.until is not None:
            return (f"{what} is blocked by depot policy rule cooldown: published less than the cooldown ago; "
                    f"allowed from {iso(self.until)}")
        return f"{what} is blocked by depot policy rule {self.rule}: {self.detail}"

    def header(self) -> str:
        """The X-Depot-Policy header value."""
        return f"cooldown until {iso(self.until)}" if self.until is not None else f"{self.rule} {self.detail}"


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 / RFC 3339 time as registries write them (`Z`, fractions
    of any length), None when it is not one. The one parser of publish times for every format."""
    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def iso(timestamp: float | None) -> str:
    return "" if timestamp is None else time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(timestamp))


@dataclass
class Advisory:
    """A malicious-package (or vulnerability) record from an OSV dump, for one package."""

    id: str
    versions: frozenset[str] = frozenset()
    ranges: tuple[tuple[str | None, str | None, str | None], ...] = ()   # (introduced, fixed, last_affected)
    all_versions: bool = False

    def affects(self, version: str | None) -> bool:
        if self.all_versions:
            return True
        if version is None:
            return False
        if version in self.versions:
            return True
        key = loose_key(version)
        for introduced, fixed, last in self.ranges:
            if introduced not in (None, "0") and key < loose_key(introduced):
                continue
            if fixed is not None and key >= loose_key(fixed):
                continue
            if last is not None and key > loose_key(last):
                continue
            return True
        return False


@dataclass
class Judge:
    """Decides for one repository of one format."""

    policy: Policy
    scheme: str = "generic"
    advisories: Mapping[str, list[Advisory]] = field(default_factory=dict)   # package (lowercase) ->

    def verdict(self, package: str, version: str | None, published: float | None,
                now: float | None = None) -> Verdict | None:
        """None when the version may be used; else why not."""
        policy, scheme = self.policy, self.scheme
        for advisory in self.advisories.get(package.lower(), ()):
            if advisory.affects(version):
                return Verdict("malicious", f"listed in {advisory.id}")
        for rule in policy.deny:
            if rule.matches(scheme, package, version):
                return Verdict("deny", f"matches {rule.label()}")
        if policy.allow and not any(r.matches(scheme, package, version) for r in policy.allow):
            return Verdict("allow", "not in the allow list")
        if policy.cooldown and published is not None \
                and not any(r.matches(scheme, package, version) for r in policy.exempt):
            until = published + policy.cooldown
            if (time.time() if now is None else now) < until:
                return Verdict("cooldown", "", until)
        return None

    def hidden(self, versions: Iterable[tuple[str, str, float | None]],
               now: float | None = None) -> dict[tuple[str, str], Verdict]:
        """The (package, version) pairs to hide, with why."""
        out = {}
        for package, version, published in versions:
            found = self.verdict(package, version, published, now)
            if found is not None:
                out[(package, version)] = found
        return out


def with_generation(policy: Policy, generation: int) -> Policy:
    return replace(policy, generation=generation)
