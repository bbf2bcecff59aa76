"""``watchllm keys create|revoke|list`` and ``watchllm users create``: tenancy from the shell.

They open the store named by the config file's ``store.url`` (or ``--store``) directly,
so they work with the gateway stopped or running. A running gateway sees a revoked key
within the auth cache TTL (1 s by default).

    KEY=$(watchllm keys create --project demo)      # stdout is the key alone; notes go to stderr
    watchllm keys revoke lgw_proj_3f9c0a1b2c3d       # a key id, its prefix or the whole key
    watchllm users create --email ops@example.com --role admin   # password from a prompt or stdin
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any, Awaitable, Callable

from ..crypto import parse_api_key

__all__ = ["add_subcommands", "keys_create", "keys_revoke", "keys_list", "users_create"]


def _store_url(args: argparse.Namespace) -> str:
    if getattr(args, "store", None):
        return str(args.store)
    if os.environ.get("WATCHLLM_STORE_URL"):
        return os.environ["WATCHLLM_STORE_URL"]
    from ..config import StoreConfig, load_config

    path = getattr(args, "config", None) or "config/gateway.yaml"
    if not os.path.exists(path):
        return StoreConfig().url
    return load_config(path).store.url


def _run(args: argparse.Namespace, fn: Callable[[Any], Awaitable[int]]) -> int:
    from ..store import open_store

    async def main() -> int:
        store = await open_store(_store_url(args))
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def keys_create(args: argparse.Namespace) -> int:
    async def go(store: Any) -> int:
        from .project_routes import create_key

        org = await store.orgs.ensure(args.org)
        project = await store.projects.by_name(org["id"], args.project)
        if project is None:
            project = await store.projects.create(org_id=org["id"], name=args.project)
            print(f"created project {args.project!r} ({project['id']}) in org {args.org!r}", file=sys.stderr)

        class _Ctx:
            pass

        ctx = _Ctx()
        ctx.store = store  # type: ignore[attr-defined]
        created = await create_key(ctx, project["id"], name=args.name or "", test=args.test, expires_in=args.expires_in)
        print(f"key id {created['id']} for project {args.project!r}; shown once, store it now", file=sys.stderr)
        print(created["key"])
        return 0

    return _run(args, go)


def _key_id(text: str) -> str:
    parts = parse_api_key(text)
    if parts is not None:
        return parts.key_id
    for prefix in ("lgw_proj_", "lgw_test_"):
        if text.startswith(prefix):
            return text[len(prefix):].split("_", 1)[0]
    return text


def keys_revoke(args: argparse.Namespace) -> int:
    async def go(store: Any) -> int:
        key_id = _key_id(args.key)
        if not await store.api_keys.revoke(key_id):
            print(f"error: no active key {key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {key_id}; running gateways refuse it within their auth cache TTL", file=sys.stderr)
        return 0

    return _run(args, go)


def keys_list(args: argparse.Namespace) -> int:
    async def go(store: Any) -> int:
        org = await store.orgs.ensure(args.org)
        project = await store.projects.by_name(org["id"], args.project)
        if project is None:
            print(f"error: no project {args.project!r} in org {args.org!r}", file=sys.stderr)
            return 1
        rows, _ = await store.api_keys.list(project["id"], limit=500, offset=0)
        for r in rows:
            state = "revoked" if r["revoked_at"] else "active"
            print(f"{r['prefix']}  {state:<7}  {'test' if r['is_test'] else 'live'}  {r['name']}")
        return 0

    return _run(args, go)


def users_create(args: argparse.Namespace) -> int:
    from .passwords import MIN_PASSWORD_LENGTH, hash_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif os.environ.get("WATCHLLM_ADMIN_PASSWORD"):
        password = os.environ["WATCHLLM_ADMIN_PASSWORD"]
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("error: passwords differ", file=sys.stderr)
            return 2
    if len(password) < MIN_PASSWORD_LENGTH:
        print(f"error: the password needs at least {MIN_PASSWORD_LENGTH} characters", file=sys.stderr)
        return 2

    async def go(store: Any) -> int:
        import sqlite3

        org = await store.orgs.ensure(args.org)
        pw_hash = await asyncio.to_thread(hash_password, password)
        try:
            user = await store.users.create(org_id=org["id"], email=args.email, password_hash=pw_hash, role=args.role)
        except sqlite3.IntegrityError:
            print(f"error: a user {args.email!r} already exists", file=sys.stderr)
            return 1
        print(f"created {args.role} {user['email']} ({user['id']}) in org {args.org!r}")
        return 0

    return _run(args, go)


def add_subcommands(subparsers: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default="config/gateway.yaml", help="config file whose store.url to use")
        p.add_argument("--store", default=None, help="store URL, e.g. sqlite:///./data/watchllm.db (overrides --config)")
        p.add_argument("--org", default="default", help="organization name (default: default)")

    keys = subparsers.add_parser("keys", help="project API keys").add_subparsers(dest="keys_cmd", required=True)
    kc = keys.add_parser("create", help="create a key (and the project if missing); prints it once")
    kc.add_argument("--project", required=True, help="project name")
    kc.add_argument("--name", default="", help="a label for the key")
    kc.add_argument("--test", action="store_true", help="an lgw_test_ key: mock models only, small quota")
    kc.add_argument("--expires-in", type=float, default=None, help="seconds until the key expires")
    common(kc)
    kc.set_defaults(func=keys_create)
    kr = keys.add_parser("revoke", help="revoke a key by id, prefix or the key itself")
    kr.add_argument("key")
    common(kr)
    kr.set_defaults(func=keys_revoke)
    kl = keys.add_parser("list", help="a project's keys (prefixes only)")
    kl.add_argument("--project", required=True)
    common(kl)
    kl.set_defaults(func=keys_list)

    users = subparsers.add_parser("users", help="admin users").add_subparsers(dest="users_cmd", required=True)
    uc = users.add_parser("create", help="create an admin API user")
    uc.add_argument("--email", required=True)
    uc.add_argument("--role", choices=["admin", "member"], default="admin")
    uc.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    common(uc)
    uc.set_defaults(func=users_create)
