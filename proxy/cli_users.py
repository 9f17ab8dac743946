"""`depot user …` and `depot token …`: users and API tokens on the same store as the server."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from typing import Any, Callable

from .units import parse_duration
from depot.cache.accounts import RANK, UserError


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Callable[..., int]]:
    """Add the subcommands; returns {command: handler} for the CLI's table."""
    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user (password from --password-stdin or a prompt)")
    add.add_argument("name", help="user name (a-z 0-9 . _ -)")
    add.add_argument("--admin", action="store_true", help="the user may do everything")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    common(add)
    passwd = user_sub.add_parser("passwd", help="set a user's password (their JWTs stop working)")
    passwd.add_argument("name", help="user name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    common(passwd)
    delete = user_sub.add_parser("delete", help="remove a user and revoke their tokens")
    delete.add_argument("name", help="user name")
    common(delete)
    unlock = user_sub.add_parser("unlock", help="lift a lockout after too many wrong passwords")
    unlock.add_argument("name", help="user name")
    common(unlock)
    listing = user_sub.add_parser("list", help="list users, their tokens and lockouts")
    common(listing)
    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token (printed alone on the last line)")
    create.add_argument("--user", help="owner; omit for a deploy token")
    create.add_argument("--repo", action="append", default=[], help="repository (repeatable; default all)")
    create.add_argument("--perm", required=True, choices=["read", "write", "delete", "admin"],
                        help="what the token may do (never more than its owner)")
    create.add_argument("--expires", metavar="DURATION", help="lifetime, e.g. 30d (default: never)")
    create.add_argument("--description", default="", help="what the token is for (shown by token list)")
    common(create)
    listing = token_sub.add_parser("list", help="list tokens with descriptions and last use (never their secrets)")
    common(listing)
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="token id (from token list)")
    common(revoke)
    return {"user": cmd_user, "token": cmd_token}


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UserError("no password on stdin (--password-stdin reads its first line)")
        return line.rstrip("\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("depot: passwords differ")
    return first


def _stores(args: argparse.Namespace, load: Callable[..., Any]) -> tuple[Any, Any, Any, Any]:
    """(what to close, the account store, the audit log, the config): the shared PostgreSQL
    database when the config names one (every node sees the change at once), else the node's
    SQLite."""
    from depot.cache.storage import open_accounts

    from .cli import store_dir
    config = load(args)
    if config.database_url:
        accounts = open_accounts(config.data_dir, config.database_url)
        return accounts, accounts.users, accounts.audit, config
    # only `user add` may start a store (the first admin before the first serve); the rest
    # say where they looked instead of creating an empty one
    adding = getattr(args, "user_command", None) == "add"
    accounts = open_accounts(config.data_dir if adding else store_dir(config), create=adding)
    return accounts, accounts.users, accounts.audit, config


def cmd_user(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    """depot user add | passwd | delete | unlock | list."""
    db, users, audit, _ = _stores(args, load)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        if args.user_command == "list":
            _list_users(users)
            return 0
        if args.user_command != "add" and not users.user_exists(args.name):
            raise UserError(f"no user {args.name!r}")
        if args.user_command == "add":
            users.add_user(args.name, _password(args), admin=args.admin)
            print(f"user {args.name} created{' (admin)' if args.admin else ''}")
        elif args.user_command == "delete":
            users.delete_user(args.name)
            print(f"user {args.name} deleted; their tokens are revoked")
        elif args.user_command == "unlock":
            users.unlock(args.name)
            print(f"user {args.name} unlocked")
        else:
            users.set_password(args.name, _password(args))
            print(f"password of {args.name} changed")
        audit.record(f"user.{args.user_command}", "ok", actor, None, None, user=args.name,
                     **({"admin": args.admin} if args.user_command == "add" else {}))
    except UserError as exc:
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    return 0


def _list_users(users: Any) -> None:
    now = time.time()
    rows = users.user_rows(now)
    active: dict[str, int] = {}
    for token in users.list_tokens():
        if token.user and token.usable(now):
            active[token.user] = active.get(token.user, 0) + 1
    print(f"{'user':24} {'admin':5} {'created':16} {'tokens':>6} state")
    for name, admin, created, locked in rows:
        state = f"locked {int(locked)}s" if locked else "active"
        print(f"{name:24} {'yes' if admin else 'no':5} {_when(created):16} {active.get(name, 0):>6} {state}")


def _check_grant(config: Any, users: Any, args: argparse.Namespace) -> None:
    """Refuse a token on a repository that does not exist, or with more than its owner holds."""
    for name in args.repo:
        if name not in config.repositories:
            raise UserError(f"no repository {name!r} (known: {', '.join(sorted(config.repositories))})")
    if args.user is None:
        return
    if not users.user_exists(args.user):
        raise UserError(f"no user {args.user!r}")
    if users.user_is_admin(args.user) or config.open_access:
        return
    for name in args.repo:          # without --repo: every repository, each capped by the owner's access
        held = config.repositories[name].access.get(args.user) or config.repositories[name].access.get("*")
        if RANK.get(held or "", 0) < RANK[args.perm]:
            raise UserError(f"{args.user} holds {held or 'no access'} on {name}, not {args.perm}: grant it first "
                            f"(access: {{{args.user}: {args.perm}}} on the repository)")


def cmd_token(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    """depot token create | list | revoke."""
    db, users, audit, config = _stores(args, load)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        if args.token_command == "create":
            expires = parse_duration(args.expires) if args.expires else None
            _check_grant(config, users, args)
            token, secret = users.create_token(args.user, args.repo, args.perm, expires, args.description)
            audit.record("token.create", "ok", actor, None, None, token=token.id, user=args.user,
                         repos=list(token.repos), perm=token.perm)
            print(f"token {token.id} for {args.user or 'deployment'}: {args.perm} on {', '.join(token.repos)}"
                  f"{_until(token.expires)}")
            print(secret)
        elif args.token_command == "list":
            _list_tokens(users)
        else:
            if not users.revoke(args.id):
                raise UserError(f"no active token {args.id}")
            audit.record("token.revoke", "ok", actor, None, None, token=args.id)
            print(f"token {args.id} revoked")
    except (UserError, ValueError) as exc:
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    return 0


def _list_tokens(users: Any) -> None:
    print(f"{'id':12} {'user':16} {'perm':7} {'repositories':20} {'expires':16} {'last used':16} {'state':8}"
          " description")
    now = time.time()
    for token in users.list_tokens():
        state = "revoked" if token.revoked else ("expired" if not token.usable(now) else "active")
        print(f"{token.id:12} {token.user or '(deploy)':16} {token.perm:7} {','.join(token.repos):20}"
              f" {_when(token.expires):16} {_when(token.last_used):16} {state:8} {token.description}")


def _when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(moment))


def _until(expires: float | None) -> str:
    """' until <UTC time>' for an expiring token, '' for one that never expires."""
    return "" if expires is None else " until " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(expires))
