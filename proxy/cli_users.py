"""`depot user …` and `depot token …`: users and API tokens on the same store as the server."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from typing import Any, Callable

from .units import parse_duration


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Callable[..., int]]:
    """Add the subcommands; returns {command: handler} for the CLI's table."""
    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user (password from --password-stdin or a prompt)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true")
    common(add)
    passwd = user_sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    common(passwd)
    delete = user_sub.add_parser("delete", help="remove a user and revoke their tokens")
    delete.add_argument("name")
    common(delete)
    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token (printed alone on the last line)")
    create.add_argument("--user", help="owner; omit for a deploy token")
    create.add_argument("--repo", action="append", default=[], help="repository (repeatable; default all)")
    create.add_argument("--perm", required=True, choices=["read", "write", "delete", "admin"])
    create.add_argument("--expires", help="lifetime, e.g. 30d")
    create.add_argument("--description", default="")
    common(create)
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    common(listing)
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    common(revoke)
    return {"user": cmd_user, "token": cmd_token}


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("depot: passwords differ")
    return first


def _stores(args: argparse.Namespace, load: Callable[..., Any]) -> tuple[Any, Any, Any]:
    from depot.cache.accounts import AuditLog, UserStore
    from depot.cache.storage import open_database
    config = load(args)
    # only `user add` may start a store (the first admin before the first serve); the rest
    # say where they looked (StoreMissing) instead of creating an empty one
    db = open_database(config.data_dir, create=getattr(args, "user_command", None) == "add")
    return db, UserStore(db), AuditLog(config.data_dir / "audit.log")


def cmd_user(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    from depot.cache.accounts import UserError
    db, users, audit = _stores(args, load)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        if args.user_command == "add":
            users.add_user(args.name, _password(args), admin=args.admin)
            audit.record("user.add", "ok", actor, None, None, user=args.name, admin=args.admin)
            print(f"user {args.name} created{' (admin)' if args.admin else ''}")
        elif args.user_command == "delete":
            users.delete_user(args.name)
            audit.record("user.delete", "ok", actor, None, None, user=args.name)
            print(f"user {args.name} deleted; their tokens are revoked")
        else:
            users.set_password(args.name, _password(args))
            audit.record("user.passwd", "ok", actor, None, None, user=args.name)
            print(f"password of {args.name} changed")
    except UserError as exc:
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    return 0


def cmd_token(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    from depot.cache.accounts import UserError
    db, users, audit = _stores(args, load)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        if args.token_command == "create":
            expires = parse_duration(args.expires) if args.expires else None
            token, secret = users.create_token(args.user, args.repo, args.perm, expires, args.description)
            audit.record("token.create", "ok", actor, None, None, token=token.id, user=args.user,
                         repos=list(token.repos), perm=token.perm)
            print(f"token {token.id} for {args.user or 'deployment'}: {args.perm} on {', '.join(token.repos)}"
                  f"{_until(token.expires)}")
            print(secret)
        elif args.token_command == "list":
            print(f"{'id':12} {'user':16} {'perm':7} {'repositories':24} {'expires':17} state")
            now = time.time()
            for token in users.list_tokens():
                until = "-" if token.expires is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(token.expires))
                state = "revoked" if token.revoked else ("expired" if not token.usable(now) else "active")
                print(f"{token.id:12} {token.user or '(deploy)':16} {token.perm:7} {','.join(token.repos):24}"
                      f" {until:17} {state}")
        else:
            if not users.revoke(args.id):
                print(f"depot: no active token {args.id}", file=sys.stderr)
                return 2
            audit.record("token.revoke", "ok", actor, None, None, token=args.id)
            print(f"token {args.id} revoked")
    except (UserError, ValueError) as exc:
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    return 0


def _until(expires: float | None) -> str:
    """' until <UTC time>' for an expiring token, '' for one that never expires."""
    return "" if expires is None else " until " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(expires))
