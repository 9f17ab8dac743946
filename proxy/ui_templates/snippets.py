"""Per-format "how to use this repository" snippets, with depot's public URL filled in.

`snippet(repo, base)` returns (title, text) pairs; text is plain (proxy.ui escapes it).
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from depot.registry.repo import RepoConfig

Snippet = tuple[str, str]


def _writable(repo: RepoConfig) -> bool:
    return repo.is_hosted or (repo.is_group and bool(repo.deploy_to))


def _pypi(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    conf = f"[global]\nindex-url = {url}/simple/\n" + (f"trusted-host = {host}\n" if insecure else "")
    out = [("pip.conf (~/.config/pip/pip.conf or /etc/pip.conf)", conf),
           ("one-off", f"pip install --index-url {url}/simple/ requests\n"
                       f"UV_DEFAULT_INDEX={url}/simple/ uv pip install requests")]
    if _writable(repo):
        out.append(("publish", f"twine upload --repository-url {url}/ dist/*"))
    return out


def _npm(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    out = [(".npmrc (project or ~/.npmrc)", f"registry={url}/\n"),
           ("one-off", f"npm install --registry {url}/ left-pad")]
    if _writable(repo):
        out.append(("publish", f"npm publish --registry {url}/"))
    return out


def _generic(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    out = [("download", f"curl -fO {url}/path/to/file.tgz")]
    if _writable(repo):
        out.append(("upload", f'curl -fT file.tgz -H "X-Checksum-Sha256: $(sha256sum file.tgz | cut -c1-64)" '
                              f"{url}/path/to/file.tgz"))
    return out


def _maven(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    xml = ("<settings>\n  <mirrors>\n    <mirror>\n      <id>depot</id>\n      <mirrorOf>*</mirrorOf>\n"
           f"      <url>{url}/</url>\n    </mirror>\n  </mirrors>\n</settings>\n")
    return [("~/.m2/settings.xml", xml)]


def _oci(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    base = url.rsplit("/", 1)[0]
    daemon: dict[str, list[str]] = {}
    if repo.mirror:
        daemon["registry-mirrors"] = [base]
    if insecure:
        daemon["insecure-registries"] = [host]
    out = [("pull", f"docker pull {host}/{repo.name}/library/alpine:latest")]
    if daemon:
        out.insert(0, ("/etc/docker/daemon.json", json.dumps(daemon, indent=2) + "\n"))
    return out


def _go(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    return [("environment", f"export GOPROXY={url}/\n" + ("export GOINSECURE=*\n" if insecure else ""))]


SNIPPETS = {"pypi": _pypi, "npm": _npm, "generic": _generic, "maven": _maven, "oci": _oci, "go": _go}


def snippet(repo: RepoConfig, base: str) -> list[Snippet]:
    """How to point a client at `repo`, given depot's public base URL (no trailing slash)."""
    base = base.rstrip("/")
    parts = urlsplit(base)
    url = f"{base}/{repo.name}"
    from depot.registry import FORMATS
    own = FORMATS[repo.format].snippets(repo, url, parts.netloc, parts.scheme == "http") \
        if repo.format in FORMATS else None
    if own is not None:       # formats declare their own (Format.snippets)
        return own
    make = SNIPPETS.get(repo.format)
    if make is None:
        return [("base URL", f"{url}/")]
    return make(repo, url, parts.netloc, parts.scheme == "http")
