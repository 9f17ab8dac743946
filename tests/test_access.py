"""Access control with curl: users, tokens, per-repository permissions, audit, TLS, secrets."""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from typing import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from depot_process import DepotProcess
from npm_fixtures import NpmCli

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def curl(*args: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "-", *args], input=data, capture_output=True,
                         timeout=60)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def put(url: str, body: bytes, *auth: str) -> int:
    return curl("-X", "PUT", "--data-binary", "@-", *auth, url, data=body)[0]


@pytest.fixture
def secure(depot_factory, upstream):
    upstream.put("pub.txt", b"public")
    return depot_factory({
        "private": {"format": "generic", "type": "hosted",
                    "access": {"alice": "write", "bob": "read"}},
        "open": {"format": "generic", "type": "hosted", "anonymous_read": True},
        "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url,
                   "username": "upuser", "password": "s3cret-upstream-pw"},
    }, secure=True)


def make_user(depot: DepotProcess, name: str, password: str = "password-123") -> None:
    result = subprocess.run(depot.command("user", "add", name, "--password-stdin"), input=password + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def make_token(depot: DepotProcess, *args: str) -> str:
    result = depot.run_cli("token", "create", *args)
    return result.stdout.strip().splitlines()[-1]


def test_anonymous_gets_a_challenge_not_a_404(secure):
    status, headers, _ = curl(f"{secure.url}/private/a.txt")
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert put(f"{secure.url}/private/a.txt", b"x") == 401
    assert curl(f"{secure.url}/remote/pub.txt")[0] == 200          # proxies are readable anonymously
    assert put(f"{secure.url}/open/a.txt", b"x") == 401             # anonymous_read is not write


def test_admin_password_and_user_tokens(secure):
    assert put(f"{secure.url}/private/a.txt", b"one", "-u", ":".join(ADMIN)) == 201
    make_user(secure, "alice")
    token = make_token(secure, "--user", "alice", "--repo", "private", "--perm", "write")
    assert token.startswith("dpt_")
    assert put(f"{secure.url}/private/b.txt", b"two", "-u", f"alice:{token}") == 201
    assert put(f"{secure.url}/private/c.txt", b"two", "-u", "alice:password-123") == 201
    assert curl("-u", f"alice:{token}", f"{secure.url}/private/a.txt")[2] == b"one"
    assert curl("-H", f"Authorization: Bearer {token}", f"{secure.url}/private/a.txt")[0] == 200
    assert curl("-u", "alice:wrong-password", f"{secure.url}/private/a.txt")[0] == 401
    assert put(f"{secure.url}/open/x.txt", b"x", "-u", f"alice:{token}") in (401, 403)   # out of scope
    assert curl("-X", "DELETE", "-u", f"alice:{token}", f"{secure.url}/private/a.txt")[0] == 403


def test_read_only_user_cannot_publish(secure):
    make_user(secure, "bob")
    assert put(f"{secure.url}/private/a.txt", b"one", "-u", ":".join(ADMIN)) == 201
    assert curl("-u", "bob:password-123", f"{secure.url}/private/a.txt")[0] == 200
    status, _, body = curl("-X", "PUT", "--data-binary", "x", "-u", "bob:password-123",
                           f"{secure.url}/private/b.txt")
    assert status == 403 and b"may not write" in body
    make_user(secure, "carol")                                          # not on the access list
    assert curl("-u", "carol:password-123", f"{secure.url}/private/a.txt")[0] == 403


def test_revoked_and_expired_tokens_stop_working(secure):
    deploy = make_token(secure, "--repo", "private", "--perm", "write", "--description", "ci")
    assert put(f"{secure.url}/private/d.txt", b"d", "-H", f"Authorization: Bearer {deploy}") == 201
    short = make_token(secure, "--repo", "private", "--perm", "read", "--expires", "1s")
    listing = secure.run_cli("token", "list").stdout
    token_id = [line.split()[0] for line in listing.splitlines() if "write" in line][0]
    assert deploy not in listing                                         # secrets are never listed
    assert secure.run_cli("token", "revoke", token_id).returncode == 0
    time.sleep(1.2)                                                      # `short` expires
    assert put(f"{secure.url}/private/e.txt", b"e", "-H", f"Authorization: Bearer {deploy}") == 401
    assert curl("-H", f"Authorization: Bearer {short}", f"{secure.url}/private/d.txt")[0] == 401


def bearer(token: str) -> tuple[str, str]:
    return "-H", f"Authorization: Bearer {token}"


def docker_jwt(depot: DepotProcess, creds: str, scope: str | None = None) -> str:
    """A JWT from depot's Docker token service for `creds` (user:password) and `scope`."""
    query = "service=depot" + (f"&scope={scope}" if scope else "")
    status, _, body = curl("-u", creds, f"{depot.url}/-/token?{query}")
    assert status == 200, body
    return json.loads(body)["token"]


@pytest.fixture
def registry_depot(depot_factory):
    """A generic and an OCI hosted repository alice may write."""
    return depot_factory({"private": {"format": "generic", "type": "hosted", "access": {"alice": "write"}},
                          "oci-local": {"format": "oci", "type": "hosted", "access": {"alice": "write"}}},
                         secure=True)


def test_docker_tokens_grant_exactly_their_scopes(registry_depot):
    """A JWT is a credential only on the OCI routes and actions its `access` claims name."""
    depot = registry_depot
    make_user(depot, "alice")
    assert curl("-u", "alice:nope-nope", f"{depot.url}/-/token?scope=repository:oci-local/x:pull")[0] == 401
    pull = docker_jwt(depot, "alice:password-123", "repository:oci-local/app:pull")
    push = docker_jwt(depot, "alice:password-123", "repository:oci-local/app:pull,push")
    unscoped = docker_jwt(depot, "alice:password-123")
    generic = docker_jwt(depot, "alice:password-123", "repository:private/app:pull,push")
    for token in (pull, push, unscoped, generic):                     # never a credential off OCI routes
        assert put(f"{depot.url}/private/f.txt", b"f", *bearer(token)) == 401
    uploads = f"{depot.url}/v2/oci-local/app/blobs/uploads/"
    assert curl("-X", "POST", *bearer(unscoped), uploads)[0] == 401
    status, headers, _ = curl("-X", "POST", *bearer(pull), uploads)
    assert status == 401 and 'scope="repository:oci-local/app:push"' in headers["www-authenticate"]
    assert curl("-X", "POST", *bearer(push), f"{depot.url}/v2/oci-local/other/blobs/uploads/")[0] == 401
    manifest = f"{depot.url}/v2/oci-local/app/manifests/sha256:{'a' * 64}"
    assert curl("-X", "DELETE", *bearer(push), manifest)[0] == 403           # alice may not delete at all
    admin_push = docker_jwt(depot, ":".join(ADMIN), "repository:oci-local/app:pull,push")
    assert curl("-X", "DELETE", *bearer(admin_push), manifest)[0] == 401     # the admin may, not this token
    status, headers, _ = curl("-X", "POST", *bearer(push), uploads)
    assert status == 202 and headers["location"]
    assert put(f"{depot.url}/private/f.txt", b"f", "-u", "alice:password-123") == 201   # alice herself may


def test_audit_limit_is_validated_and_pages(secure):
    for limit in ("0", "-1", "1001", "x", ""):
        assert curl("-u", ":".join(ADMIN), f"{secure.url}/-/api/audit?limit={limit}")[0] == 400, limit
    assert curl("-u", ":".join(ADMIN), f"{secure.url}/-/api/audit?offset=-1")[0] == 400
    for name in ("a", "b", "c"):
        put(f"{secure.url}/private/{name}.txt", b"x", "-u", ":".join(ADMIN))
    newest = json.loads(curl("-u", ":".join(ADMIN), f"{secure.url}/-/api/audit?limit=2")[2])
    before = json.loads(curl("-u", ":".join(ADMIN), f"{secure.url}/-/api/audit?limit=1&offset=2")[2])
    assert [r["path"] for r in newest] == ["/private/b.txt", "/private/c.txt"]
    assert [r["path"] for r in before] == ["/private/a.txt"]


def test_audit_log_records_publishes_denials_and_tokens(secure):
    put(f"{secure.url}/private/a.txt", b"x")                             # denied
    put(f"{secure.url}/private/a.txt", b"x", "-u", ":".join(ADMIN))     # published
    make_token(secure, "--repo", "private", "--perm", "read")
    assert curl(f"{secure.url}/-/api/audit")[0] == 401
    status, _, body = curl("-u", ":".join(ADMIN), f"{secure.url}/-/api/audit")
    records = json.loads(body)
    actions = {(r["action"], r["result"]) for r in records}
    assert {("publish", "denied"), ("publish", "ok"), ("token.create", "ok")} <= actions
    assert all({"time", "actor", "client", "repository", "action", "result"} <= set(r) for r in records)


def test_upstream_secrets_never_leak(secure):
    curl(f"{secure.url}/remote/pub.txt")
    curl(f"{secure.url}/remote/missing.txt")
    for url in ("/-/api/repositories", "/-/metrics"):
        assert b"s3cret-upstream-pw" not in curl(f"{secure.url}{url}")[2]
    assert "s3cret-upstream-pw" not in secure.log()
    assert "s3cret-upstream-pw" not in (secure.data_dir / "audit.log").read_text()


def test_tls_serves_https(depot_factory, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    repos = {"open": {"format": "generic", "type": "hosted", "anonymous_read": True}}
    depot = depot_factory(repos, extra={"tls": {"cert": str(cert), "key": str(key)}})
    assert depot.url.startswith("https://")
    status, _, body = curl("--cacert", str(cert), f"{depot.url}/-/healthz")
    assert status == 200 and body == b"ok\n"


def test_repeated_bad_passwords_lock_the_name_and_are_audited(depot_factory):
    depot = depot_factory({"private": {"format": "generic", "type": "hosted"}}, secure=True,
                          extra={"login": {"max_failures": 3, "window": "1m", "lockout": "3s", "token_ttl": "2h"}})
    make_user(depot, "mallory-target")
    url = f"{depot.url}/private/x.txt"
    for attempt in range(3):
        assert curl("-u", f"mallory-target:guess-{attempt}", url)[0] == 401
    status, _, body = curl("-u", "mallory-target:password-123", url)     # right password, but locked
    assert status == 401 and b"locked" in body
    records = [json.loads(line) for line in (depot.data_dir / "audit.log").read_text().splitlines()]
    assert any(r["action"] == "lockout" for r in records)
    time.sleep(3.5)
    assert curl("-u", "mallory-target:password-123", url)[0] == 403     # unlocked: known, but no access


def test_groups_show_each_caller_only_the_members_they_may_read(depot_factory, upstream):
    upstream.put("shared.txt", b"from upstream")
    repos = {"secret": {"format": "generic", "type": "hosted", "access": {"alice": "write"}},
             "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url},
             "strict": {"format": "generic", "type": "group", "members": ["secret", "remote"]},
             "mixed": {"format": "generic", "type": "group", "members": ["secret", "remote"],
                       "anonymous_read": True}}
    depot = depot_factory(repos, secure=True)
    make_user(depot, "alice")
    make_user(depot, "bob")
    assert put(f"{depot.url}/secret/plan.txt", b"private plan", "-u", "alice:password-123") == 201
    status, headers, _ = curl(f"{depot.url}/strict/shared.txt")
    assert status == 401 and "www-authenticate" in headers            # a member needs credentials
    assert curl(f"{depot.url}/mixed/shared.txt")[2] == b"from upstream"  # anonymous: public members only
    assert curl(f"{depot.url}/mixed/plan.txt")[0] == 404
    assert curl("-u", "bob:password-123", f"{depot.url}/strict/plan.txt")[0] == 404    # not bob's member
    assert curl("-u", "bob:password-123", f"{depot.url}/strict/shared.txt")[2] == b"from upstream"
    assert curl("-u", "alice:password-123", f"{depot.url}/strict/plan.txt")[2] == b"private plan"


def npm_login(depot: DepotProcess, user: str, password: str) -> tuple[int, bytes]:
    """The legacy `npm login` request (what `npm adduser --auth-type=legacy` sends)."""
    body = json.dumps({"name": user, "password": password, "type": "user"}).encode()
    status, _, answer = curl("-X", "PUT", "-H", "Content-Type: application/json", "--data-binary", "@-",
                             f"{depot.url}/npm-local/-/user/org.couchdb.user:{user}", data=body)
    return status, answer


def test_npm_login_is_locked_out_audited_and_gets_a_narrow_expiring_token(depot_factory, tmp_path):
    depot = depot_factory({"npm-local": {"format": "npm", "type": "hosted", "access": {"alice": "write"}},
                           "files": {"format": "generic", "type": "hosted"}}, secure=True,
                          extra={"login": {"max_failures": 3, "window": "1m", "lockout": "3s", "token_ttl": "2h"}})
    make_user(depot, "alice")
    for attempt in range(3):
        assert npm_login(depot, "alice", f"guess-{attempt}")[0] == 401
    status, body = npm_login(depot, "alice", "password-123")          # right password, but locked
    assert status == 401 and b"locked" in body
    records = [json.loads(line) for line in (depot.data_dir / "audit.log").read_text().splitlines()]
    denied = [r for r in records if r.get("service") == "npm" and r["result"] == "denied"]
    assert len(denied) == 4 and {r["action"] for r in denied} == {"login", "lockout"}
    assert all(r["user"] == "alice" for r in denied)
    time.sleep(3.5)

    status, body = npm_login(depot, "admin", DepotProcess.ADMIN_PASSWORD)
    assert status == 201
    token = json.loads(body)["token"]
    assert curl(*bearer(token), f"{depot.url}/-/api/audit")[0] == 403            # not an admin token
    assert put(f"{depot.url}/files/by-admin.txt", b"x", *bearer(token)) == 201    # but the admin's own rights
    listing = depot.run_cli("token", "list").stdout.splitlines()
    line = next(row.split() for row in listing if " admin " in f" {row} ")
    assert line[2] != "admin"
    expires = time.mktime(time.strptime(" ".join(line[4:6]), "%Y-%m-%d %H:%M")) - time.timezone
    assert 2 * 3600 - 120 <= expires - time.time() <= 2 * 3600 + 60
    status, body = npm_login(depot, "alice", "password-123")
    assert status == 201
    npm = NpmCli(tmp_path / "npm", f"{depot.url}/npm-local/", json.loads(body)["token"])
    assert npm.ok("whoami").stdout.strip() == "alice"
    assert put(f"{depot.url}/files/by-alice.txt", b"x", *bearer(json.loads(body)["token"])) == 403
    assert any(r["action"] == "login" and r["result"] == "ok" and r.get("service") == "npm"
               for r in map(json.loads, (depot.data_dir / "audit.log").read_text().splitlines()))


@contextlib.contextmanager
def busy(url: str, token: str) -> Iterator[None]:
    """Read `url` with `token` over new connections, over and over, while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            curl(*bearer(token), url)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def test_revocation_and_password_changes_count_at_once_on_every_worker(depot_factory):
    depot = depot_factory({"private": {"format": "generic", "type": "hosted", "access": {"alice": "read"}},
                           "oci-local": {"format": "oci", "type": "hosted", "access": {"alice": "write"}}},
                          secure=True, workers=2)
    make_user(depot, "alice")
    assert put(f"{depot.url}/private/a.txt", b"one", "-u", ":".join(ADMIN)) == 201
    token = make_token(depot, "--user", "alice", "--repo", "private", "--perm", "read")
    jwt_token = docker_jwt(depot, "alice:password-123", "repository:oci-local/app:pull")
    tags = f"{depot.url}/v2/oci-local/app/tags/list"
    for _ in range(12):          # a new connection each: both workers identify (and cache) both
        assert curl(*bearer(token), f"{depot.url}/private/a.txt")[0] == 200
        assert curl(*bearer(jwt_token), tags)[0] == 404                       # allowed; no such image
    token_id = depot.run_cli("token", "list").stdout.splitlines()[1].split()[0]
    with busy(f"{depot.url}/private/a.txt", token):      # keeps both workers' caches fresh meanwhile
        depot.run_cli("token", "revoke", token_id)
    for _ in range(12):
        assert curl(*bearer(token), f"{depot.url}/private/a.txt")[0] == 401
    subprocess.run(depot.command("user", "passwd", "alice", "--password-stdin"), input="password-456\n",
                   capture_output=True, text=True, timeout=60, check=True)
    for _ in range(12):
        assert curl(*bearer(jwt_token), tags)[0] == 401
    new_jwt = docker_jwt(depot, "alice:password-456", "repository:oci-local/app:pull")
    for _ in range(12):
        assert curl("-u", "alice:password-456", f"{depot.url}/private/a.txt")[0] == 200
        assert curl(*bearer(new_jwt), tags)[0] == 404
    depot.run_cli("user", "delete", "alice")
    for _ in range(12):
        assert curl("-u", "alice:password-456", f"{depot.url}/private/a.txt")[0] == 401
        assert curl(*bearer(new_jwt), tags)[0] == 401


def timed_get(url: str, auth: tuple[str, str] | None = None, headers: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    requests.get(url, auth=auth, headers=headers, timeout=60)
    return time.monotonic() - started


@pytest.fixture
def unlocked(depot_factory):
    """A secure depot whose lockout never engages in these tests."""
    depot = depot_factory({"private": {"format": "generic", "type": "hosted", "access": {"alice": "read"}}},
                          secure=True, extra={"login": {"max_failures": 100000}})
    make_user(depot, "alice")
    return depot


def test_unknown_users_cost_as_much_as_known_ones(unlocked):
    """No user enumeration by timing: an unknown name is verified against a dummy hash."""
    url = f"{unlocked.url}/private/a.txt"
    known = sorted(timed_get(url, ("alice", f"wrong-{i}")) for i in range(7))[3]
    unknown = sorted(timed_get(url, (f"nobody{i}", "wrong")) for i in range(7))[3]
    assert known > 0.01                                   # argon2 really runs for a known name
    assert unknown > 0.4 * known, (known, unknown)


def test_token_reads_stay_fast_while_passwords_are_guessed(unlocked):
    """Hash checks run off the database thread, a few at a time: guesses do not stall other reads."""
    assert put(f"{unlocked.url}/private/a.txt", b"one", "-u", ":".join(ADMIN)) == 201
    token = make_token(unlocked, "--user", "alice", "--repo", "private", "--perm", "read")
    url = f"{unlocked.url}/private/a.txt"
    headers = {"Authorization": f"Bearer {token}"}
    timed_get(url, headers=headers)
    with ThreadPoolExecutor(max_workers=30) as pool:
        started = time.monotonic()
        guesses = [pool.submit(timed_get, url, ("alice", f"guess-{i}")) for i in range(50)]
        reads = []
        while not all(g.done() for g in guesses) and time.monotonic() - started < 120:
            reads.append(timed_get(url, headers=headers))
        storm = time.monotonic() - started
    assert storm > 0.5, "the guesses were too quick to show anything"
    reads.sort()
    assert len(reads) >= 10 and reads[len(reads) * 3 // 4] < 0.25, (storm, len(reads), reads[-5:])


def repository_series(text: str) -> set[str]:
    return set(re.findall(r'repository="([^"]*)"', text))


def test_listings_and_metrics_show_only_readable_repositories(depot_factory):
    """One visibility rule: /-/api/repositories, /-/api/stats and /-/metrics hide what the caller
    may not read; `metrics.anonymous: false` keeps metrics for admins and `metrics.users`."""
    repos = {"secret": {"format": "generic", "type": "hosted", "access": {"alice": "read"}},
             "open": {"format": "generic", "type": "hosted", "anonymous_read": True}}
    depot = depot_factory(repos, secure=True)
    make_user(depot, "alice")
    assert put(f"{depot.url}/secret/plan.txt", b"private plan", "-u", ":".join(ADMIN)) == 201
    assert put(f"{depot.url}/open/a.txt", b"public", "-u", ":".join(ADMIN)) == 201

    def names(*auth: str) -> set[str]:
        return {r["name"] for r in json.loads(curl(*auth, f"{depot.url}/-/api/repositories")[2])}
    assert names() == {"open"}
    assert names("-u", "alice:password-123") == {"open", "secret"}
    assert set(json.loads(curl(f"{depot.url}/-/api/stats")[2])["repositories"]) == {"open"}

    def scrape(*auth: str) -> tuple[int, str]:
        status, _, body = curl(*auth, f"{depot.url}/-/metrics")
        return status, body.decode()

    def wait_for_series(*auth: str) -> set[str]:
        deadline = time.monotonic() + 15                   # response counts are flushed every 2 s
        while "secret" not in repository_series(scrape(*auth)[1]) and time.monotonic() < deadline:
            time.sleep(0.5)
        return repository_series(scrape(*auth)[1])
    assert {"secret", "open"} <= wait_for_series("-u", ":".join(ADMIN))
    status, text = scrape()
    assert status == 200 and "open" in repository_series(text) and "secret" not in repository_series(text)
    assert "secret" in repository_series(scrape("-u", "alice:password-123")[1])

    depot.stop()
    config = yaml.safe_load(depot.config_path.read_text())
    config["metrics"] = {"anonymous": False, "users": ["prometheus"]}
    depot.config_path.write_text(yaml.safe_dump(config))
    depot.start()
    make_user(depot, "prometheus")
    scraper = make_token(depot, "--user", "prometheus", "--perm", "read")
    assert scrape()[0] == 401
    assert scrape("-u", "alice:password-123")[0] == 403
    assert curl("-u", ":".join(ADMIN), f"{depot.url}/secret/plan.txt")[2] == b"private plan"
    assert "secret" in wait_for_series(*bearer(scraper))         # the scraper sees every repository


def test_a_database_from_before_credential_versions_is_migrated(tmp_path):
    """Users created by an older depot keep working; their credential version starts at 0."""
    import sqlite3

    from depot.cache.db import Database
    from depot.cache.accounts import UserStore
    with sqlite3.connect(tmp_path / "depot.db") as conn:
        conn.execute("CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
                     " admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)")
        conn.execute("INSERT INTO users VALUES ('old', 'x', 0, 0)")
    db = Database(tmp_path / "depot.db")
    try:
        users = UserStore(db)
        UserStore(db)                                                   # a second worker: no error
        assert users.stored_user("old").version == 0
        users.set_password("old", "password-123")
        assert users.stored_user("old").version == 1
    finally:
        db.close()
