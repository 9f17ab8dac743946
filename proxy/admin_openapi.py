"""The OpenAPI 3.1 document of the administration API (served at /-/api/v1/openapi.json)."""
from __future__ import annotations

from typing import Any

NUM = {"type": ["number", "null"]}
STR = {"type": "string"}
INT = {"type": "integer", "minimum": 0}
SORTS = ("name", "created", "size", "downloads", "last_downloaded", "versions")
SORT_VALUES = [*SORTS, *("-" + s for s in SORTS)]
CURSOR = {"type": ["string", "null"], "description": "pass as `cursor` to get the next page; null on the last"}

PACKAGE: dict[str, Any] = {"type": "object", "required": ["repository", "format", "name", "versions", "size"],
           "properties": {"repository": STR, "format": STR, "name": STR, "versions": INT,
                          "latest": {"type": ["string", "null"]}, "size": INT, "created": NUM,
                          "last_downloaded": NUM, "downloads": INT}}
VERSION = {"type": "object", "required": ["version", "files", "size"],
           "properties": {"version": STR, "files": INT, "size": INT, "created": NUM, "downloads": INT,
                          "last_downloaded": NUM}}
FILE = {"type": "object", "required": ["path", "size", "sha256"],
        "properties": {"path": STR, "size": INT, "sha256": STR, "created": NUM, "downloads": INT,
                       "last_downloaded": NUM}}
TAG = {"type": "object", "required": ["tag", "digest", "size"],
       "properties": {"tag": STR, "digest": STR, "size": INT, "created": NUM, "downloads": INT,
                      "last_downloaded": NUM, "platforms": {"type": "array"}}}
ENTRY = {"type": "object", "required": ["key", "size", "sha256"],
         "properties": {"key": STR, "size": INT, "sha256": STR, "fetched": NUM, "last_used": NUM}}
PROBLEM = {"type": "object", "required": ["type", "title", "status", "detail"],
           "properties": {"type": STR, "title": STR, "status": {"type": "integer"}, "detail": STR, "instance": STR}}

SCHEMAS: dict[str, Any] = {
    "Problem": PROBLEM,
    "PackagePage": {"type": "object", "required": ["items", "next_cursor"],
                    "properties": {"items": {"type": "array", "items": PACKAGE}, "next_cursor": CURSOR}},
    "Package": {"type": "object", "required": ["name", "versions"],
                "properties": {**PACKAGE["properties"], "versions": {"type": "array", "items": VERSION}}},
    "Version": {"type": "object", "required": ["repository", "name", "version", "files"],
                "properties": {"repository": STR, "format": STR, "name": STR, "version": STR,
                               "files": {"type": "array", "items": FILE}}},
    "Deleted": {"type": "object", "required": ["deleted", "bytes"],
                "properties": {"deleted": {"type": "array", "items": STR}, "bytes": INT}},
    "Images": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["repository", "name", "tags"],
        "properties": {"repository": STR, "name": STR, "tags": INT}}}}},
    "Tags": {"type": "object", "required": ["repository", "image", "items"],
             "properties": {"repository": STR, "image": STR, "items": {"type": "array", "items": TAG}}},
    "TagDeletion": {"type": "object", "required": ["dry_run", "tags"],
                    "properties": {"dry_run": {"type": "boolean"}, "tags": {"type": "array", "items": STR}}},
    "CachePage": {"type": "object", "required": ["repository", "items", "next_cursor"],
                  "properties": {"repository": STR, "items": {"type": "array", "items": ENTRY}, "next_cursor": CURSOR}},
    "Purge": {"type": "object", "required": ["repository", "dry_run", "entries", "bytes"],
              "properties": {"repository": STR, "dry_run": {"type": "boolean"}, "entries": INT, "bytes": INT}},
    "Policies": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["repository", "policy"],
        "properties": {"repository": STR, "format": STR, "type": STR, "policy": {"type": "object"},
                       "last_run": {"type": ["object", "null"]}}}}}},
    "CleanupRun": {"type": "object", "required": ["items"],
                   "properties": {"items": {"type": "array", "items": {"type": "object"}}}},
}


