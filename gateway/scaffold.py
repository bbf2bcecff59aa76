'''``watchllm plugins new middleware|provider|tool NAME [--dir D]``: a plugin package to start from.

It writes ``watchllm-NAME/`` with a pyproject declaring the entry point, the plugin
class with a typed ``Config``, a test that uses ``gateway.testing``, and a README.
``pip install -e watchllm-NAME`` then makes ``NAME`` usable from YAML.
'''
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from string import Template

__all__ = ["main", "scaffold"]

GROUPS = {"middleware": "watchllm.middleware", "provider": "watchllm.providers", "tool": "watchllm.tools"}

PYPROJECT = Template('''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "watchllm-$dist"
version = "0.1.0"
description = "A WatchLLM $kind plugin: $name"
requires-python = ">=3.11"
dependencies = ["watchllm"]

[project.entry-points."$group"]
$name = "$module:$cls"

[tool.setuptools]
packages = ["$module"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
''')

MIDDLEWARE = Template('''"""$cls: a WatchLLM middleware. Enable it in the YAML pipeline, before `router`:

    pipeline:
      - $name: {header_value: "hello"}
      - router
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway import Call, Handler, Reply, Services


@dataclass(frozen=True, kw_only=True)
class ${cls}Config:
    header_name: str = field(default="x-$dist", metadata={"help": "response header to stamp"})
    header_value: str = "on"


class $cls:
    Config = ${cls}Config

    def __init__(self, config: ${cls}Config, services: Services) -> None:
        self.config = config
        self.log = services.log

    async def startup(self) -> None:  # optional: open clients, load models
        pass

    async def shutdown(self) -> None:  # optional: close what startup opened
        pass

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        call.reply_headers[self.config.header_name] = self.config.header_value  # also on short-circuits
        reply = await call_next(call)
        if reply.is_stream:
            reply.observe(lambda chunk: None)  # see each chunk as it passes, never buffer the stream
        return reply
''')

PROVIDER = Template('''"""$cls: a WatchLLM provider. Use it in the YAML:

    providers:
      $name: {type: $name}
    models:
      my-model: {targets: ["$name/echo-1"]}
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from gateway import Call, Services, Target
from gateway.chunks import completion_to_chunks, new_id


@dataclass(frozen=True, kw_only=True)
class ${cls}Config:
    prefix: str = "echo: "
    timeout: float = 30.0


class $cls:
    """Echoes the last user message. Replace the bodies with calls to your API (services.http)."""

    Config = ${cls}Config

    def __init__(self, config: ${cls}Config, services: Services) -> None:
        self.config = config
        self.services = services

    def _text(self, body: dict[str, Any]) -> str:
        for m in reversed(body.get("messages") or []):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                return self.config.prefix + m["content"]
        return self.config.prefix

    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        text = self._text(body)
        return {
            "id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": target.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
        }

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        for chunk in completion_to_chunks(await self.chat(body, target, call)):
            yield chunk

    async def completions(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        text = self.config.prefix + str(body.get("prompt") or "")
        return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": target.model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}

    async def completions_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        full = await self.completions(body, target, call)
        yield {**full, "choices": [{"index": 0, "text": full["choices"][0]["text"], "finish_reason": "stop"}]}

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(str(x)))]} for i, x in enumerate(inputs)]
        return {"object": "list", "data": data, "model": target.model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    async def list_models(self) -> list[str]:
        return ["echo-1"]
''')

TOOL = Template('''"""$cls: a WatchLLM server-side tool. Enable it and offer it to a model alias:

    tools:
      $name: {}
    models:
      my-agent: {targets: ["openai/gpt-4o-mini"], tools: [$name], max_tool_rounds: 3}
    pipeline: [tool_loop, router]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import Call, Services


@dataclass(frozen=True, kw_only=True)
class ${cls}Config:
    timeout: float = 5.0


class $cls:
    Config = ${cls}Config
    name = "$name"
    description = "Reverse a piece of text."
    parameters: dict[str, Any] = {  # checked by the gateway before every call
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 10000}},
        "required": ["text"],
        "additionalProperties": False,
    }

    def __init__(self, config: ${cls}Config, services: Services) -> None:
        self.timeout = config.timeout  # the gateway cancels a call that runs longer

    async def __call__(self, arguments: dict[str, Any], call: Call) -> str | dict[str, Any]:
        # call.project_id scopes anything the tool stores or counts to the caller's project
        return {"reversed": arguments["text"][::-1]}
''')

