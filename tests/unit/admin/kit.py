"""Helpers for admin/auth tests: a store on a temp file, an admin app, a signed-in client."""
from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.admin import setup
from gateway.admin.passwords import hash_password
from gateway.admin.settings import AdminSettings
from gateway.config import parse_config
from gateway.plugin import Services
from gateway.pricing import Pricing
from gateway.store import open_store

MASTER_KEY = base64.b64encode(b"k" * 32).decode()
JWT_SECRET = "s" * 48
PASSWORD = "correct horse battery staple"
CONFIG = {
    "providers": {"mock": {"type": "mock"}, "openai": {"type": "openai", "api_key": "sk-global", "optional": True}},
    "models": {"mock": {"targets": ["mock/mock-1"]}},
}


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Org:
    org_id: str
    admin_id: str
    email: str
    member_email: str = ""


@dataclass
class Env:
    services: Services
    settings: AdminSettings
    clock: Clock = field(default_factory=Clock)
    orgs: dict[str, Org] = field(default_factory=dict)


def make_services(config: dict[str, Any] | None = None) -> Services:
    cfg = parse_config(config or CONFIG, "<test>", env={})
    return Services(config=cfg, log=logging.getLogger("watchllm.test"), pricing=Pricing())


async def make_env(tmp_path: Any, *, config: dict[str, Any] | None = None) -> Env:
    os.environ["WATCHLLM_MASTER_KEY"] = MASTER_KEY
    services = make_services(config)
    services.store = await open_store(f"sqlite:///{tmp_path}/watchllm.db")
    clock = Clock()
    settings = AdminSettings(jwt_secret=JWT_SECRET, scrypt_n=2**10, clock=clock, max_failures=3, lockout=600, failure_window=600)
    env = Env(services, settings, clock)
    for name in ("a", "b"):
        env.orgs[name] = await add_org(env, name)
    return env


async def add_org(env: Env, name: str) -> Org:
    store = env.services.store
    org = await store.orgs.ensure(f"org-{name}")
    pw = hash_password(PASSWORD, n=2**10)
    admin = await store.users.create(org_id=org["id"], email=f"admin@{name}.test", password_hash=pw, role="admin")
    await store.users.create(org_id=org["id"], email=f"member@{name}.test", password_hash=pw, role="member")
    return Org(org["id"], admin["id"], f"admin@{name}.test", f"member@{name}.test")


def make_app(env: Env) -> web.Application:
    app = web.Application()
    setup(app, env.services, env.settings)

    async def close_store(_: web.Application) -> None:
        await env.services.store.close()

    app.on_cleanup.append(close_store)
    return app


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, str]:
    resp = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return {"Authorization": f"Bearer {data['access_token']}", "_refresh": data["refresh_token"]}


def h(auth: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in auth.items() if not k.startswith("_")}
