"""Terraform (`format: terraform`): module registry, provider registry, provider network mirror.

* `GET /.well-known/terraform.json` at depot's root (service discovery; Terraform only looks at
  the host root) names the `modules.v1` and `providers.v1` of the repository with
  `options: {root: true}` (else the first terraform group, hosted, then proxy repository), or the
  one whose `options: {hosts: […]}` lists the request's host name;
  every repository also answers `/<repo>/.well-known/terraform.json`.
* Module registry (terraform_modules): `v1/modules/<ns>/<name>/<system>/versions`,
  `…/<version>/download` (204, X-Terraform-Get), `…/<version>/archive`; hosted publish with
  `PUT v1/modules/<ns>/<name>/<system>/<version>` (a .tar.gz or .zip; versions are immutable).
* Provider registry and network mirror (terraform_providers): `v1/providers/<ns>/<type>/versions`,
  `…/<version>/download/<os>/<arch>`, the zips and SHA256SUMS(.sig); `<hostname>/<ns>/<type>/index.json`
  and `<version>.json` on proxies. `GET signing-key.asc` exports a hosted repository's key,
  `POST signing-key/rotate` replaces it.

A proxy's upstream is a registry host (`https://registry.terraform.io/` by default): depot reads its
discovery document (metadata) and follows it. Terraform talks HTTPS only: serve depot with TLS.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

from aiohttp import web

from depot.cache.api import Kind

from .base import Ctx, Format, FormatError, route, standard_repositories
from .infra_warm import TERRAFORM_LOCKS, plan_terraform_lock
from .options import Option, boolean, string, string_list
from .repo import RepoConfig
from .terraform_modules import ModuleRegistry, split_getter, version_key
from .terraform_providers import ProviderRegistry

SEG = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
VER = r"v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
MOD = rf"v1/modules/(?P<ns>{SEG})/(?P<name>{SEG})/(?P<system>{SEG})"
PROV = rf"v1/providers/(?P<ns>{SEG})/(?P<type>{SEG})"
PLATFORM = r"download/(?P<os>[a-z0-9]+)/(?P<arch>[a-z0-9]+)"
HOST = r"(?P<host>[A-Za-z0-9.-]+(?::\d+)?)"
DISCOVERY = ".well-known/terraform.json"

__all__ = ["Terraform", "FORMAT", "split_getter", "version_key"]


def _template(value: Any) -> str | None:
    """A URL template with {owner}, {repo} and {ref}, or false (disabled)."""
    if value is False:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")) \
            or not all(f"{{{k}}}" in value for k in ("owner", "repo", "ref")):
        raise ValueError("must be an http(s) URL template with {owner}, {repo} and {ref}, or false")
    return value


class Terraform(ModuleRegistry, ProviderRegistry, Format):
    """Module registry, provider registry (hosted, proxy, group) and provider network mirror (proxy)."""

    name = "terraform"
    options = {
        "root": Option(boolean, False, "answer /.well-known/terraform.json at depot's root for this repository"),
        "hostname": Option(string, None, "the provider hostname a network mirror proxy serves "
                                          "(default: the upstream's host)"),
        "hosts": Option(string_list, (), "host names whose /.well-known/terraform.json names this repository "
                                         "(one registry per host name; otherwise the root repository)"),
        "mirror_h1_all": Option(boolean, False, "a network mirror fetches every platform's zip of a version when "
                                                "its <version>.json is first asked, to list all their h1: hashes "
                                                "(default: the h1: of the zips it holds, zh: of all)"),
        "github_archive_url": Option(_template, "https://codeload.github.com/{owner}/{repo}/tar.gz/{ref}",
                                     "where a proxy fetches GitHub git sources pinned to a ref as tarballs "
                                     "(false: pass git sources through uncached)"),
    }
    root_routes = (route("GET HEAD", r"\.well-known/terraform\.json", "discovery"),)
    routes = (
        route("GET HEAD", r"\.well-known/terraform\.json", "discovery"),
        route("GET HEAD", rf"{MOD}/versions", "module_versions"),
        route("GET HEAD", rf"{MOD}/(?P<version>{VER})/download", "module_download"),
        route("GET HEAD", rf"{MOD}/(?P<version>{VER})/archive", "module_archive"),
        route("PUT", rf"{MOD}/(?P<version>{VER})", "module_publish", "hosted group"),
        route("GET HEAD", rf"{PROV}/versions", "provider_versions"),
        route("GET HEAD", rf"{PROV}/(?P<version>{VER})/{PLATFORM}", "provider_download"),
        route("GET HEAD", rf"{PROV}/(?P<version>{VER})/{PLATFORM}/(?P<filename>[^/]+\.zip)", "provider_zip"),
        route("GET HEAD", rf"{PROV}/(?P<version>{VER})/(?P<file>SHA256SUMS(?:\.sig)?)", "provider_sums"),
        route("PUT", rf"{PROV}/(?P<version>{VER})/(?P<filename>[^/]+)", "provider_publish", "hosted group"),
        route("GET HEAD", r"signing-key\.asc", "signing_key_public", "hosted group"),
        route("POST", r"signing-key/rotate", "signing_key_rotate", "hosted group", perm="delete"),
        route("GET HEAD", rf"{HOST}/(?P<ns>{SEG})/(?P<type>{SEG})/index\.json", "mirror_index", "proxy group"),
        route("GET HEAD", rf"{HOST}/(?P<ns>{SEG})/(?P<type>{SEG})/(?P<version>{VER})\.json", "mirror_version",
              "proxy group"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        repos = standard_repositories("terraform")
        repos["terraform"]["options"] = {"root": True}
        return repos

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://registry.terraform.io/"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """.terraform.lock.hcl through a network mirror proxy: every locked provider, every platform."""
        return plan_terraform_lock(mount, text) if filename in TERRAFORM_LOCKS else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("module", f'module "x" {{\n  source  = "{host}/<namespace>/<name>/<system>"\n  version = "~> 1.0"\n}}'),
               ("provider", f'required_providers {{\n  x = {{ source = "{host}/<namespace>/<type>" }}\n}}')]
        if repo.is_proxy:
            out.append(("network mirror (~/.terraformrc)",
                        f'provider_installation {{\n  network_mirror {{ url = "{url}/" }}\n}}'))
        else:
            out.append(("publish a module", f"curl -u USER:TOKEN -T module.tar.gz "
                                            f"{url}/v1/modules/<namespace>/<name>/<system>/<version>"))
        if insecure:
            out.append(("note", "Terraform talks to registries and mirrors over HTTPS only: enable tls."))
        return out

    def challenge(self, base_url: str) -> str:
        return 'Bearer realm="depot"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The registry protocol's shape: {"errors": ["…"]}."""
        return web.json_response({"errors": [message]}, status=status, headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        parts = path.split("/")
        if parts[0] == "modules" and len(parts) in (5, 6):       # hosted archive, or a proxy's key
            return "/".join(parts[1:4]), parts[4].removesuffix(".tar.gz").removesuffix(".zip")
        if parts[0] == "providers" and len(parts) >= 5:
            return "/".join(parts[1:3]), parts[3]
        return None

    # ------------------------------------------------------------------ discovery
    def __init__(self) -> None:
        self._by_host: dict[str, str] = {}

    async def start(self, services: Any) -> None:
        """Remember which repository each configured host name's discovery document names."""
        self._by_host = {host.lower(): repo.name for repo in services.repos.values()
                         if repo.format == self.name for host in repo.options.get("hosts") or ()}

    async def discovery(self, ctx: Ctx) -> web.StreamResponse:
        base = ctx.base_url
        if ctx.request.path == "/" + DISCOVERY:          # at the root: the repository of this host name
            named = self._by_host.get(ctx.request.host.rsplit(":", 1)[0].lower())
            if named is not None:
                base = base[:len(base) - len(ctx.mount)] + f"/{named}"
        return web.json_response({"modules.v1": f"{base}/v1/modules/", "providers.v1": f"{base}/v1/providers/"},
                                 headers={"Cache-Control": "no-cache"})

    async def api_base(self, ctx: Ctx, service: str) -> str:
        """A proxy's upstream URL for `service` (modules.v1, providers.v1), from the upstream's
        discovery document (metadata, revalidated like any other)."""
        root = (ctx.repo.upstream or "").rstrip("/") + "/"
        _, body = await ctx.fetch_upstream(ctx.pull.spec(DISCOVERY, root + DISCOVERY, Kind.METADATA,
                                                         content_type="application/json"))
        try:
            found = json.loads(body).get(service)
        except (ValueError, AttributeError):
            found = None
        if not isinstance(found, str):
            raise FormatError(502, f"the upstream of {ctx.repo.name} offers no {service}")
        return urljoin(root + DISCOVERY, found).rstrip("/") + "/"


FORMAT = Terraform
