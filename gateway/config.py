"""YAML → validated, typed Config. ``${ENV}`` and ``${ENV:-default}`` interpolation.

Every problem stops start-up with a message naming the file and the key, e.g.
``config/gateway.yaml: pipeline[2].ratelimit.rpm: expected an integer, got string '600/min'``.
Plugin options are validated against each plugin's ``Config`` dataclass.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from . import netguard, registry
from .call import Target
from .schema import SchemaError, convert

__all__ = ["Config", "ConfigError", "load_config", "parse_config", "ServerConfig", "ModelConfig", "PluginEntry"]


class ConfigError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = field(default=1, metadata={"help": "worker processes sharing the port (SO_REUSEPORT)"})
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata={"help": "413 above this"})
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 128
    header_read_timeout: float = field(default=10.0, metadata={"help": "drop clients slower than this to send headers"})
    keepalive_timeout: float = 75.0
    shutdown_timeout: float = field(default=30.0, metadata={"help": "drain window on SIGTERM"})
    request_timeout: float = field(default=600.0, metadata={"help": "upper bound for one client request"})
    max_in_flight: int = field(default=1024, metadata={"help": "proxied requests in flight before new ones get 503 at once"})
    body_fields: bool = field(default=False, metadata={"help": "also put x_watchllm fields in JSON bodies"})
    access_log: bool = False
    fast_front: bool = field(default=True, metadata={"help": "serve the proxied routes (POST /v1/chat/completions, /v1/completions, /v1/embeddings) with the lean llhttp front; false: aiohttp serves every request"})
    admin_enabled: bool = True
    gc_freeze: bool = field(default=True, metadata={"help": "after start-up, freeze start-up objects out of the cyclic GC and collect young objects less often (less CPU per request)"})

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    url: str = "sqlite:///./data/watchllm.db"


@dataclass(frozen=True, kw_only=True)
class StateConfig:
    url: str = "memory://"
    timeout: float = field(default=0.05, metadata={"help": "seconds per Redis operation before the fail mode applies"})
    max_connections: int = field(default=64, metadata={"help": "unused: each worker pipelines its Redis calls on one connection"})


@dataclass(frozen=True, kw_only=True)
class PricingConfig:
    file: str | None = field(default=None, metadata={"help": "operator price file over the packaged table (config/pricing.yaml)"})
    models: dict[str, dict[str, float]] = field(
        default_factory=dict, metadata={"help": "per-model overrides: {model: {input, output, cached_input}} in USD per 1M tokens"}
    )


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    target: str
    weight: float = 1.0
    timeout: float | None = None
    max_in_flight: int | None = None
    rpm: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One model alias: where its requests may go and how the router chooses."""

    targets: list[Target]
    strategy: Literal["weighted", "round_robin", "least_busy", "latency", "fallback"] = "weighted"
    fallbacks: list[str] = field(default_factory=list)
    context_window_fallbacks: list[str] = field(default_factory=list)
    timeout: float | None = None
    deadline: float | None = None
    max_attempts: int = 3
    tools: list[str] = field(default_factory=list)
    max_tool_rounds: int = 5
    description: str = ""


@dataclass(frozen=True)
class PluginEntry:
    """A configured plugin: its YAML name, the loaded class and its validated options."""

    name: str
    cls: Any
    options: Any
    kind: str = "middleware"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Config:
    source: str
    server: ServerConfig
    store: StoreConfig
    state: StateConfig
    pricing: PricingConfig
    providers: dict[str, PluginEntry]
    models: dict[str, ModelConfig]
    pipeline: list[PluginEntry]
    tools: dict[str, PluginEntry]
    raw: dict[str, Any]
    disabled_providers: list[str] = field(default_factory=list)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_SECTIONS = ("server", "store", "state", "pricing", "providers", "models", "pipeline", "tools")


