"""A project's own provider key (decrypted by auth for the request) replaces the gateway's key upstream."""
from __future__ import annotations

import aiohttp

from gateway.call import PROVIDER_KEYS, Target
from gateway.testing import make_call, make_services
from plugins.providers.openai import OpenAIConfig, OpenAIProvider


async def test_project_key_is_sent_upstream_instead_of_the_gateway_key(upstream):
    services = make_services()
    async with aiohttp.ClientSession() as http:
        services.http = http
        provider = OpenAIProvider(OpenAIConfig(base_url=upstream.base_url, api_key="sk-gateway-key"), services)
        target = Target("oa", "gpt-x")
        plain = make_call({"model": "alias", "messages": [{"role": "user", "content": "x"}]})
        await provider.chat({**plain.body, "model": "gpt-x"}, target, plain)
        assert upstream.headers[-1]["Authorization"] == "Bearer sk-gateway-key"

        own = make_call({"model": "alias", "messages": [{"role": "user", "content": "x"}]})
        own.stash_set(PROVIDER_KEYS, {"oa": "sk-project-own-key"})
        await provider.chat({**own.body, "model": "gpt-x"}, target, own)
        assert upstream.headers[-1]["Authorization"] == "Bearer sk-project-own-key"
        # the key is matched by provider instance name: another instance keeps the gateway key
        await provider.chat({**own.body, "model": "gpt-x"}, Target("other", "gpt-x"), own)
        assert upstream.headers[-1]["Authorization"] == "Bearer sk-gateway-key"
        assert "sk-project-own-key" not in repr(own.facts)
