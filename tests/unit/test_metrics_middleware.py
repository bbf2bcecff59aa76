"""The metrics middleware alone: counts per outcome, bounded labels, per-app registries."""
from __future__ import annotations

from gateway.call import Project
from gateway.errors import GatewayError
from gateway.testing import ScriptedNext, drive, make_call, make_services
from plugins.middleware.metrics import LATENCY_BUCKETS, Metrics, MetricsConfig


def _value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def _run(m: Metrics, body: dict, nxt: ScriptedNext, *, project: str | None = None, **facts):
    call = make_call(body, project=Project(id=project) if project else None)
    for k, v in facts.items():
        setattr(call.facts, k, v)
    reply = await m(call, nxt)
    assert _value(m, "watchllm_requests_in_flight") >= 1  # until the response completes
    return await drive(reply, call)


async def test_json_success_counts_request_tokens_and_latency():
    m = Metrics(MetricsConfig(), make_services())
    await _run(m, {"model": "mock", "messages": []}, ScriptedNext(text="hi"), provider="mock", model_served="mock-1", attempts=1)
    labels = {"project": "", "model": "mock", "provider": "mock", "status": "200", "cache": "none"}
    assert _value(m, "watchllm_requests_total", **labels) == 1
    assert _value(m, "watchllm_tokens_total", project="", model="mock", direction="prompt") == 5
    assert _value(m, "watchllm_tokens_total", project="", model="mock", direction="completion") == 3
    assert _value(m, "watchllm_request_duration_seconds_count", model="mock", provider="mock") == 1
    assert _value(m, "watchllm_requests_in_flight") == 0


async def test_stream_records_ttft_and_disconnect_is_499():
    m = Metrics(MetricsConfig(), make_services())
    call = make_call({"model": "mock", "stream": True, "messages": []})
    call.facts.provider, call.facts.ttft_ms = "mock", 12.0
    reply = await m(call, ScriptedNext(text="hello world"))
    await drive(reply, call, disconnect_after=1)
    assert _value(m, "watchllm_time_to_first_token_seconds_count", provider="mock", model="mock") == 1
    assert _value(m, "watchllm_errors_total", code="client_gone") == 1
    assert _value(m, "watchllm_requests_total", project="", model="mock", provider="mock", status="499", cache="none") == 1


async def test_rejections_are_counted_by_code():
    m = Metrics(MetricsConfig(), make_services())
    for code in ("rate_limit_exceeded", "rate_limit_exceeded", "budget_exceeded", "invalid_api_key"):
        nxt = ScriptedNext(error=GatewayError(code, "no"))
        # the chain's error boundary turns the raise into a reply; emulate it
        async def boundary(call, nxt=nxt):
            try:
                return await nxt(call)
            except GatewayError as err:
                from gateway.reply import Reply
                return Reply.from_error(err)
        await _run(m, {"model": "mock", "messages": []}, boundary)  # type: ignore[arg-type]
    assert _value(m, "watchllm_rejections_total", code="rate_limit_exceeded") == 2
    assert _value(m, "watchllm_rejections_total", code="budget_exceeded") == 1
    assert _value(m, "watchllm_rejections_total", code="invalid_api_key") == 0
    assert _value(m, "watchllm_errors_total", code="invalid_api_key") == 1
    assert _value(m, "watchllm_requests_total", project="", model="mock", provider="none", status="429", cache="none") == 2


async def test_unknown_models_and_projects_do_not_grow_label_sets():
    m = Metrics(MetricsConfig(project_labels=True, max_projects=2), make_services())
    for i in range(20):
        await _run(m, {"model": f"random-{i}", "messages": []}, ScriptedNext(text="x"), project=f"p{i}")
    assert _value(m, "watchllm_requests_total", project="p0", model="other", provider="none", status="200", cache="none") == 1
    assert _value(m, "watchllm_requests_total", project="_other", model="other", provider="none", status="200", cache="none") == 18
    series = {s.labels.get("model") for fam in m.registry.collect() if fam.name == "watchllm_requests" for s in fam.samples}
    assert series == {"other"}


