"""Entry-point discovery for the three plugin groups.

Built-in plugins are declared in pyproject.toml exactly like a third-party
package's, so there is one loading path. Only the names a config uses are
imported (``load``); ``listing`` imports nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["GROUPS", "PluginNotFound", "available", "load", "listing", "PluginInfo"]

GROUPS = {
    "middleware": "watchllm.middleware",
    "provider": "watchllm.providers",
    "tool": "watchllm.tools",
}


class PluginNotFound(LookupError):
    def __init__(self, kind: str, name: str, installed: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r} (installed: {', '.join(installed) or 'none'})")
        self.kind, self.name, self.installed = kind, name, installed


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    target: str
    package: str
    version: str


@lru_cache(maxsize=None)
def available(kind: str) -> dict[str, EntryPoint]:
    eps = entry_points(group=GROUPS[kind])
    return {ep.name: ep for ep in eps}


def refresh() -> None:
    """Forget cached discovery (after installing a plugin package in-process, e.g. in tests)."""
    available.cache_clear()


def load(kind: str, name: str) -> Any:
    eps = available(kind)
    ep = eps.get(name)
    if ep is None:
        raise PluginNotFound(kind, name, sorted(eps))
    return ep.load()


def listing() -> list[PluginInfo]:
    out: list[PluginInfo] = []
    for kind in GROUPS:
        for name, ep in sorted(available(kind).items()):
            dist = ep.dist
            out.append(
                PluginInfo(kind, name, ep.value, dist.metadata["Name"] if dist else "?", dist.version if dist else "?")
            )
    return out
