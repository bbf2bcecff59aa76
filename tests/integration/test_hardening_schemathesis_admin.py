"""E4 (admin): schemathesis over every /api/... operation of /openapi.json, signed in as an admin.

``test_hardening_schemathesis.py`` fuzzes without credentials, so the admin API mostly stops
at 401. Here a real gateway (mock provider; auth, budget and an exact semantic cache in the
pipeline so the runtime views exist) bootstraps an admin from ``WATCHLLM_ADMIN_EMAIL``, the
test logs in through ``POST /api/auth/login`` and seeds real objects through the API: a
project with an API key, a provider key and a usage row, a member, a team with that member,
an alert and a webhook. Every admin operation is then fuzzed (positive and negative
generation, ≥ 1000 cases in all, ~2 minutes at most) with ``Authorization: Bearer <token>``;
most path parameters (and ``project_id``/``user_id``/``team_id``/``refresh_token``/``url`` body
or query fields) are swapped for the ids of those real objects, so handlers run past their
lookups.

Asserted: 0 responses with a 5xx status; every 4xx carries a JSON body whose
``error.code`` is a non-empty string; after every successful write under /api/projects a
``/v1/chat/completions`` call with the seeded project's key is not a 5xx either (what the
admin API stores must not break that tenant's traffic); no "Traceback" in the gateway log;
most cases got past authentication.

Not locking itself out: nothing is excluded. ``DELETE /api/team/{own id}`` must answer 400
(asserted through the fuzz: it is a 4xx with a code), a ``POST /api/auth/logout`` that
revoked the token, or any other 401 on a signed-in operation, is followed by a fresh login
(counted and printed), a successful refresh replaces the refresh token used in later cases,
and after every successful DELETE the seeded objects are checked and re-created.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import time
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")  # test dependency: pip install schemathesis (pyproject `test` extra)
import requests  # noqa: E402  (a schemathesis dependency)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from tests.fixtures.gateway import base_config  # noqa: E402

# A longer hunt: WATCHLLM_API_FUZZ_CASES=20000 WATCHLLM_API_FUZZ_SECONDS=1800 pytest tests/integration/test_hardening_schemathesis_admin.py -s
TOTAL_CASES = int(os.environ.get("WATCHLLM_API_FUZZ_CASES", 1200))
TIME_BUDGET = float(os.environ.get("WATCHLLM_API_FUZZ_SECONDS", 150))
EMAIL, PASSWORD = "fuzz-admin@example.com", "a long enough fuzz password"
ENV = {
    "WATCHLLM_ADMIN_EMAIL": EMAIL, "WATCHLLM_ADMIN_PASSWORD": PASSWORD, "WATCHLLM_SCRYPT_N": "1024",
    "WATCHLLM_MASTER_KEY": base64.b64encode(b"f" * 32).decode(), "WATCHLLM_WEBHOOK_ALLOW_PRIVATE": "1",
    "WATCHLLM_WEBHOOK_MAX_ATTEMPTS": "1",
}
# Which pool a path parameter, body field or query parameter of that name draws real values from.
POOL_OF = {"project_id": "project_id", "key_id": "key_id", "provider": "provider", "user_id": "user_id",
           "team_id": "team_id", "alert_id": "alert_id", "webhook_id": "webhook_id", "request_id": "request_id",
           "refresh_token": "refresh_token", "url": "url"}


class Admin:
    """A signed-in admin session and the real objects the fuzz aims at."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.token = ""
        self.logins = 0
        self.key = ""  # the plaintext of the seeded project's API key
        self.pool: dict[str, list[str]] = {"url": ["http://127.0.0.1:9/hook", "https://localhost/x?y=1"]}

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        r = self.http.request(method, self.url + path, json=body, headers=headers, timeout=10)
        return r.status_code, (r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else None)

    def chat(self) -> requests.Response:
        """A /v1 call as the seeded project: whatever the fuzz stored in its settings must not break its traffic."""
        return self.http.post(f"{self.url}/v1/chat/completions", headers={"Authorization": f"Bearer {self.key}"}, timeout=10,
                              json={"model": "mock", "messages": [{"role": "user", "content": "hello"}]})

    def login(self) -> None:
        status, pair = self.api("POST", "/api/auth/login", {"email": EMAIL, "password": PASSWORD}, auth=False)
        assert status == 200, pair
        self.token = pair["access_token"]
        self.pool["refresh_token"] = [pair["refresh_token"]]
        self.pool["user_id"] = [pair["user"]["id"]] + self.pool.get("user_id", [])[1:]
        self.logins += 1

    def _ok(self, method: str, path: str, body: Any = None, expect: int = 201) -> Any:
        status, data = self.api(method, path, body)
        assert status == expect, (method, path, status, data)
        return data

    def seed(self) -> None:
        """Create (or re-create) whatever of the seeded objects is missing."""
        p = self.pool
        pid = p.get("project_id", [None])[0]
        if pid is None or self.api("GET", f"/api/projects/{pid}")[0] != 200:
            pid = self._ok("POST", "/api/projects", {"name": f"fuzz-{time.monotonic_ns()}", "settings": {"rpm": 100000}})["id"]
            p["project_id"] = [pid]
            p.pop("key_id", None)
            p.pop("request_id", None)
        if "key_id" in p:  # revoked by a fuzz case: a fresh one
            keys = self._ok("GET", f"/api/projects/{pid}/keys?limit=500", expect=200)["data"]
            if not any(k["id"] == p["key_id"][0] and k["revoked_at"] is None for k in keys):
                p.pop("key_id")
        if "key_id" not in p:
            created = self._ok("POST", f"/api/projects/{pid}/keys", {"name": "fuzz"})
            p["key_id"], self.key = [created["id"]], created["key"]
        if not any(row["provider"] == "mock" for row in self._ok("GET", f"/api/projects/{pid}/providers", expect=200)["data"]):
            self._ok("POST", f"/api/projects/{pid}/providers", {"provider": "mock", "api_key": "sk-fuzz-0123456789abcdef"})
        p["provider"] = ["mock"]
        if "request_id" not in p or self.api("GET", f"/api/requests/{p['request_id'][0]}")[0] != 200:
            rid = f"ext_fuzz_{time.monotonic_ns()}"
            self._ok("POST", "/api/integrations/run", {"project_id": pid, "model": "mock", "id": rid, "prompt_tokens": 3,
                                                       "completion_tokens": 5, "cost_micros": 7, "latency_ms": 12.5})
            p["request_id"] = [rid]
        users = {u["id"] for u in self._ok("GET", "/api/team?limit=500", expect=200)["data"]}
        if len(p["user_id"]) < 2 or p["user_id"][1] not in users:
            member = self._ok("POST", "/api/team", {"email": f"member-{time.monotonic_ns()}@example.com", "role": "member"})
            p["user_id"] = [p["user_id"][0], member["id"]]
        tid = p.get("team_id", [None])[0]
        team = self.api("GET", f"/api/teams/{tid}")[1] if tid else None
        if not team or "members" not in team:
            tid = self._ok("POST", "/api/teams", {"name": f"fuzz-{time.monotonic_ns()}"})["id"]
            p["team_id"] = [tid]
            team = {"members": []}
        if not any(m.get("user_id") == p["user_id"][1] for m in team["members"]):
            self._ok("POST", f"/api/teams/{tid}/members", {"user_id": p["user_id"][1], "role": "member"})
        aid = p.get("alert_id", [None])[0]
        if aid is None or self.api("GET", f"/api/alerts/{aid}")[0] != 200:
            p["alert_id"] = [self._ok("POST", "/api/alerts", {"name": "fuzz", "type": "error_rate", "threshold": 0.5,
                                                              "project_id": pid})["id"]]
        wid = p.get("webhook_id", [None])[0]
        if wid is None or self.api("GET", f"/api/webhooks/{wid}")[0] != 200:
            p["webhook_id"] = [self._ok("POST", "/api/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]})["id"]]


def _aim(case: Any, data: Any, pool: dict[str, list[str]]) -> None:
    """Point most cases at real objects: path parameters, and known fields of a JSON body or the query."""

    def pick(name: str) -> str | None:
        values = pool.get(POOL_OF.get(name, ""), [])
        if not values or data.draw(st.integers(0, 3), label=f"aim {name}") == 0:  # a quarter keep the generated value
            return None
        return data.draw(st.sampled_from(values), label=name)

    for name in list(case.path_parameters or {}):
        value = pick(name)
        if value is not None:
            case.path_parameters[name] = value
    for mapping in (case.body if isinstance(case.body, dict) else None, case.query):
        for name in list(mapping or {}):
            value = pick(name)
            if value is not None:
                mapping[name] = value


def test_admin_openapi_fuzz_signed_in_no_5xx_and_stable_codes(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, server={"shutdown_timeout": 5},
                      pricing={"models": {"mock-1": {"input": 1000, "output": 1000}}},
                      pipeline=[{"metrics": {}}, {"auth": {}}, {"budget": {"project": {"monthly_usd": 100}}},
                                {"semantic_cache": {"semantic": False}}, {"router": {}}])
    gp = gateway_factory(cfg, env=ENV)
    admin = Admin(gp.url)
    admin.login()
    admin.seed()

    schema = schemathesis.openapi.from_url(f"{gp.url}/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if op.path.startswith("/api/")]
    # Deletes last, so the objects the other operations aim at live as long as possible (they are re-created anyway).
    ops.sort(key=lambda op: (op.method.upper() == "DELETE", op.path))
    assert len(ops) >= 40, [f"{op.method} {op.path}" for op in ops]
    per_op = max(TOTAL_CASES // (2 * len(ops)) + 3, 5)
    stats: collections.Counter[Any] = collections.Counter()
    by_op: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    bad: list[str] = []
    unexpected_401 = 0
    started = time.monotonic()

    for op in ops:
        signed_in = op.definition.raw.get("security") != []
        label = f"{op.method.upper()} {op.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > TIME_BUDGET:
                break
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception:  # an operation with nothing to negate
                continue

            @given(case=strategy, data=st.data())
            @settings(max_examples=per_op, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case: Any, data: Any) -> None:
                nonlocal unexpected_401
                _aim(case, data, admin.pool)
                # schemathesis generates, mangles or (negative cases) strips Authorization itself, whatever call(headers=)
                # says: serialize the case and send it with our token (the unauthenticated fuzz is the other test)
                try:
                    kwargs = case.as_transport_kwargs(base_url=gp.url)
                    headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items() if k.lower() != "authorization"}
                    headers["Authorization"] = f"Bearer {admin.token}"
                    kwargs["timeout"] = 10
                    resp = admin.http.request(headers=headers, allow_redirects=False, **kwargs)
                except Exception:  # the client refused to send it (invalid header bytes etc.)
                    stats[-1] += 1
                    return
                status = resp.status_code
                stats[status] += 1
                by_op[label][status] += 1
                where = f"{case.method} {case.formatted_path} [{mode.value}] body={str(case.body)[:120]!r} query={case.query!r}"
                if status >= 500:
                    bad.append(f"{where}: {status} {resp.content[:300]!r}")
                elif status >= 400:
                    try:
                        code = json.loads(resp.content)["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = None
                    if not isinstance(code, str) or not code:
                        bad.append(f"{where}: {status} without a stable code: {resp.content[:300]!r}")
                # stay signed in, and keep the seeded objects alive
                if op.path == "/api/auth/logout" and status == 204:
                    admin.login()
                elif signed_in and status == 401:
                    unexpected_401 += 1
                    admin.login()
                elif op.path == "/api/auth/refresh" and status == 200:
                    admin.pool["refresh_token"] = [json.loads(resp.content)["refresh_token"]]
                if case.method.upper() == "DELETE" and status < 300:
                    admin.seed()
                if case.method.upper() in ("POST", "PATCH", "PUT", "DELETE") and status < 300 and "/projects" in op.path:
                    v1 = admin.chat()
                    stats[f"v1 {v1.status_code}"] += 1
                    if v1.status_code >= 500:
                        bad.append(f"/v1 after {where}: {v1.status_code} {v1.content[:300]!r}")

            try:
                run()
            except Unsatisfiable:
                stats[-2] += 1  # nothing (negative) to generate for this operation

    took = time.monotonic() - started
    total = sum(v for k, v in stats.items() if isinstance(k, int) and k >= 0)
    reached = [label for label, c in by_op.items() if any(200 <= s < 300 for s in c)]
    past_auth = sum(v for label, c in by_op.items() for s, v in c.items() if s != 401)
    print(f"\nE4 admin: {len(ops)} operations, {total} cases sent in {took:.0f}s, statuses {dict(sorted(stats.items(), key=str))}, "
          f"{len(reached)} operations answered 2xx, {admin.logins} logins ({unexpected_401} after an unexpected 401), "
          f"problems {len(bad)}")
    for label in sorted(by_op):
        print(f"   {label}: {dict(sorted(by_op[label].items()))}")
    for b in bad[:30]:
        print("  ", b)
    assert total >= 1000
    assert bad == [], bad[:30]
    assert past_auth >= 0.9 * total, "the fuzz was locked out"
    assert unexpected_401 <= 5
    assert len(reached) >= 0.75 * len(ops), sorted(set(by_op) - set(reached))
    assert "Traceback" not in gp.log()
