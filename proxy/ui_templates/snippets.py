"""Per-format "how to use this repository" snippets, with depot's public URL filled in.

`snippet(repo, base)` returns (title, text) pairs; text is plain (proxy.ui escapes it). The same
pairs make the README's "Point your clients at depot" section (proxy/docs.py), so the UI and the
README never disagree. Credentials are written as `$REGISTRY_USER` / `$REGISTRY_TOKEN` (a depot
user and one of their tokens, see the README), so every snippet can be pasted as it is.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from depot.registry.repo import RepoConfig

Snippet = tuple[str, str]
CREDS = "$REGISTRY_USER:$REGISTRY_TOKEN"


def _writable(repo: RepoConfig) -> bool:
    return repo.is_hosted or (repo.is_group and bool(repo.deploy_to))


def _private(repo: RepoConfig) -> bool:
    """Reading needs credentials (hosted repositories by default) or shows more with them (groups)."""
    return (repo.is_hosted and repo.anonymous_read is not True) or (repo.is_group and bool(repo.deploy_to))


def _with_creds(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{CREDS}@{rest}"


def _pypi(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    trusted = f"trusted-host = {host}\n" if insecure and not host.startswith("127.0.0.1") else ""
    out: list[Snippet] = []
    if not (repo.is_hosted and _private(repo)):
        out += [("pip.conf (~/.config/pip/pip.conf or /etc/pip.conf)",
                 f"[global]\nindex-url = {url}/simple/\n{trusted}"),
                ("pip and uv, one-off", f"pip install --index-url {url}/simple/ requests\n"
                                        f"uv pip install --index-url {url}/simple/ requests")]
    if _writable(repo):
        out.append(("publish (twine, uv)",
                    f'twine upload --repository-url {url}/ -u "$REGISTRY_USER" -p "$REGISTRY_TOKEN" dist/*\n'
                    f'uv publish --publish-url {url}/ --check-url {url}/simple/ '
                    '-u "$REGISTRY_USER" -p "$REGISTRY_TOKEN" dist/*'))
    if _private(repo):
        out.append(("private packages: pip and uv with credentials",
                    f'pip install --index-url "{_with_creds(url)}/simple/" my-package\n'
                    f'uv pip install --index-url "{_with_creds(url)}/simple/" my-package'))
    return out


def _npm(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    out: list[Snippet] = [(".npmrc (project or ~/.npmrc)", f"registry={url}/\n"),
                          ("npm, yarn and pnpm, one-off", f"npm install --registry {url}/ left-pad\n"
                                                          f"yarn add --registry {url}/ left-pad\n"
                                                          f"pnpm add --registry {url}/ left-pad")]
    auth = url.split("://", 1)[1]
    if _private(repo):
        out.append(("credentials (private packages, publishing)",
                    f'npm config set "//{auth}/:_authToken" "$REGISTRY_TOKEN"'))
    if _writable(repo):
        out.append(("publish", f"npm publish --registry {url}/"))
    return out


def _generic(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    creds = f'-u "{CREDS}" ' if _private(repo) else ""
    out: list[Snippet] = []
    if _writable(repo):
        out.append(("upload", f'curl -f {creds}-T file.tgz -H "X-Checksum-Sha256: $(sha256sum file.tgz | cut -c1-64)" '
                              f"{url}/tools/1.0/file.tgz"))
    out.append(("download", f"curl -f {creds}-O {url}/tools/1.0/file.tgz"))
    return out


def _maven(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    xml = ("<settings>\n  <mirrors>\n    <mirror>\n      <id>depot</id>\n      <mirrorOf>*</mirrorOf>\n"
           f"      <url>{url}/</url>\n    </mirror>\n  </mirrors>\n</settings>\n")
    return [("~/.m2/settings.xml", xml)]


def _oci(repo: RepoConfig, url: str, host: str, insecure: bool) -> list[Snippet]:
    if repo.is_hosted:
        return _oci_hosted(repo, host, insecure)
    base = url.rsplit("/", 1)[0]
    image = f"{host}/{repo.name}/library/alpine:latest"
    no_tls = " --tls-verify=false" if insecure else ""
    out: list[Snippet] = []
    if repo.mirror:
        daemon: dict[str, list[str]] = {"registry-mirrors": [base]}
        if insecure:
            daemon["insecure-registries"] = [host]
        out.append(("/etc/docker/daemon.json (then: systemctl restart docker; docker pull alpine)",
                    json.dumps(daemon, indent=2) + "\n"))
    out.append(("pull (docker, podman, skopeo)",
                f"docker pull {image}\npodman pull{no_tls} {image}\nskopeo inspect{no_tls} docker://{image}"))
    return out


def _oci_hosted(repo: RepoConfig, host: str, insecure: bool) -> list[Snippet]:
    image = f"{host}/{repo.name}/team/app:1.0"
    no_tls = "--tls-verify=false " if insecure else ""
    dest_tls = "--dest-tls-verify=false " if insecure else ""
    return [("log in", f'echo "$REGISTRY_TOKEN" | docker login {host} -u "$REGISTRY_USER" --password-stdin'),
            ("push (docker, skopeo)", f"docker tag app:1.0 {image}\ndocker push {image}\n"
                                      f'skopeo copy {dest_tls}--dest-creds "{CREDS}" oci:./layout:1.0 docker://{image}'),
            ("pull (docker, podman, skopeo)",
             f"docker pull {image}\n"
             f'podman pull {no_tls}--creds "{CREDS}" {image}\n'
             f'skopeo inspect {no_tls}--creds "{CREDS}" docker://{image}')]


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
