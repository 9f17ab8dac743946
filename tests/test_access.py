"""Access control with curl: users, tokens, per-repository permissions, audit, TLS, secrets."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from depot_process import DepotProcess

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
    time.sleep(5.5)                                                      # credential cache TTL
    assert put(f"{secure.url}/private/e.txt", b"e", "-H", f"Authorization: Bearer {deploy}") == 401
    assert curl("-H", f"Authorization: Bearer {short}", f"{secure.url}/private/d.txt")[0] == 401


def test_docker_token_service(secure):
    make_user(secure, "alice")
    status, _, body = curl("-u", "alice:password-123",
                           f"{secure.url}/-/token?service=depot&scope=repository:private/app:pull,push")
    assert status == 200
    token = json.loads(body)["token"]
    assert put(f"{secure.url}/private/f.txt", b"f", "-H", f"Authorization: Bearer {token}") == 201
    assert curl("-u", "alice:nope-nope", f"{secure.url}/-/token?scope=repository:private/x:pull")[0] == 401


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
                          extra={"login": {"max_failures": 3, "window": "1m", "lockout": "3s"}})
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
