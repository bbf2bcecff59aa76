"""The ``dlp`` middleware: scan the prompt, then block, redact or mask before the model sees it.

Order of work for one request:

1. pick the policy (the gateway's, or the project's override from ``project.settings["dlp"]``)
   and skip routes it does not cover;
2. scan every text slot of the request (``request.iter_slots``); if any finding's action
   is ``block``, answer 400 ``dlp_violation`` naming detectors and counts, never values;
3. rewrite the slots in place (``[EMAIL]`` for redact, ``[EMAIL_1]`` for mask);
4. on the way back, restore placeholders (and redact findings with ``scan_response``),
   in JSON bodies and chunk by chunk in streams, via ``Reply.transform``.

Every finding is counted by detector and action in ``call.facts`` and the store.
"""
from __future__ import annotations

import time
from collections import Counter

import orjson

from gateway.call import Call
from gateway.errors import GatewayError
from gateway.pipeline import Handler
from gateway.plugin import Services
from gateway.reply import Reply
from gateway.schema import SchemaError, convert

from .config import DlpConfig, Policy, PolicyOverride, all_detectors, build_policy
from .events import EventSink, Tally
from .masking import Vault, rewrite
from .request import iter_slots
from .response import ResponseFilter
from .scanner import Finding, Scanner

__all__ = ["Dlp"]

_MAX_CACHED_POLICIES = 1024


class Dlp:
    Config = DlpConfig

    def __init__(self, config: DlpConfig, services: Services) -> None:
        self.cfg = config
        self.services = services
        self.log = services.log
        self.scanner = Scanner(all_detectors(config))
        self.policy = build_policy(config, self.scanner.names)
        self.sink = EventSink(None)
        self.totals: Counter[tuple[str, str]] = Counter()  # (detector, action) -> findings, for /metrics
        services.extras["dlp_findings_total"] = self.totals
        self._project_policies: dict[bytes, Policy] = {}

    async def startup(self) -> None:
        self.sink = EventSink(self.services.store, enabled=self.cfg.events)
        self.sink.start()

    async def shutdown(self) -> None:
        await self.sink.close()

    # policy -------------------------------------------------------------------------------
    def policy_for(self, call: Call) -> Policy:
        project = call.project
        raw = project.settings.get("dlp") if project is not None and project.settings else None
        if not raw:
            return self.policy
        key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        policy = self._project_policies.get(key)
        if policy is None:
            policy = self._compile_override(raw, call.project_id)
            if len(self._project_policies) >= _MAX_CACHED_POLICIES:
                self._project_policies.clear()
            self._project_policies[key] = policy
        return policy

    def _compile_override(self, raw: object, project_id: str) -> Policy:
        try:
            override = convert(PolicyOverride, raw, "settings.dlp")
            names = set(self.scanner.names)
            unknown = sorted(n for n in [*override.actions, *(override.disabled or ())] if n not in names)
            if unknown:
                raise SchemaError([f"settings.dlp: unknown detector name(s) {', '.join(unknown)}"])
        except SchemaError as exc:
            # The gateway-wide policy is the floor every project gets; a broken override must not lift it.
            self.log.error("dlp: project %s has an invalid dlp override, using the gateway policy: %s", project_id, exc)
            return self.policy
        return build_policy(self.cfg, self.scanner.names, override)

    # the hot path -------------------------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        policy = self.policy_for(call)
        if not policy.enabled or call.endpoint not in policy.routes or not policy.actions:
            return await call_next(call)
        started = time.perf_counter()
        actions, active = policy.actions, policy.active
        tally = Tally(call, self.sink, self.totals)
        hits: list[tuple[object, object, str, list[Finding]]] = []
        bracketed: list[str] = []
        blocked: dict[str, int] = {}
        masking = False
        for container, key in iter_slots(call.body):
            text = container[key]  # type: ignore[index]
            if "[" in text:
                bracketed.append(text)
            findings = self.scanner.scan(text, active)
            if findings:
                hits.append((container, key, text, findings))
                for f in findings:
                    action = actions[f.detector]
                    if action == "block":
                        blocked[f.detector] = blocked.get(f.detector, 0) + 1
                    elif action == "mask":
                        masking = True
        if blocked:
            for _, _, _, findings in hits:
                for f in findings:
                    tally(f.detector, actions[f.detector])
            call.facts.extra["dlp_scan_ms"] = (time.perf_counter() - started) * 1000
            summary = ", ".join(f"{name}: {n}" for name, n in sorted(blocked.items()))
            raise GatewayError("dlp_violation", f"request blocked by the data loss prevention policy ({summary})",
                               details={"detectors": dict(sorted(blocked.items()))})
        vault: Vault | None = None  # nothing found and no response scan (the common case): none to fill or restore
        if hits or policy.scan_response:
            vault = Vault((lambda token: any(token in t for t in bracketed)) if bracketed else None)
        for container, key, text, findings in hits:
            container[key] = rewrite(text, findings, actions, vault if masking else None, tally)  # type: ignore[index]
        call.facts.extra["dlp_scan_ms"] = (time.perf_counter() - started) * 1000

        reply = await call_next(call)
        if reply.status >= 400 or not (vault or policy.scan_response):
            return reply
        filt = ResponseFilter(vault, self.scanner if policy.scan_response else None, actions, self.cfg.stream_holdback, tally)
        if reply.is_stream:
            reply.transform(filt)
        elif reply.body is not None:
            filt.apply_json(reply.body)
        return reply
