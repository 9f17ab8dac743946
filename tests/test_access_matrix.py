"""Access control per format, driven by each format's real client against one secure depot.

For generic (curl), pypi (twine, pip), npm (npm) and oci (skopeo), one hosted repository with
`anonymous_read: false` and one with `anonymous_read: true`, both with the access list
`{writer: write, reader: read}`. The matrix: anonymous reads follow the setting, a publish
without credentials gets 401 with a challenge, a read-only token gets 403, a write token
publishes, and revoked or expired tokens get 401. Every case checks what the client reports
(exit status and its error text) and, over plain HTTP with curl, the status and challenge.

Tokens used for the revoked/expired cases are never used before they are revoked or expire,
so the authenticator's credential cache (5 s) cannot hide the change.
"""
from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from depot_process import DepotProcess
from npm_fixtures import NpmCli, installed_version, make_package, new_project, npm_path
from oci_fixtures import hello_layout
from pypi_fixtures import build_dist

FORMATS = ("generic", "pypi", "npm", "oci")
PASSWORDS = {"writer": "writer-password-1", "reader": "reader-password-1"}
BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("PIP_", "UV_", "TWINE_", "DEPOT_", "REGISTRY_AUTH"))}
# what the clients print: "401 Unauthorized" (curl, twine, pip -v), "E401"/"ENEEDAUTH … need auth" (npm),
# "unauthorized: authentication required" (skopeo); "403 Forbidden", "E403", "denied" likewise
UNAUTHORIZED = re.compile(r"(?<!\d)401(?!\d)|unauthori[sz]ed|authentication required|need auth", re.IGNORECASE)
FORBIDDEN = re.compile(r"(?<!\d)403(?!\d)|forbidden|denied", re.IGNORECASE)
Creds = tuple[str, str] | None


@dataclass
class Outcome:
    """What a client run reported."""

    returncode: int
    text: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run a client (stdin closed, never prompting) and keep its combined output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env or CLEAN_ENV, stdin=subprocess.DEVNULL)
    return Outcome(done.returncode, done.stdout + done.stderr)