TESTS = {
    "middleware": Template('''from gateway.testing import ScriptedNext, drive, make_call, make_services

from $module import $cls


async def test_stamps_the_header_and_passes_the_answer_through():
    mw = $cls($cls.Config(header_value="yes"), make_services())
    call = make_call({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    out = await drive(await mw(call, ScriptedNext(text="hello")), call)
    assert call.reply_headers["x-$dist"] == "yes"
    assert out.outcome.ok and out.text == "hello"


async def test_streams_pass_through_unbuffered():
    mw = $cls($cls.Config(), make_services())
    call = make_call({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    out = await drive(await mw(call, ScriptedNext(text="hello there")), call)
    assert out.text == "hello there" and len(out.chunks) > 1


def test_is_registered_as_an_entry_point():
    from gateway import registry

    registry.refresh()
    assert registry.load("middleware", "$name") is $cls
'''),
    "provider": Template('''from gateway import Target
from gateway.chunks import ChunkAccumulator
from gateway.testing import make_call, make_services

from $module import $cls


async def test_chat_and_stream_agree():
    p = $cls($cls.Config(), make_services())
    body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    target = Target("$name", "echo-1")
    full = await p.chat(body, target, make_call(body))
    acc = ChunkAccumulator().extend([c async for c in p.chat_stream(body, target, make_call(body))])
    assert full["choices"][0]["message"]["content"] == "echo: hi"
    assert acc.completion()["choices"][0]["message"]["content"] == "echo: hi"


def test_is_registered_as_an_entry_point():
    from gateway import registry

    registry.refresh()
    assert registry.load("provider", "$name") is $cls
'''),
    "tool": Template('''from gateway.testing import make_call, make_services

from $module import $cls


async def test_reverses_text():
    tool = $cls($cls.Config(), make_services())
    assert await tool({"text": "abc"}, make_call({"model": "m", "messages": []})) == {"reversed": "cba"}
    assert tool.parameters["required"] == ["text"] and tool.timeout > 0


def test_is_registered_as_an_entry_point():
    from gateway import registry

    registry.refresh()
    assert registry.load("tool", "$name") is $cls
'''),
}

README = Template('''# watchllm-$dist

A WatchLLM $kind plugin (`$name`), generated by `watchllm plugins new $kind $name`.

    pip install -e .          # registers the `$group` entry point `$name`
    python -m pytest tests    # runs its tests with gateway.testing
    watchllm plugins list     # shows it

See docs/plugins.md in the WatchLLM repository for the contract.
''')

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def scaffold(kind: str, name: str, directory: str | Path = ".") -> Path:
    """Write the package; return its root. Refuses to overwrite an existing directory."""
    if kind not in GROUPS:
        raise ValueError(f"kind must be one of {', '.join(GROUPS)}")
    if not _NAME.match(name):
        raise ValueError(f"name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    dist = name.replace("_", "-")
    module = f"watchllm_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    root = Path(directory) / f"watchllm-{dist}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    subs = {"name": name, "dist": dist, "module": module, "cls": cls, "kind": kind, "group": GROUPS[kind]}
    body = {"middleware": MIDDLEWARE, "provider": PROVIDER, "tool": TOOL}[kind]
    files = {
        "pyproject.toml": PYPROJECT,
        f"{module}/__init__.py": body,
        f"tests/test_{name}.py": TESTS[kind],
        "README.md": README,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(subs))
    return root


def main(args: argparse.Namespace) -> int:
    try:
        root = scaffold(args.kind, args.name, getattr(args, "dir", ".") or ".")
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}\n  pip install -e {root}\n  python -m pytest {root / 'tests'}")
    return 0
