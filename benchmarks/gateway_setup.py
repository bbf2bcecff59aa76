"""The gateway under test, set up per scenario: its config (configs/base.yaml with a pipeline from
configs/pipelines.yaml), an API key in its store, a plain request to it, and the mock upstream's request counter."""
from __future__ import annotations

import asyncio
import importlib.util
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"


def load_pipelines() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / "pipelines.yaml").read_text())


def pipeline_entries(spec: dict[str, Any], name: str, drop: str | None = None) -> list[dict[str, Any]]:
    entries = []
    for item in spec["pipelines"][name]:
        mw, _, variant = item.partition(":")
        if mw == drop:
            continue
        opts = dict(spec["options"].get(mw) or {})
        if variant:
            opts.update(spec.get("variants", {}).get(mw, {}).get(variant) or {})
        entries.append({mw: opts})
    return entries


def middleware_missing(entries: list[dict[str, Any]]) -> list[str]:
    """Middlewares whose entry-point module is not importable yet (checked without importing it)."""
    from gateway import registry

    eps = registry.available("middleware")
    missing = []
    for entry in entries:
        (name,) = entry
        ep = eps.get(name)
        if ep is None:
            missing.append(f"{name} (no entry point)")
            continue
        module = ep.value.split(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(f"{name} ({module} not present)")
    return missing


def write_config(workdir: Path, *, port: int, upstream_port: int, entries: list[dict[str, Any]], workers: int,
                 state_url: str, store_url: str | None = None) -> Path:
    cfg = yaml.safe_load((CONFIGS / "base.yaml").read_text())
    cfg["server"]["port"] = port
    cfg["server"]["workers"] = workers
    cfg["store"]["url"] = store_url or f"sqlite:///{workdir / 'watchllm.db'}"
    cfg["state"]["url"] = state_url
    cfg["providers"]["up"]["base_url"] = f"http://127.0.0.1:{upstream_port}/v1"
    cfg["pipeline"] = entries
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def _seed_key(db_url: str) -> str:
    """A project and an API key in the scenario's store (the auth middleware needs one)."""
    from gateway.crypto import generate_api_key, hash_api_key
    from gateway.store import open_store

    store = await open_store(db_url)
    try:
        org = await store.orgs.create("bench")
        project = await store.projects.create(org_id=org["id"], name="bench")
        plaintext, parts = generate_api_key()
        await store.api_keys.create(key_id=parts.key_id, project_id=project["id"], prefix=parts.prefix,
                                    secret_hash=hash_api_key(plaintext), name="bench")
        return plaintext
    finally:
        await store.close()


def seed_key(workdir: Path) -> str:
    return asyncio.run(_seed_key(f"sqlite:///{workdir / 'watchllm.db'}"))


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {})


def upstream_requests(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return int(orjson.loads(r.read())["requests"])