def _interpolate(node: Any, path: str, env: dict[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        return ""

    whole = _ENV.fullmatch(node)
    out = _ENV.sub(sub, node)
    if whole and out != "":
        # A scalar that is one variable keeps YAML typing: "${PORT:-8787}" is the integer 8787.
        try:
            typed = yaml.safe_load(out)
        except yaml.YAMLError:
            return out
        if isinstance(typed, (int, float, bool)):
            return typed
    return out


def _target(value: Any, path: str, problems: list[str]) -> Target | None:
    if isinstance(value, str):
        value = {"target": value}
    try:
        tc: TargetConfig = convert(TargetConfig, value, path)
    except SchemaError as exc:
        problems.extend(exc.problems)
        return None
    provider, sep, model = tc.target.partition("/")
    if not sep or not provider or not model:
        problems.append(f"{path}: expected 'provider/model', got {tc.target!r}")
        return None
    if tc.weight < 0:
        problems.append(f"{path}.weight: must be >= 0")
    return Target(provider, model, tc.weight, tc.timeout, tc.max_in_flight, tc.rpm)


def _plugin(kind: str, name: str, options: Any, path: str, problems: list[str]) -> PluginEntry | None:
    try:
        cls = registry.load(kind, name)
    except registry.PluginNotFound as exc:
        problems.append(f"{path}: {exc}")
        return None
    except Exception as exc:  # a plugin that fails to import is a config problem too
        problems.append(f"{path}: {kind} {name!r} failed to load: {type(exc).__name__}: {exc}")
        return None
    schema = getattr(cls, "Config", None)
    if schema is None:
        if options not in (None, {}):
            problems.append(f"{path}: {kind} {name!r} takes no options")
        return PluginEntry(name, cls, None, kind)
    try:
        return PluginEntry(name, cls, convert(schema, options or {}, path), kind)
    except SchemaError as exc:
        problems.extend(exc.problems)
        return None


def parse_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping of sections"])
    data = _interpolate(data, "", dict(os.environ) if env is None else env, problems)
    for key in data:
        if key not in _SECTIONS:
            problems.append(f"{key}: unknown section (known: {', '.join(_SECTIONS)})")

    def section(tp: Any, key: str) -> Any:
        try:
            return convert(tp, data.get(key) or {}, key)
        except SchemaError as exc:
            problems.extend(exc.problems)
            return tp()

    server = section(ServerConfig, "server")
    store = section(StoreConfig, "store")
    state = section(StateConfig, "state")
    pricing = section(PricingConfig, "pricing")
    if pricing.file is not None and not os.path.exists(pricing.file):
        problems.append(f"pricing.file: no such file {pricing.file!r}")

    providers: dict[str, PluginEntry] = {}
    disabled: list[str] = []
    raw_providers = data.get("providers") or {}
    if not isinstance(raw_providers, dict):
        problems.append("providers: expected a mapping of name → {type: ..., options}")
        raw_providers = {}
    for pname, spec in raw_providers.items():
        path = f"providers.{pname}"
        if "/" in str(pname):
            problems.append(f"{path}: provider names may not contain '/'")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{path}: expected a mapping with at least `type`")
            continue
        spec = dict(spec)
        ptype = spec.pop("type", pname)
        optional = spec.pop("optional", False)
        allow_private = spec.pop("allow_private", False)  # SSRF allow-list for a local upstream (gateway/netguard.py)
        if not isinstance(allow_private, bool):
            problems.append(f"{path}.allow_private: expected a boolean, got {allow_private!r}")
            allow_private = False
        if not isinstance(optional, bool):
            problems.append(f"{path}.optional: expected a boolean, got {optional!r}")
        if getattr(_safe_load("provider", ptype), "requires_api_key", False) and not spec.get("api_key"):
            if optional:
                disabled.append(str(pname))
                continue
            problems.append(f"{path}.api_key: provider {ptype!r} needs an API key (set it, or mark the provider `optional: true`)")
            continue
        entry = _plugin("provider", str(ptype), spec, path, problems)
        if entry:
            ssrf = netguard.check_provider(path, entry.options, allow_private)
            if ssrf:
                problems.extend(ssrf)
                continue
            providers[str(pname)] = PluginEntry(str(pname), entry.cls, entry.options, "provider", {"type": ptype, "allow_private": allow_private})

    models: dict[str, ModelConfig] = {}
    raw_models = data.get("models") or {}
    if not isinstance(raw_models, dict):
        problems.append("models: expected a mapping of alias → {targets: [...]}")
        raw_models = {}
    for alias, spec in raw_models.items():
        path = f"models.{alias}"
        if isinstance(spec, (str, list)):
            spec = {"targets": spec if isinstance(spec, list) else [spec]}
        if not isinstance(spec, dict):
            problems.append(f"{path}: expected a mapping with `targets`")
            continue
        spec = dict(spec)
        raw_targets = spec.pop("targets", None)
        if not isinstance(raw_targets, list) or not raw_targets:
            problems.append(f"{path}.targets: expected a non-empty list of 'provider/model'")
            continue
        targets = [_target(t, f"{path}.targets[{i}]", problems) for i, t in enumerate(raw_targets)]
        live = [t for t in targets if t is not None and t.provider not in disabled]
        for i, t in enumerate(targets):
            if t is not None and t.provider not in providers and t.provider not in disabled:
                problems.append(f"{path}.targets[{i}]: unknown provider {t.provider!r} (configured: {', '.join(providers) or 'none'})")
        if not live:
            continue  # every target's provider is optional and disabled: the alias is dropped
        try:
            models[str(alias)] = convert(ModelConfig, {**spec, "targets": []}, path)
            models[str(alias)] = _replace_targets(models[str(alias)], live)
        except SchemaError as exc:
            problems.extend(exc.problems)
    for alias, mc in models.items():
        for i, fb in enumerate(mc.fallbacks):
            if fb not in raw_models:
                problems.append(f"models.{alias}.fallbacks[{i}]: unknown model alias {fb!r}")

    pipeline: list[PluginEntry] = []
    raw_pipeline = data.get("pipeline") or []
    if not isinstance(raw_pipeline, list):
        problems.append("pipeline: expected a list of middleware names")
        raw_pipeline = []
    seen: set[str] = set()
    for i, item in enumerate(raw_pipeline):
        path = f"pipeline[{i}]"
        if isinstance(item, str):
            name, options = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
        else:
            problems.append(f"{path}: expected a middleware name or a one-key mapping {{name: options}}")
            continue
        if name in seen:
            problems.append(f"{path}: middleware {name!r} listed twice")
        seen.add(name)
        entry = _plugin("middleware", str(name), options, f"{path}.{name}", problems)
        if entry:
            pipeline.append(entry)

    tools: dict[str, PluginEntry] = {}
    raw_tools = data.get("tools") or {}
    if not isinstance(raw_tools, dict):
        problems.append("tools: expected a mapping of tool name → options")
        raw_tools = {}
    for tname, options in raw_tools.items():
        entry = _plugin("tool", str(tname), options, f"tools.{tname}", problems)
        if entry:
            tools[str(tname)] = entry
    for alias, mc in models.items():
        for i, t in enumerate(mc.tools):
            if t not in tools:
                problems.append(f"models.{alias}.tools[{i}]: tool {t!r} is not enabled under `tools:`")

    if problems:
        raise ConfigError(source, problems)
    return Config(
        source=source,
        server=server,
        store=store,
        state=state,
        pricing=pricing,
        providers=providers,
        models=models,
        pipeline=pipeline,
        tools=tools,
        raw=data,
        disabled_providers=disabled,
    )


def _safe_load(kind: str, name: Any) -> Any:
    try:
        return registry.load(kind, str(name))
    except Exception:
        return None  # reported by _plugin with the path


def _replace_targets(mc: ModelConfig, targets: list[Target]) -> ModelConfig:
    from dataclasses import replace

    return replace(mc, targets=targets)


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, source, env)