async def test_cache_hit_dlp_and_cost():
    m = Metrics(MetricsConfig(), make_services())
    call = make_call({"model": "mock", "messages": []})
    call.facts.cached, call.facts.tokens_saved, call.facts.cost_saved_micros = "exact", 8, 1500
    call.facts.dlp_findings = {"email": 2}
    call.facts.extra["dlp_actions"] = {"email": {"mask": 2}}
    reply = await m(call, ScriptedNext(text="x"))
    driven = await drive(reply, call)
    assert driven.outcome.ok
    assert _value(m, "watchllm_cache_hits_total", kind="exact") == 1
    assert _value(m, "watchllm_cache_tokens_saved_total", kind="exact") == 8
    assert abs(_value(m, "watchllm_cache_cost_saved_usd_total", kind="exact") - 0.0015) < 1e-12
    assert _value(m, "watchllm_dlp_findings_total", detector="email", action="mask") == 2


async def test_two_apps_have_separate_registries():
    a, b = Metrics(MetricsConfig(), make_services()), Metrics(MetricsConfig(), make_services())
    await _run(a, {"model": "mock", "messages": []}, ScriptedNext(text="x"))
    assert _value(a, "watchllm_requests_total", project="", model="mock", provider="none", status="200", cache="none") == 1
    assert _value(b, "watchllm_requests_total", project="", model="mock", provider="none", status="200", cache="none") == 0


async def test_hot_path_cost_is_microseconds():
    """Not a benchmark gate, a guard: the middleware plus its hook stay well under 100 µs."""
    import time

    m = Metrics(MetricsConfig(project_labels=True), make_services())
    nxt = ScriptedNext(text="x")
    calls = [make_call({"model": "mock", "messages": []}, project=Project(id="p")) for _ in range(2000)]
    replies = []
    t0 = time.perf_counter()
    for c in calls:
        replies.append(await m(c, nxt))
    t_mid = time.perf_counter()
    for r in replies:
        for hook in r.hooks:
            from gateway.reply import Outcome
            await hook(Outcome(status=200, ended="complete"))
    t1 = time.perf_counter()
    per_call_us = ((t_mid - t0) + (t1 - t_mid)) / len(calls) * 1e6
    print(f"metrics middleware (incl. ScriptedNext) + hook: {per_call_us:.1f} us/request")
    assert per_call_us < 500


def test_summed_updates_match_what_prometheus_client_would_record():
    """Updates are summed per request and applied when the registry is read; the buckets, sum and
    counts read back must be exactly those of calling observe()/inc() each time."""
    from prometheus_client import CollectorRegistry, Histogram

    m = Metrics(MetricsConfig(), make_services())
    ref = Histogram("ref_seconds", "reference", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    values = [0.005, 0.0050001, 0.0, 0.3, 600, 601, 1e9, 0.01]
    child = m._child(m.latency, "mock", "mock")
    for v in values:
        m._observe(child, v)
        ref.observe(v)
    m._inc(m.in_flight, 1)
    m._inc(m.in_flight, 1)
    m._inc(m.in_flight, -1)
    got = {s.labels.get("le"): s.value for fam in m.registry.collect() if fam.name == "watchllm_request_duration_seconds"
           for s in fam.samples if s.name.endswith("_bucket")}
    want = {s.labels.get("le"): s.value for fam in ref.collect() for s in fam.samples if s.name.endswith("_bucket")}
    assert got == want and got["+Inf"] == len(values)
    assert _value(m, "watchllm_request_duration_seconds_sum", model="mock", provider="mock") == sum(values)
    assert _value(m, "watchllm_requests_in_flight") == 1
    assert m._incs == {} and m._obs == {}  # applied, nothing left pending