def http(method: str, url: str, creds: Creds = None) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of one curl request; the body is discarded."""
    argv = ["curl", "-sS", "-o", os.devnull, "-D", "-", "-X", method, url]
    if method in ("PUT", "POST"):
        argv += ["-H", "Content-Type: application/json", "--data-binary", "{}"]
    if creds:
        argv += ["-u", ":".join(creds)]
    head = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    lines = head.strip().splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers


# ---------------------------------------------------------------------------- the depot

def repositories() -> dict[str, Any]:
    """Per format a private (`<fmt>-priv`) and an anonymously readable (`<fmt>-pub`) hosted repo."""
    return {f"{fmt}-{kind}": {"format": fmt, "type": "hosted", "anonymous_read": anonymous,
                              "access": {"writer": "write", "reader": "read"}}
            for fmt in FORMATS for kind, anonymous in (("priv", False), ("pub", True))}


@dataclass
class Tokens:
    """Token secrets: `write` (writer), `read` (reader), and two that must be refused."""

    write: str
    read: str
    revoked: str
    expired: str


def cli(depot: DepotProcess, *args: str, stdin: str | None = None) -> str:
    """Run a depot subcommand on the test depot; returns its stdout (asserts success)."""
    done = subprocess.run(depot.command(*args), input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"depot {' '.join(args)}: {done.stderr}"
    return done.stdout


def make_tokens(depot: DepotProcess) -> Tokens:
    """Create the users and their tokens with the CLI and revoke one of them before any use."""
    for user, password in PASSWORDS.items():
        cli(depot, "user", "add", user, "--password-stdin", stdin=password + "\n")
    every_repo = [arg for name in repositories() for arg in ("--repo", name)]

    def create(user: str, perm: str, *extra: str) -> list[str]:
        return cli(depot, "token", "create", "--user", user, *every_repo, "--perm", perm,
                   *extra).strip().splitlines()
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(create, "writer", "write"), pool.submit(create, "reader", "read"),
                pool.submit(create, "writer", "write", "--description", "to-revoke"),
                pool.submit(create, "reader", "read", "--expires", "1s")]
        write, read, to_revoke, expired = (job.result() for job in jobs)
    revoke_id = to_revoke[0].split()[1]                        # "token <id> for writer: ..."
    assert revoke_id in cli(depot, "token", "list")
    cli(depot, "token", "revoke", revoke_id)
    states = {line.split()[0]: _state(line) for line in cli(depot, "token", "list").splitlines()[1:]}
    assert states[revoke_id] == "revoked" and list(states.values()).count("active") >= 2, states
    return Tokens(write[-1], read[-1], to_revoke[-1], expired[-1])


@dataclass
class Env:
    """Everything the tests share: the depot, tokens, and the artifacts each client publishes."""

    depot: DepotProcess
    tokens: Tokens
    work: Path
    wheel: Path
    npm_package: Path
    npm_next: Path
    oci_layout: Path
    counter: Iterator[int]

    def creds(self, who: str) -> Creds:
        """Credentials by role: anonymous, writer/reader with their tokens, revoked, expired."""
        return {"anonymous": None, "write": ("writer", self.tokens.write), "read": ("reader", self.tokens.read),
                "revoked": ("writer", self.tokens.revoked), "expired": ("reader", self.tokens.expired)}[who]

    def scratch(self, what: str) -> Path:
        path = self.work / f"{what}-{next(self.counter)}"
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One secure depot (no open_access) for the module, users, tokens and the artifacts."""
    npm_path()                                                   # fail, never skip, without npm
    work = tmp_path_factory.mktemp("matrix")
    depot = DepotProcess(work / "depot", repositories(), secure=True)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            wheel_job = pool.submit(build_dist, work / "build", "acl-matrix", "1.0")
            tokens_made = time.monotonic()
            tokens = make_tokens(depot)
            wheel = wheel_job.result().wheel
        layout_dir = work / "layout"
        hello_layout(layout_dir)
        package = make_package(work / "npm-src", "dmatrix", "1.0.0")
        time.sleep(max(0.0, tokens_made + 1.5 - time.monotonic()))   # the 1 s token has expired
        following = make_package(work / "npm-src", "dmatrix", "2.0.0")
        yield Env(depot, tokens, work, wheel, package, following, layout_dir, itertools.count())
    finally:
        depot.stop()


# ---------------------------------------------------------------------------- the clients

