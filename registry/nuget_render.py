"""NuGet documents rendered from catalog entries: the service index, registration (index, pages,
leaves), flat-container version lists, search results and the v2 OData (Atom) feed.

Every function takes `base`, the URL of the repository as the client addressed it.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable
from xml.sax.saxutils import escape, quoteattr

from . import nuget_meta as nm

INLINE_LIMIT = 128        # registration pages are inlined up to this many versions
PAGE_SIZE = 64

# The registration hives, as on nuget.org: SemVer 2.0.0 versions only in the 3.6.0 one (the one
# NuGet >= 4.3 picks first); the others are for older clients, which cannot parse them.
FULL = "v3/registration"
SEMVER1 = "v3/registration-semver1"

# (resource type, path under the repository) — 5.8 needs RegistrationsBaseUrl/3.0.0-rc and -beta
RESOURCES = (
    ("PackageBaseAddress/3.0.0", "v3-flatcontainer/"),
    ("RegistrationsBaseUrl", f"{SEMVER1}/"),
    ("RegistrationsBaseUrl/3.0.0-rc", f"{SEMVER1}/"),
    ("RegistrationsBaseUrl/3.0.0-beta", f"{SEMVER1}/"),
    ("RegistrationsBaseUrl/3.4.0", f"{SEMVER1}/"),
    ("RegistrationsBaseUrl/3.6.0", f"{FULL}/"),
    ("RegistrationsBaseUrl/Versioned", f"{FULL}/"),       # what NuGet >= 4.3 reads (clientVersion below)
    ("SearchQueryService", "v3/query"),
    ("SearchQueryService/3.0.0-rc", "v3/query"),
    ("SearchQueryService/3.0.0-beta", "v3/query"),
    ("SearchQueryService/3.5.0", "v3/query"),
    ("SearchAutocompleteService", "v3/autocomplete"),
    ("SearchAutocompleteService/3.0.0-rc", "v3/autocomplete"),
    ("SearchAutocompleteService/3.0.0-beta", "v3/autocomplete"),
    ("PackagePublish/2.0.0", "api/v2/package"),
    ("LegacyGallery/2.0.0", "api/v2"),
)

# a "Versioned" resource is for clients at least this recent (as on nuget.org: the SemVer 2 hive)
CLIENT_VERSIONS = {"RegistrationsBaseUrl/Versioned": "4.3.0-alpha"}


def service_index(base: str, can_push: bool) -> bytes:
    """The v3 service index pointing every resource at this repository."""
    resources = [{"@id": f"{base}/{path}", "@type": kind, "comment": "depot",
                  **({"clientVersion": CLIENT_VERSIONS[kind]} if kind in CLIENT_VERSIONS else {})}
                 for kind, path in RESOURCES if can_push or kind != "PackagePublish/2.0.0"]
    return json.dumps({"version": "3.0.0", "resources": resources}, indent=1).encode()


def nupkg_url(base: str, package_id: str, version: str) -> str:
    lid, lv = package_id.lower(), version.lower()
    return f"{base}/v3-flatcontainer/{lid}/{lv}/{lid}.{lv}.nupkg"


def registration_url(base: str, package_id: str, hive: str = FULL) -> str:
    return f"{base}/{hive}/{package_id.lower()}/index.json"


def leaf_url(base: str, package_id: str, version: str, hive: str = FULL) -> str:
    return f"{base}/{hive}/{package_id.lower()}/{version.lower()}.json"


def _catalog_entry(base: str, entry: dict[str, Any], hive: str = FULL) -> dict[str, Any]:
    package_id, version = entry["id"], entry["version"]
    out = {key: value for key, value in entry.items() if not key.startswith("@")}
    groups = []
    for group in entry.get("dependencyGroups") or []:
        deps = [{"@type": "PackageDependency", "id": d.get("id", ""), "range": d.get("range", ""),
                 "registration": registration_url(base, d.get("id", ""), hive)}
                for d in group.get("dependencies") or []]
        groups.append({**{k: v for k, v in group.items() if not k.startswith("@")}, "@type": "PackageDependencyGroup",
                       "dependencies": deps})
    listed = entry.get("listed", True)
    out.update({"@id": f"{base}/v3/catalog/{package_id.lower()}/{version.lower()}.json", "@type": "PackageDetails",
                "listed": listed, "published": entry.get("published") if listed else nm.UNLISTED_TIME,
                "dependencyGroups": groups, "packageContent": nupkg_url(base, package_id, version)})
    out.setdefault("description", "")
    out.setdefault("authors", "")
    return out


def leaf(base: str, entry: dict[str, Any], hive: str = FULL) -> dict[str, Any]:
    """One registration leaf (as inlined in a page)."""
    package_id, version = entry["id"], entry["version"]
    return {"@id": leaf_url(base, package_id, version, hive), "@type": "Package",
            "catalogEntry": _catalog_entry(base, entry, hive), "packageContent": nupkg_url(base, package_id, version),
            "registration": registration_url(base, package_id, hive)}


def catalog_leaf(base: str, entry: dict[str, Any]) -> bytes:
    """The catalog entry document `v3/catalog/{id}/{version}.json` (what catalogEntry.@id names)."""
    return json.dumps(_catalog_entry(base, entry)).encode()


def leaf_document(base: str, entry: dict[str, Any], hive: str = FULL) -> bytes:
    """The registration leaf document `{id}/{version}.json`."""
    package_id, version = entry["id"], entry["version"]
    return json.dumps({"@id": leaf_url(base, package_id, version, hive), "@type": ["Package", "catalog:Permalink"],
                       "catalogEntry": _catalog_entry(base, entry)["@id"], "listed": entry.get("listed", True),
                       "packageContent": nupkg_url(base, package_id, version),
                       "published": entry.get("published"),
                       "registration": registration_url(base, package_id, hive)}).encode()


def _pages(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    if len(entries) <= INLINE_LIMIT:
        return [entries]
    return [entries[i:i + PAGE_SIZE] for i in range(0, len(entries), PAGE_SIZE)]


def page(base: str, package_id: str, chunk: list[dict[str, Any]], inline: bool, hive: str = FULL) -> dict[str, Any]:
    lower, upper = chunk[0]["version"].lower(), chunk[-1]["version"].lower()
    lid = package_id.lower()
    out: dict[str, Any] = {
        "@id": (f"{base}/{hive}/{lid}/index.json#page/{lower}/{upper}" if inline
                else f"{base}/{hive}/{lid}/page/{lower}/{upper}.json"),
        "@type": "catalog:CatalogPage", "count": len(chunk), "lower": lower, "upper": upper,
        "parent": registration_url(base, package_id, hive)}
    if inline:
        out["items"] = [leaf(base, e, hive) for e in chunk]
    return out


def registration_index(base: str, entries: list[dict[str, Any]], hive: str = FULL) -> bytes:
    """The registration index: one inlined page up to INLINE_LIMIT versions, else pages of
    PAGE_SIZE fetched by their @id."""
    package_id = entries[-1]["id"]
    chunks = _pages(entries)
    inline = len(chunks) == 1
    return json.dumps({"@id": registration_url(base, package_id, hive),
                       "@type": ["catalog:CatalogRoot", "PackageRegistration", "catalog:Permalink"],
                       "count": len(chunks),
                       "items": [page(base, package_id, c, inline, hive) for c in chunks]}).encode()


def registration_page(base: str, entries: list[dict[str, Any]], lower: str, upper: str,
                      hive: str = FULL) -> bytes | None:
    """A registration page document by its bounds (None: no such page)."""
    for chunk in _pages(entries):
        if chunk[0]["version"].lower() == lower and chunk[-1]["version"].lower() == upper:
            return json.dumps({**page(base, entries[-1]["id"], chunk, True, hive), "@context": {}}).encode()
    return None


def flat_versions(entries: Iterable[dict[str, Any]]) -> bytes:
    return json.dumps({"versions": [e["version"].lower() for e in entries]}).encode()


# ---------------------------------------------------------------------------- search
def search_item(base: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    latest = entries[-1]
    return {"@id": registration_url(base, latest["id"]), "@type": "Package",
            "registration": registration_url(base, latest["id"]), "id": latest["id"],
            "version": latest["version"], "description": latest.get("description", ""),
            "summary": latest.get("summary", ""), "title": latest.get("title", latest["id"]),
            "authors": [a.strip() for a in str(latest.get("authors", "")).split(",") if a.strip()],
            "tags": str(latest.get("tags", "")).split(), "totalDownloads": 0, "verified": False,
            "versions": [{"version": e["version"], "downloads": 0, "@id": leaf_url(base, e["id"], e["version"])}
                         for e in entries]}


def matches(query: str, entries: list[dict[str, Any]]) -> bool:
    """Search semantics: every term of the query in the id, title, description or tags."""
    latest = entries[-1]
    text = " ".join(str(latest.get(k, "")) for k in ("id", "title", "description", "tags")).lower()
    return all(term in text for term in query.lower().split())


def semver1_item(item: dict[str, Any]) -> dict[str, Any] | None:
    """An upstream search result without its SemVer 2.0.0 versions (None: it has no other)."""
    versions = [v for v in item.get("versions") or [] if not nm.semver2_version(str(v.get("version", "")))]
    if not versions:
        return None
    out = {**item, "versions": versions}
    if nm.semver2_version(str(item.get("version", ""))):
        out["version"] = versions[-1]["version"]
    return out


def visible(entries: list[dict[str, Any]], prerelease: bool) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("listed", True) and (prerelease or not nm.is_prerelease(e["version"]))]


# ---------------------------------------------------------------------------- v2 OData (Atom)
NS = ('xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
      'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"')


def _v2_dependencies(entry: dict[str, Any]) -> str:
    parts = []
    for group in entry.get("dependencyGroups") or []:
        framework = group.get("targetFramework", "")
        deps = group.get("dependencies") or []
        parts += [f"{d.get('id', '')}:{d.get('range', '')}:{framework}" for d in deps] or [f"::{framework}"]
    return "|".join(parts)


def _prop(name: str, value: Any, kind: str | None = None) -> str:
    if value is None:
        return f'<d:{name} m:null="true"/>'
    if isinstance(value, bool):
        value, kind = ("true" if value else "false"), "Edm.Boolean"
    attr = f' m:type="{kind}"' if kind else ""
    return f"<d:{name}{attr}>{escape(str(value))}</d:{name}>"


def v2_entry(base: str, entry: dict[str, Any], latest: bool, absolute_latest: bool) -> str:
    package_id, version = entry["id"], entry["version"]
    key = f"Packages(Id='{package_id}',Version='{version}')"
    published = (entry.get("published") or nm.UNLISTED_TIME)[:19]
    props = [_prop("Id", package_id), _prop("Version", version), _prop("NormalizedVersion", version),
             _prop("Title", entry.get("title", package_id)), _prop("Authors", entry.get("authors", "")),
             _prop("Description", entry.get("description", "")), _prop("Summary", entry.get("summary", "")),
             _prop("Tags", entry.get("tags", "")), _prop("Dependencies", _v2_dependencies(entry)),
             _prop("IsLatestVersion", latest), _prop("IsAbsoluteLatestVersion", absolute_latest),
             _prop("IsPrerelease", nm.is_prerelease(version)), _prop("Listed", entry.get("listed", True)),
             _prop("Published", published, "Edm.DateTime"), _prop("LastUpdated", published, "Edm.DateTime"),
             _prop("Created", published, "Edm.DateTime"), _prop("DownloadCount", 0, "Edm.Int32"),
             _prop("VersionDownloadCount", 0, "Edm.Int32"), _prop("RequireLicenseAcceptance", False),
             _prop("ProjectUrl", entry.get("projectUrl")), _prop("LicenseUrl", entry.get("licenseUrl"))]
    if entry.get("packageHash"):
        props += [_prop("PackageHash", entry["packageHash"]), _prop("PackageHashAlgorithm", "SHA512"),
                  _prop("PackageSize", entry.get("packageSize", 0), "Edm.Int64")]
    return (f"<entry><id>{escape(base)}/api/v2/{escape(key)}</id>"
            '<category term="NuGetGallery.OData.V2FeedPackage" '
            'scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"/>'
            f"<link rel=\"edit\" href={quoteattr(key)}/><title type=\"text\">{escape(package_id)}</title>"
            f"<updated>{published}Z</updated><author><name>{escape(str(entry.get('authors', '')))}</name></author>"
            f"<content type=\"application/zip\" src={quoteattr(f'{base}/api/v2/package/{package_id}/{version}')}/>"
            f"<m:properties>{''.join(props)}</m:properties></entry>")


def v2_entries(base: str, by_package: Iterable[list[dict[str, Any]]],
               keep: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[str]:
    """Atom entries of the versions `keep` accepts, with IsLatestVersion flags per package."""
    out = []
    for entries in by_package:
        listed = [e for e in entries if e.get("listed", True)]
        stable = [e for e in listed if not nm.is_prerelease(e["version"])]
        latest = stable[-1]["version"] if stable else None
        absolute = listed[-1]["version"] if listed else None
        out += [v2_entry(base, e, e["version"] == latest, e["version"] == absolute) for e in entries if keep(e)]
    return out


def v2_filter(expression: str, by_package: list[list[dict[str, Any]]]) -> Callable[[dict[str, Any]], bool]:
    """The `$filter=IsLatestVersion` / `IsAbsoluteLatestVersion` of v2 searches (others: keep all)."""
    if expression not in ("IsLatestVersion", "IsAbsoluteLatestVersion"):
        return lambda e: True
    latest = set()
    for entries in by_package:
        listed = [e for e in entries if e.get("listed", True)]
        if expression == "IsLatestVersion":
            listed = [e for e in listed if not nm.is_prerelease(e["version"])] or listed
        if listed:
            latest.add(id(listed[-1]))
    return lambda e: id(e) in latest


def v2_feed(base: str, title: str, entries: list[str]) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<feed xml:base={quoteattr(base + "/api/v2/")} {NS}><id>{escape(base)}/api/v2/{escape(title)}</id>'
            f'<title type="text">{escape(title)}</title><updated>{nm.iso_now()[:19]}Z</updated>'
            f'<link rel="self" title={quoteattr(title)} href={quoteattr(title)}/>{"".join(entries)}</feed>').encode()


def v2_single(base: str, entry: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            + entry.replace("<entry>", f'<entry xml:base={quoteattr(base + "/api/v2/")} {NS}>', 1)).encode()


def v2_service(base: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<service xml:base={quoteattr(base + "/api/v2/")} xmlns="http://www.w3.org/2007/app" '
            'xmlns:atom="http://www.w3.org/2005/Atom"><workspace><atom:title>Default</atom:title>'
            '<collection href="Packages"><atom:title>Packages</atom:title></collection>'
            '</workspace></service>').encode()


V2_METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"><edmx:DataServices \
xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" m:DataServiceVersion="2.0">\
<Schema Namespace="NuGetGallery.OData" xmlns="http://schemas.microsoft.com/ado/2006/04/edm">\
<EntityType Name="V2FeedPackage" m:HasStream="true"><Key><PropertyRef Name="Id"/><PropertyRef Name="Version"/></Key>\
<Property Name="Id" Type="Edm.String" Nullable="false"/><Property Name="Version" Type="Edm.String" Nullable="false"/>\
</EntityType><EntityContainer Name="V2FeedContext" m:IsDefaultEntityContainer="true">\
<EntitySet Name="Packages" EntityType="NuGetGallery.OData.V2FeedPackage"/>\
<FunctionImport Name="Search" ReturnType="Collection(NuGetGallery.OData.V2FeedPackage)" EntitySet="Packages">\
<Parameter Name="searchTerm" Type="Edm.String"/><Parameter Name="targetFramework" Type="Edm.String"/>\
<Parameter Name="includePrerelease" Type="Edm.Boolean"/></FunctionImport>\
<FunctionImport Name="FindPackagesById" ReturnType="Collection(NuGetGallery.OData.V2FeedPackage)" \
EntitySet="Packages"><Parameter Name="id" Type="Edm.String"/></FunctionImport>\
</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"""
