"""What a NuGet proxy needs of its upstream: the resources of its v3 service index, and the
rewrite of upstream URLs in registration and search answers to depot's (BASE_PLACEHOLDER)."""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable

from depot.cache.api import BASE_PLACEHOLDER

from . import nuget_meta as nm

# preferred first: the hive with SemVer 2.0.0 packages (3.6.0; nuget.org's "Versioned" one is the
# same), then the SemVer 1 ones (nuget.org leaves SemVer 2.0.0 versions out of those). nuget.org
# serves 3.4.0 and 3.6.0 gzip-encoded: the fill-time transform decodes them.
REGISTRATION_TYPES = ("RegistrationsBaseUrl/3.6.0", "RegistrationsBaseUrl/Versioned", "RegistrationsBaseUrl",
                      "RegistrationsBaseUrl/3.0.0-rc", "RegistrationsBaseUrl/3.0.0-beta", "RegistrationsBaseUrl/3.4.0")
MAX_DECODED = 256 << 20        # a gzip-encoded registration page is refused past this (a zip bomb)
SEARCH_TYPES = ("SearchQueryService/3.5.0", "SearchQueryService", "SearchQueryService/3.0.0-rc",
                "SearchQueryService/3.0.0-beta")
AUTOCOMPLETE_TYPES = ("SearchAutocompleteService", "SearchAutocompleteService/3.0.0-rc",
                      "SearchAutocompleteService/3.0.0-beta")


@dataclass(frozen=True)
class Resources:
    """The upstream's resource URLs (each ending in '/' where a path is appended)."""

    flat: str
    registration: str
    search: str | None
    autocomplete: str | None
    registration_hives: tuple[str, ...]

    def rewrites(self) -> list[tuple[str, str]]:
        """(upstream prefix, depot prefix) pairs, longest first."""
        pairs = [(self.flat, BASE_PLACEHOLDER + "/v3-flatcontainer/")]
        pairs += [(hive, BASE_PLACEHOLDER + "/v3/registration/") for hive in self.registration_hives]
        if self.search:
            pairs.append((self.search, BASE_PLACEHOLDER + "/v3/query"))
        if self.autocomplete:
            pairs.append((self.autocomplete, BASE_PLACEHOLDER + "/v3/autocomplete"))
        return sorted(pairs, key=lambda p: -len(p[0]))


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def parse_service_index(body: bytes) -> Resources:
    """The resources of an upstream service index; NuGetError when it lacks the essential ones."""
    try:
        resources = json.loads(body)["resources"]
        by_type: dict[str, str] = {}
        for item in resources:
            by_type.setdefault(str(item["@type"]), str(item["@id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise nm.NuGetError(f"the upstream service index cannot be read: {exc}") from None
    flat = by_type.get("PackageBaseAddress/3.0.0")
    hives = [by_type[t] for t in REGISTRATION_TYPES if t in by_type]
    if not flat or not hives:
        raise nm.NuGetError("the upstream service index names no PackageBaseAddress or RegistrationsBaseUrl")
    search = next((by_type[t] for t in SEARCH_TYPES if t in by_type), None)
    autocomplete = next((by_type[t] for t in AUTOCOMPLETE_TYPES if t in by_type), None)
    return Resources(_slash(flat), _slash(hives[0]), search, autocomplete,
                     tuple(dict.fromkeys(_slash(h) for h in hives)))


def _walk(value: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, list):
        return [_walk(v, rewrite) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, rewrite) for k, v in value.items()}
    return value


def _catalog_ids(value: Any) -> None:
    """Catalog entries point at depot's own catalog leaves (the upstream's catalog is elsewhere)."""
    if isinstance(value, list):
        for item in value:
            _catalog_ids(item)
    elif isinstance(value, dict):
        entry = value.get("catalogEntry")
        if isinstance(entry, dict) and entry.get("id") and entry.get("version"):
            entry["@id"] = (f"{BASE_PLACEHOLDER}/v3/catalog/{str(entry['id']).lower()}/"
                            f"{str(entry['version']).lower()}.json")
        for item in value.values():
            _catalog_ids(item)


def decoded(body: bytes) -> bytes:
    """A body as stored by the upstream's encoding: gzip-encoded hives are decoded (the client
    gets depot's rewritten, decoded document); ValueError when it does not decode."""
    if body[:2] != b"\x1f\x8b":
        return body
    try:
        inflater = zlib.decompressobj(wbits=31)
        out = inflater.decompress(body, MAX_DECODED)
    except zlib.error as exc:
        raise ValueError(f"bad gzip body: {exc}") from None
    if inflater.unconsumed_tail:
        raise ValueError("the decoded body is too large")
    return out


def rewriter(resources: Resources) -> Callable[[bytes], bytes]:
    """A fill-time transform: every upstream resource URL in a JSON answer → depot's."""
    pairs = resources.rewrites()

    def rewrite_string(text: str) -> str:
        for old, new in pairs:
            if text.startswith(old):
                return new + text[len(old):]
        return text

    def transform(body: bytes) -> bytes:
        try:
            doc = json.loads(decoded(body))
        except ValueError:
            return body
        doc = _walk(doc, rewrite_string)
        _catalog_ids(doc)
        return json.dumps(doc).encode()
    return transform


def catalog_entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Catalog entries of a registration index or page (inlined leaves only)."""
    out = []
    pages = doc.get("items") or []
    if doc.get("@type") == "catalog:CatalogPage" or (pages and "catalogEntry" in pages[0]):
        pages = [doc]
    for page in pages:
        for item in page.get("items") or []:
            entry = item.get("catalogEntry")
            if isinstance(entry, dict) and entry.get("id") and entry.get("version"):
                out.append(entry)
    return out


def remote_pages(doc: dict[str, Any]) -> list[str]:
    """@ids of the pages a registration index does not inline."""
    return [str(p["@id"]) for p in doc.get("items") or [] if isinstance(p, dict) and "items" not in p and p.get("@id")]
