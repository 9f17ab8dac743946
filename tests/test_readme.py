"""The README, walked top to bottom on a fresh data directory against a live depot running the
embedded default (no config file), as a new user would: every code block is either run as written
(only `127.0.0.1:8080` becomes the test's port) or listed in SKIPPED with the reason.

The proxies' upstreams are local (DEPOT_REPOSITORIES__<REPO>__UPSTREAM, as the README documents):
a static PyPI tree with `requests`, a static npm tree with `left-pad`, a docker-registry with
`library/alpine`. How each block is checked: see CHECKS below (and SKIPPED for the few that
cannot run here: no container engine, systemd, the go/cargo toolchains have their own tests).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from depot_process import DEPOT_BIN, ROOT, free_port, stop_group
from npm_fixtures import static_packument
from oci_fixtures import hello_layout
from pypi_fixtures import build_dist, write_simple_project
from test_oci import Registry, skopeo
from upstream import start_upstream

README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent


@dataclass
class Block:
    line: int
    heading: str
    title: str
    lang: str
    text: str

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


def readme_blocks() -> list[Block]:
    """Every fenced code block of the README, with the heading and *title* above it."""
    text = README.read_text()
    out = []
    for found in re.finditer(r"^ *```(\w*)\n(.*?)^ *```$", text, re.M | re.S):
        before = text[:found.start()]
        prose = re.sub(r"^ *```.*?^ *```$", "", before, flags=re.M | re.S)   # shell comments are no headings
        heading = (re.findall(r"^#+ (.+)$", prose, re.M) or [""])[-1]
        title = (re.findall(r"^\*(.+)\*$", before, re.M) or [""])[-1]
        body = "\n".join(line[len(found.group(0)) - len(found.group(0).lstrip(" ")):]
                         for line in found.group(2).splitlines())
        out.append(Block(before.count("\n") + 1, heading, title, found.group(1), body))
    return out


# blocks not run here, with the reason (matched on the block's first line)
SKIPPED = {
    "make serve": "the test starts the same `depot serve` (embedded default) on a free port; `make test` runs this",
    "cargo login --registry depot": "cargo publishing is tested with cargo in tests/test_cargo.py",
    "# ~/.cargo/config.toml": "cargo configuration: tests/test_cargo.py drives cargo with it",
    "# $CARGO_HOME/config.toml": "cargo configuration: tests/test_cargo.py drives cargo with it",
    "export GOPROXY=http://127.0.0.1:8080/go": "the go command is tested in tests/test_go.py (needs a module zip)",
    "curl -u \"$REGISTRY_USER:$REGISTRY_TOKEN\" -T m.zip": "a module zip: tests/test_go.py publishes with it",
    "DEPOT_ADMIN_PASSWORD='choose-a-long-password' depot serve": "the server runs already; tests/test_cli_errors.py "
                                                                  "checks DEPOT_ADMIN_PASSWORD at start",
    "depot serve --forward-proxy": "tests/test_forward_proxy.py",
    "python3 -m venv /opt/depot": "systemd installation (tests/test_systemd.py verifies the unit)",
    "depot_admin() {": "systemd-run",
    "depot warm pypi-remote requirements.txt [--jobs 8]": "synopsis with optional arguments; warm is tested in test_ops.py",
    "depot export /backup/depot-2024-06-01 [--repo": "synopsis with optional arguments; tests/test_ops.py",
    "echo \"$REGISTRY_TOKEN\" | docker login": "no container engine on the test machine (docker login asks the daemon)",
}
# sections of formats whose clients their own test files drive (the blocks there are configuration
# and commands those tests run with the real client, or replay where none exists here)
SKIPPED_HEADINGS = {
    "Conda": "tests/test_conda.py", "CRAN": "tests/test_cran.py", "Maven": "tests/test_maven.py",
    "Helm": "tests/test_helm.py", "Terraform": "tests/test_terraform.py", "Vagrant": "tests/test_vagrant.py",
    "Supply-chain policy": "tests/test_policy*.py", "Debian": "tests/test_debian.py", "RPM": "tests/test_rpm.py",
    "RubyGems": "tests/test_rubygems.py", "Composer": "tests/test_composer.py", "NuGet": "tests/test_nuget.py",
    "Conan": "tests/test_conan.py", "Puppet": "tests/test_puppet.py", "Hex": "tests/test_hex.py",
    "Bower": "tests/test_bower.py", "Chef": "tests/test_chef.py", "CocoaPods": "tests/test_cocoapods.py",
    "Dart pub": "tests/test_pub.py", "Swift": "tests/test_swift.py", "Opkg": "tests/test_opkg.py",
    "Eclipse p2": "tests/test_p2.py", "Administration API": "tests/test_admin*.py",
    "Several nodes": "tests/test_scale.py",
}


def skipped(block: "Block") -> bool:
    """Listed in SKIPPED (by its first line) or in a section SKIPPED_HEADINGS names."""
    return any(block.first.startswith(k) for k in SKIPPED) or block.heading.startswith(tuple(SKIPPED_HEADINGS))


# lines of run blocks that need a client this machine lacks (the rest of the block runs)
NO_CLIENT = ("docker ", "podman ", "yarn ", "pnpm ")


class Shell:
    """Runs README blocks in bash one after the other; exports carry over like in a terminal."""

    def __init__(self, work: Path, env: dict[str, str], port: int) -> None:
        self.work, self.env, self.port = work, env, port
        self.skipped_lines: list[str] = []

    def run(self, text: str, cwd: Path | None = None, extra: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        lines = []
        for line in text.splitlines():
            if line.startswith(NO_CLIENT):
                self.skipped_lines.append(line)
                continue
            lines.append(line)
        script = "\n".join(lines).replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        env_file = self.work / "env.out"
        env = {**self.env, **(extra or {})}
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", f"{script}\nenv -0 > {env_file}"],
                              env=env, cwd=cwd or self.work, capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, f"README block failed:\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            after = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
            for key, value in after.items():
                if key not in (extra or {}) and env.get(key) != value and key not in ("_", "SHLVL", "PWD", "OLDPWD"):
                    self.env[key] = value
        return done


def _left_pad_tgz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"package/package.json": b'{"name": "left-pad", "version": "1.3.0", "main": "index.js"}',
                           "package/index.js": b"module.exports = (s, n) => String(s).padStart(n);\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Local upstreams, a work directory like a user's checkout, and depot serving the default."""
    work = tmp_path_factory.mktemp("readme")
    (work / ".venv").symlink_to(VENV)
    (work / "home").mkdir()
    builds = tmp_path_factory.mktemp("builds")
    pypi_root = tmp_path_factory.mktemp("pypi-up")
    requests_dist = build_dist(builds, "requests", "1.0.0")
    write_simple_project(pypi_root, "requests", requests_dist.files)
    pypi_up = start_upstream(pypi_root)
    npm_up = start_upstream(tmp_path_factory.mktemp("npm-up"))
    tgz = _left_pad_tgz()
    npm_up.put("left-pad", json.dumps(static_packument("left-pad", {"1.3.0": tgz}, f"{npm_up.url}/tarballs")).encode())
    npm_up.put("tarballs/left-pad-1.3.0.tgz", tgz)
    registry = Registry(tmp_path_factory.mktemp("registry"))
    layout, single, _ = hello_layout(work / "layout")
    layout.tag(single, "1.0")
    for tag in ("latest", "3.20"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.root}:v1",
               f"docker://127.0.0.1:{registry.port}/library/alpine:{tag}")
    mine = build_dist(builds, "my-package", "1.0.0")
    (work / "dist").mkdir()
    for path in mine.files:
        shutil.copy(path, work / "dist")
    (work / "file.tgz").write_bytes(b"release tarball\n" * 100)
    subprocess.run([sys.executable, "-m", "venv", str(work / "client")], check=True, timeout=120)

    readme = README.read_text()
    access = re.search(r"^export (DEPOT_REPOSITORIES__PYPI_LOCAL__ACCESS)='(.*)'$", readme, re.M)
    assert access, "the README's user walkthrough grants alice access through the environment"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPOT_", "PIP_", "UV_", "npm_", "NPM_"))}
    base_env.update({"HOME": str(work / "home"), "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                     "npm_config_cache": str(work / "npm-cache"), "UV_CACHE_DIR": str(work / "uv-cache"),
                     "npm_config_audit": "false", "npm_config_fund": "false"})
    port = free_port()
    server_env = {**base_env, access.group(1): access.group(2),
                  "DEPOT_REPOSITORIES__PYPI_REMOTE__UPSTREAM": f"{pypi_up.url}/simple/",
                  "DEPOT_REPOSITORIES__NPM_REMOTE__UPSTREAM": npm_up.url,
                  "DEPOT_REPOSITORIES__DOCKER__UPSTREAM": registry.url}
    log_path = work / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([str(DEPOT_BIN), "serve", "--listen", f"127.0.0.1:{port}"], cwd=work,
                                  env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "listening pid=" not in log_path.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield {"work": work, "port": port, "shell": Shell(work, dict(base_env), port), "pypi_up": pypi_up,
               "npm_up": npm_up, "registry": registry, "log": log_path}
    finally:
        stop_group(server)
        registry.stop()
        pypi_up.stop()
        npm_up.stop()


def test_readme_client_section_is_generated_from_the_ui_snippets() -> None:
    done = subprocess.run([str(DEPOT_BIN), "docs", "--check", str(README)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from depot.proxy import docs
    stale = docs.replace_section(README.read_text(), docs.render(docs.default_repositories(), "http://elsewhere:1"))
    assert stale != README.read_text()          # the check compares something


def test_every_readme_block_is_checked_or_skipped_with_a_reason() -> None:
    unknown = [f"README.md:{b.line}: {b.first}" for b in readme_blocks()
               if _handler(b) is None and not skipped(b)]
    assert unknown == []


def _handler(block: Block) -> Callable[[dict, Block], None] | None:
    for prefix, handler in CHECKS:
        if block.first.startswith(prefix) or (prefix.startswith("title:") and block.title.startswith(prefix[6:])):
            return handler
    return None


def test_readme_walkthrough(world: dict) -> None:
    ran = []
    for block in readme_blocks():
        if skipped(block):
            continue
        handler = _handler(block)
        assert handler is not None, f"README.md:{block.line}: no check for {block.first!r}"
        handler(world, block)
        ran.append(f"README.md:{block.line} {block.first[:60]}")
    print("\nchecked:\n  " + "\n  ".join(ran) + "\nlines needing a missing client:\n  "
          + "\n  ".join(world["shell"].skipped_lines))
    assert len(ran) >= 20


# ------------------------------------------------------------------ how each block is checked
def run_block(world: dict, block: Block) -> None:
    world["shell"].run(block.text)


def credentials(world: dict, block: Block) -> None:
    shell = world["shell"]
    shell.run(block.text)
    assert shell.env["REGISTRY_USER"] == "admin" and shell.env["REGISTRY_TOKEN"].startswith("dpt_")


def _client(world: dict) -> dict[str, str]:
    client = world["work"] / "client"
    return {"PATH": f"{client / 'bin'}:{world['shell'].env['PATH']}", "VIRTUAL_ENV": str(client)}


def _installed(world: dict, module: str) -> str:
    done = subprocess.run([str(world["work"] / "client" / "bin" / "python"), "-c",
                           f"import {module}; print({module}.VERSION)"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def pip_conf(world: dict, block: Block) -> None:
    conf = world["work"] / "home" / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(block.text.replace("127.0.0.1:8080", f"127.0.0.1:{world['port']}"))
    world["shell"].run("pip install --no-cache-dir requests && pip uninstall -y requests",
                       extra={**_client(world), "PIP_CONFIG_FILE": str(conf)})
    assert world["pypi_up"].count("/simple/requests/") >= 1


def pip_one_off(world: dict, block: Block) -> None:
    world["shell"].run(block.text, extra=_client(world))
    assert _installed(world, "requests") == "1.0.0"


def publish_python(world: dict, block: Block) -> None:
    world["shell"].run(block.text, extra=_client(world))
    with urllib.request.urlopen(_authed(world, "/pypi-local/simple/my-package/")) as resp:
        assert "my_package-1.0.0" in resp.read().decode()


def pip_private(world: dict, block: Block) -> None:
    world["shell"].run(block.text, extra=_client(world))
    assert _installed(world, "my_package") == "1.0.0"


def _authed(world: dict, path: str) -> urllib.request.Request:
    import base64
    env = world["shell"].env
    creds = base64.b64encode(f"{env['REGISTRY_USER']}:{env['REGISTRY_TOKEN']}".encode()).decode()
    return urllib.request.Request(f"http://127.0.0.1:{world['port']}{path}", headers={"Authorization": f"Basic {creds}"})


def npmrc(world: dict, block: Block) -> None:
    project = world["work"] / "npm-project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "p", "version": "1.0.0"}')
    (project / ".npmrc").write_text(block.text.replace("127.0.0.1:8080", f"127.0.0.1:{world['port']}"))
    world["shell"].run("npm install left-pad", cwd=project)
    assert (project / "node_modules" / "left-pad" / "index.js").exists()


def npm_one_off(world: dict, block: Block) -> None:
    project = world["work"] / "npm-one-off"
    project.mkdir()
    (project / "package.json").write_text('{"name": "q", "version": "1.0.0"}')
    world["shell"].run(block.text, cwd=project)
    assert (project / "node_modules" / "left-pad" / "index.js").exists()


def npm_publish(world: dict, block: Block) -> None:
    package = world["work"] / "npm-package"
    package.mkdir()
    (package / "package.json").write_text('{"name": "my-npm-package", "version": "1.0.0", "main": "index.js"}')
    (package / "index.js").write_text("module.exports = 1;\n")
    world["shell"].run(block.text, cwd=package)
    with urllib.request.urlopen(_authed(world, "/npm-local/my-npm-package")) as resp:
        assert "1.0.0" in json.loads(resp.read())["versions"]


def daemon_json(world: dict, block: Block) -> None:
    daemon = json.loads(block.text.replace("127.0.0.1:8080", f"127.0.0.1:{world['port']}"))
    mirror = daemon["registry-mirrors"][0]
    assert mirror == f"http://127.0.0.1:{world['port']}"
    # what dockerd does with a mirror: ask it for Docker Hub's names, without a repository prefix
    assert json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{mirror[7:]}/library/alpine:latest"))["Digest"]


def oci_run(world: dict, block: Block) -> None:
    world["shell"].run(block.text)


def generic_upload(world: dict, block: Block) -> None:
    world["shell"].run(block.text)


def generic_download(world: dict, block: Block) -> None:
    out = world["work"] / "download"
    out.mkdir()
    world["shell"].run(block.text, cwd=out)
    assert (out / "file.tgz").read_bytes() == (world["work"] / "file.tgz").read_bytes()


def using_it(world: dict, block: Block) -> None:
    text = "\n".join(line for line in block.text.splitlines() if not line.startswith("depot serve"))
    done = world["shell"].run(text)
    from depot.proxy.config import default_document
    count = len(default_document()["repositories"])        # every format's default repositories
    assert f"depot.yaml: ok ({count} repositories)" in done.stdout and "'***'" not in done.stdout
    assert "scanned" in done.stdout and "hit ratio" in done.stdout


def yaml_config(world: dict, block: Block) -> None:
    path = world["work"] / f"example-{block.line}.yaml"
    path.write_text(block.text)
    assert isinstance(yaml.safe_load(block.text), dict)
    world["shell"].run(f"depot check-config --config {path}")


def user_walkthrough(world: dict, block: Block) -> None:
    shell = world["shell"]
    lines = block.text.splitlines()
    assert lines[0].startswith("export DEPOT_REPOSITORIES__PYPI_LOCAL__ACCESS")    # the server has it (fixture)
    shell.run(lines[0])
    shell.run(lines[1])                                                       # user add alice
    alice = shell.run(lines[2]).stdout.strip().splitlines()[-1]               # token create --user alice (write)
    assert alice.startswith("dpt_")
    twine = ["twine", "upload", "--non-interactive", "--repository-url", f"http://127.0.0.1:{world['port']}/pypi-local/",
             "-u", "alice", "-p", alice]
    alice_dist = build_dist(world["work"] / "alice-build", "alice-package", "1.0.0")
    done = shell.run(" ".join(twine + [str(p) for p in alice_dist.files]), check=False)
    assert done.returncode == 0, done.stderr            # the walkthrough's write token writes
    deploy = shell.run(lines[3]).stdout                                       # deploy token
    token_id = re.search(r"^token (\w+) for deployment", deploy, re.M).group(1)
    listed = shell.run(lines[4]).stdout                                       # user list ; token list
    assert "alice" in listed and "ci" in listed
    shell.run(lines[5].replace("NAME", "alice"))                              # passwd, unlock
    shell.run(lines[6].replace("ID", token_id).replace("NAME", "alice"))      # revoke, delete
    denied = shell.run(" ".join(twine + [str(p) for p in alice_dist.files]), check=False)
    assert denied.returncode != 0                       # alice is gone: her token stopped working


def oci_images(world: dict, block: Block) -> None:
    world["shell"].run(block.text)


CHECKS: list[tuple[str, Callable[[dict, Block], None]]] = [
    (". .venv/bin/activate", credentials),
    ("title:pip.conf", pip_conf),
    ("pip install --index-url http", pip_one_off),
    ("twine upload --repository-url", publish_python),
    ("pip install --index-url \"http://$REGISTRY_USER", pip_private),
    ("registry=http://127.0.0.1:8080/npm/", npmrc),
    ("npm install --registry", npm_one_off),
    ("npm config set", run_block),
    ("npm publish --registry", npm_publish),
    ("title:/etc/docker/daemon.json", daemon_json),
    ("docker pull 127.0.0.1:8080/docker/", oci_run),
    ("docker tag app:1.0", oci_run),
    ("docker pull 127.0.0.1:8080/containers/", oci_run),
    ("curl -f -u \"$REGISTRY_USER:$REGISTRY_TOKEN\" -T file.tgz", generic_upload),
    ("curl -f -u \"$REGISTRY_USER:$REGISTRY_TOKEN\" -O", generic_download),
    ("depot init depot.yaml", using_it),
    ("listen: 127.0.0.1:8080", yaml_config),
    ("repositories:", yaml_config),
    ("export DEPOT_REPOSITORIES__PYPI_LOCAL__ACCESS", user_walkthrough),
    ("skopeo copy --dest-tls-verify=false", oci_images),
]