class Client:
    """One format's real client: publish an artifact and read it back, as a given principal."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.url = env.depot.url

    def publish(self, repo: str, creds: Creds) -> Outcome:
        raise NotImplementedError

    def read(self, repo: str, creds: Creds) -> Outcome:
        raise NotImplementedError

    def read_url(self, repo: str) -> str:
        """A URL that reads the published artifact (for the HTTP-level checks)."""
        raise NotImplementedError

    def publish_request(self, repo: str) -> tuple[str, str]:
        """(method, URL) of the request that starts a publish (for the HTTP-level checks)."""
        raise NotImplementedError


class Curl(Client):
    """generic: curl -T to publish, curl -f to download."""

    def publish(self, repo: str, creds: Creds) -> Outcome:
        auth = ["-u", ":".join(creds)] if creds else []
        return run(["curl", "-sS", "-f", "-T", str(self.env.wheel), *auth, self.read_url(repo)])

    def read(self, repo: str, creds: Creds) -> Outcome:
        auth = ["-u", ":".join(creds)] if creds else []
        out = self.env.scratch("curl") / "file"
        done = run(["curl", "-sS", "-f", "-o", str(out), *auth, self.read_url(repo)])
        assert not done.ok or out.read_bytes() == self.env.wheel.read_bytes()
        return done

    def read_url(self, repo: str) -> str:
        return f"{self.url}/{repo}/tools/1.0/{self.env.wheel.name}"

    def publish_request(self, repo: str) -> tuple[str, str]:
        return "PUT", f"{self.url}/{repo}/tools/2.0/file.txt"


class PyPI(Client):
    """pypi: twine upload, pip install (credentials in the index URL, as pip users do).

    pip only says why an index page could not be fetched (`401 Client Error: Unauthorized`) with -vv.
    """

    def publish(self, repo: str, creds: Creds) -> Outcome:
        user, password = creds or ("", "")
        return run([str(BIN / "twine"), "upload", "--repository-url", f"{self.url}/{repo}/", "-u", user,
                    "-p", password, "--non-interactive", "--disable-progress-bar", str(self.env.wheel)])

    def read(self, repo: str, creds: Creds) -> Outcome:
        base = self.url.replace("http://", f"http://{':'.join(creds)}@") if creds else self.url
        target = self.env.scratch("pip")
        done = run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
                    "--no-input", "install", "-vv", "--index-url", f"{base}/{repo}/simple/", "--no-compile",
                    "--target", str(target), "acl-matrix"])
        assert not done.ok or list(target.glob("acl_matrix-1.0.dist-info"))
        return done

    def read_url(self, repo: str) -> str:
        return f"{self.url}/{repo}/simple/acl-matrix/"

    def publish_request(self, repo: str) -> tuple[str, str]:
        return "POST", f"{self.url}/{repo}/"


class Npm(Client):
    """npm: publish and install with `_authToken` in a private userconfig (fresh cache each run)."""

    def cli(self, repo: str, creds: Creds) -> NpmCli:
        npm = NpmCli(self.env.scratch("npm"), f"{self.url}/{repo}/")
        if creds is None:
            npm.userconfig.write_text("")
        else:
            npm.write_userconfig(creds[1])
        return npm

    def publish(self, repo: str, creds: Creds) -> Outcome:
        """The writer publishes 1.0.0; anyone else tries 2.0.0, because npm itself refuses (before
        sending anything) to publish over a version it can already see."""
        package = self.env.npm_package if creds == self.env.creds("write") else self.env.npm_next
        done = self.cli(repo, creds).run("publish", cwd=package)
        return Outcome(done.returncode, done.stdout + done.stderr)

    def read(self, repo: str, creds: Creds) -> Outcome:
        npm = self.cli(repo, creds)
        project = new_project(npm.home / "project", {})
        done = npm.run("install", "dmatrix", cwd=project)
        assert done.returncode != 0 or installed_version(project, "dmatrix") == "1.0.0"
        return Outcome(done.returncode, done.stdout + done.stderr)

    def read_url(self, repo: str) -> str:
        return f"{self.url}/{repo}/dmatrix"

    def publish_request(self, repo: str) -> tuple[str, str]:
        return "PUT", f"{self.url}/{repo}/dmatrix"


class Skopeo(Client):
    """oci: skopeo copy to push (--dest-creds), skopeo inspect to read (--creds)."""

    def ref(self, repo: str) -> str:
        return f"docker://127.0.0.1:{self.env.depot.port}/{repo}/test/app:v1"

    def publish(self, repo: str, creds: Creds) -> Outcome:
        auth = ["--dest-creds", ":".join(creds)] if creds else ["--dest-no-creds"]
        return run(["skopeo", "copy", "--dest-tls-verify=false", *auth,
                    f"oci:{self.env.oci_layout}:v1", self.ref(repo)])

    def read(self, repo: str, creds: Creds) -> Outcome:
        auth = ["--creds", ":".join(creds)] if creds else ["--no-creds"]
        return run(["skopeo", "inspect", "--tls-verify=false", *auth, self.ref(repo)])

    def read_url(self, repo: str) -> str:
        return f"{self.url}/v2/{repo}/test/app/manifests/v1"

    def publish_request(self, repo: str) -> tuple[str, str]:
        return "POST", f"{self.url}/v2/{repo}/test/app/blobs/uploads/"


CLIENTS: dict[str, Callable[[Env], Client]] = {"generic": Curl, "pypi": PyPI, "npm": Npm, "oci": Skopeo}


@pytest.fixture(scope="module")
def published(env: Env) -> dict[str, Outcome]:
    """Each format's artifact published into both of its repositories with the write token."""
    def publish(repo: str) -> Outcome:
        return CLIENTS[repo.split("-")[0]](env).publish(repo, env.creds("write"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(repositories(), pool.map(publish, repositories())))


def client_for(fmt: str, env: Env, published: dict[str, Outcome]) -> Client:
    assert published[f"{fmt}-priv"].ok and published[f"{fmt}-pub"].ok, published
    return CLIENTS[fmt](env)


def assert_refused(outcome: Outcome, pattern: re.Pattern[str], what: str) -> None:
    assert not outcome.ok, f"{what} should have failed:\n{outcome.text}"
    assert pattern.search(outcome.text), f"{what}: the client does not say why:\n{outcome.text}"


# ---------------------------------------------------------------------------- the matrix

def _state(line: str) -> str:
    """The state column of a `depot token list` line (the description follows it)."""
    return next(word for word in line.split() if word in ("active", "revoked", "expired"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_token_publishes(fmt: str, env: Env, published: dict[str, Outcome]) -> None:
    for kind in ("priv", "pub"):
        outcome = published[f"{fmt}-{kind}"]
        assert outcome.ok, f"publishing to {fmt}-{kind} with a write token failed:\n{outcome.text}"
    client = CLIENTS[fmt](env)
    assert client.read(f"{fmt}-priv", env.creds("write")).ok      # the writer reads back too


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymous_read_follows_the_setting(fmt: str, env: Env, published: dict[str, Outcome]) -> None:
    client = client_for(fmt, env, published)
    pub = client.read(f"{fmt}-pub", None)
    assert pub.ok, f"anonymous read of {fmt}-pub (anonymous_read: true) failed:\n{pub.text}"
    assert_refused(client.read(f"{fmt}-priv", None), UNAUTHORIZED, f"anonymous read of {fmt}-priv")
    status, headers = http("GET", client.read_url(f"{fmt}-priv"))
    assert status == 401 and headers.get("www-authenticate", "").startswith(("Basic ", "Bearer "))
    assert http("GET", client.read_url(f"{fmt}-pub"))[0] == 200
    assert client.read(f"{fmt}-priv", env.creds("read")).ok           # the read token reads it


@pytest.mark.parametrize("fmt", FORMATS)
def test_publish_without_credentials_is_challenged(fmt: str, env: Env, published: dict[str, Outcome]) -> None:
    client = client_for(fmt, env, published)
    for repo in (f"{fmt}-priv", f"{fmt}-pub"):                     # anonymous_read is not write
        assert_refused(client.publish(repo, None), UNAUTHORIZED, f"anonymous publish to {repo}")
        status, headers = http(*client.publish_request(repo))
        assert status == 401, (repo, status)
        assert headers.get("www-authenticate", "").startswith(("Basic ", "Bearer ")), headers


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_token_cannot_publish(fmt: str, env: Env, published: dict[str, Outcome]) -> None:
    client = client_for(fmt, env, published)
    repo = f"{fmt}-priv"
    assert_refused(client.publish(repo, env.creds("read")), FORBIDDEN, f"publish to {repo} with a read token")
    method, url = client.publish_request(repo)
    assert http(method, url, env.creds("read"))[0] == 403


@pytest.mark.parametrize("fmt", FORMATS)
def test_revoked_and_expired_tokens_are_refused(fmt: str, env: Env, published: dict[str, Outcome]) -> None:
    client = client_for(fmt, env, published)
    repo = f"{fmt}-priv"
    assert_refused(client.publish(repo, env.creds("revoked")), UNAUTHORIZED, "publish with a revoked token")
    assert_refused(client.read(repo, env.creds("expired")), UNAUTHORIZED, "read with an expired token")
    for who in ("revoked", "expired"):
        assert http("GET", client.read_url(repo), env.creds(who))[0] == 401
        assert http(*client.publish_request(repo), env.creds(who))[0] == 401