def _param(name: str, where: str = "query", description: str = "", schema: dict[str, Any] | None = None,
           required: bool | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "description": description, "schema": schema or {"type": "string"}}


def _answer(schema: str, *errors: int, status: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {status: {"description": "OK", "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}}
    for code in (400, 401, *errors):
        out[str(code)] = {"description": "problem", "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}}}}
    return out


REPO = _param("repo", "path", "repository name")
NAME = _param("name", "path", "package name, percent-encoded (`@scope%2Fname`)")
VERSION_P = _param("version", "path", "version or tag (`-` for none: generic files)")
IMAGE = _param("image", "path", "image name, percent-encoded (`library%2Falpine`)")
DRY = _param("dry_run", schema={"type": "boolean"}, description="only list what would go")
LIMIT = _param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000})
CURSOR_P = _param("cursor", description="next_cursor of the previous page")
OLDER = _param("older_than", description="a duration: 90d, 12h, 30m",
               schema={"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,6})?(ms|s|m|h|d|w)?$"})


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths = {
        "/packages": {"get": {"summary": "packages of the hosted repositories the caller may read",
                              "operationId": "listPackages",
                              "parameters": [_param("repository"), _param("format"),
                                             _param("q", description="name contains"),
                                             _param("sort", description="prefix - for descending",
                                                    schema={"type": "string", "enum": SORT_VALUES}),
                                             CURSOR_P, LIMIT],
                              "responses": _answer("PackagePage", 404)}},
        "/packages/{repo}/{name}": {"get": {"summary": "a package and its versions", "operationId": "showPackage",
                                            "parameters": [REPO, NAME], "responses": _answer("Package", 404)}},
        "/packages/{repo}/{name}/{version}": {
            "get": {"summary": "a version's files", "operationId": "showVersion",
                    "parameters": [REPO, NAME, VERSION_P], "responses": _answer("Version", 404)},
            "delete": {"summary": "delete a version (or one file of it with ?file=); permission delete, audited",
                       "operationId": "deleteVersion",
                       "parameters": [REPO, NAME, VERSION_P, _param("file", description="one file's path")],
                       "responses": _answer("Deleted", 403, 404, 409)}},
        "/images": {"get": {"summary": "images of the OCI repositories the caller may read",
                            "operationId": "listImages",
                            "parameters": [_param("repository")], "responses": _answer("Images", 404)}},
        "/images/{repo}/{image}/tags": {
            "get": {"summary": "tags of an image", "operationId": "listTags", "parameters": [REPO, IMAGE],
                    "responses": _answer("Tags", 404)},
            "delete": {"summary": "delete the tags matching a regex (bulk; dry run lists them)",
                       "operationId": "deleteTags",
                       "parameters": [REPO, IMAGE, _param("regex", required=True), DRY],
                       "responses": _answer("TagDeletion", 403, 404, 409)}},
        "/cache/{repo}": {
            "get": {"summary": "cached entries of a proxy repository", "operationId": "showCache",
                    "parameters": [REPO, OLDER, _param("q", description="key contains"), CURSOR_P, LIMIT],
                    "responses": _answer("CachePage", 404)},
            "delete": {"summary": "purge cached entries (by age and pattern); the bytes freed",
                       "operationId": "purgeCache", "parameters": [REPO, OLDER, _param("q"), DRY],
                       "responses": _answer("Purge", 403, 404)}},
        "/cleanup": {
            "get": {"summary": "each repository's retention policy and last run", "operationId": "showCleanup",
                    "responses": _answer("Policies")},
            "post": {"summary": "run the cleanup policies now (or preview them)", "operationId": "runCleanup",
                     "parameters": [_param("repository"), DRY], "responses": _answer("CleanupRun", 403, 404)}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "depot administration API", "version": "1.0.0",
                     "description": "Packages, images, proxy caches and cleanup policies of every format. "
                                    "Errors are RFC 9457 problem details."},
            "servers": [{"url": "/-/api/v1"}],
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                               "bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{}, {"basic": []}, {"bearer": []}],
            "paths": paths}
