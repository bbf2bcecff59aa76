"""DLP options (YAML) and the policy they compile to.

The YAML says which detectors run, what each one's action is, custom detectors,
whether responses are scanned and on which routes. A project may override part
of it through ``project.settings["dlp"]`` (same keys, see ``PolicyOverride``).
Everything is validated at start-up; an error names the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, get_args

import re2

from .detectors import BUILTIN, Detector, builtin_names, load_plugin_detectors
from .validators import VALIDATORS

__all__ = ["Action", "Route", "ACTIONS", "ROUTES", "CustomDetectorConfig", "DlpConfig", "PolicyOverride", "Policy",
           "build_policy", "all_detectors"]

Action = Literal["block", "redact", "mask", "log"]
Route = Literal["chat.completions", "completions", "embeddings"]
ACTIONS: tuple[str, ...] = get_args(Action)
ROUTES: tuple[str, ...] = get_args(Route)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")


@dataclass(frozen=True, kw_only=True)
class CustomDetectorConfig:
    name: str = field(metadata={"help": "detector name used in actions, metrics and events (lowercase, _)"})
    pattern: str = field(metadata={"help": "RE2 regular expression; group 1, if any, is the value"})
    validator: str | None = field(default=None, metadata={"help": "one of: " + ", ".join(sorted(VALIDATORS))})
    context: list[str] = field(default_factory=list, metadata={"help": "words, one of which must appear near the value"})
    context_window: int = 48
    label: str | None = field(default=None, metadata={"help": "placeholder label (default: NAME upper-cased)"})
    action: Action | None = None
    ignore_case: bool = False
    priority: int = 75

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"custom detector name {self.name!r}: use lowercase letters, digits and _")
        if self.name in builtin_names():
            raise ValueError(f"custom detector name {self.name!r} is a built-in detector")
        if self.validator is not None and self.validator not in VALIDATORS:
            raise ValueError(f"custom detector {self.name!r}: unknown validator {self.validator!r} "
                             f"(known: {', '.join(sorted(VALIDATORS))})")
        if self.label is not None and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,31}", self.label):
            raise ValueError(f"custom detector {self.name!r}: label must be UPPER_CASE (A-Z, 0-9, _)")
        if not 0 <= self.context_window <= 512:
            raise ValueError(f"custom detector {self.name!r}: context_window must be 0..512")
        try:
            re2.compile(("(?i)" if self.ignore_case else "") + self.pattern)
        except re2.error as exc:
            raise ValueError(f"custom detector {self.name!r}: pattern is not valid RE2 syntax ({exc})") from None

    def detector(self) -> Detector:
        return Detector(
            name=self.name, label=self.label or self.name.upper(), pattern=self.pattern,
            validator=VALIDATORS[self.validator] if self.validator else None,
            context=tuple(w.lower() for w in self.context), context_window=self.context_window,
            priority=self.priority, kind="custom", ignore_case=self.ignore_case,
        )


@dataclass(frozen=True, kw_only=True)
class DlpConfig:
    enabled: bool = True
    default_action: Action = field(default="mask", metadata={"help": "action for detectors not named in `actions`"})
    actions: dict[str, Action] = field(default_factory=dict, metadata={"help": "detector name -> block|redact|mask|log"})
    disabled: list[str] = field(default_factory=list, metadata={"help": "detector names that do not run"})
    custom: list[CustomDetectorConfig] = field(default_factory=list)
    scan_response: bool = field(default=False, metadata={"help": "also redact findings in model answers (streams too)"})
    routes: list[Route] = field(default_factory=lambda: list(ROUTES))
    stream_holdback: int = field(default=128, metadata={"help": "chars held back per stream to catch split values"})
    detector_plugins: bool = field(default=True, metadata={"help": "load detectors from watchllm.dlp_detectors"})
    events: bool = field(default=True, metadata={"help": "write one dlp_events row per finding (no value)"})

    def validate(self) -> None:
        names = {d.name for d in all_detectors(self)}
        unknown = sorted(k for k in [*self.actions, *self.disabled] if k not in names)
        if unknown:
            raise ValueError(f"unknown detector name(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        seen: set[str] = set()
        for c in self.custom:
            if c.name in seen:
                raise ValueError(f"custom detector {c.name!r} is declared twice")
            seen.add(c.name)
        if not 16 <= self.stream_holdback <= 4096:
            raise ValueError("stream_holdback must be between 16 and 4096 characters")


@dataclass(frozen=True, kw_only=True)
class PolicyOverride:
    """``project.settings["dlp"]``: lists replace the global ones; ``actions`` merges over them."""

    enabled: bool | None = None
    default_action: Action | None = None
    actions: dict[str, Action] = field(default_factory=dict)
    disabled: list[str] | None = None
    scan_response: bool | None = None
    routes: list[Route] | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    enabled: bool
    actions: dict[str, str]  # every *active* detector name -> its action
    scan_response: bool
    routes: frozenset[str]

    @property
    def active(self) -> frozenset[str]:
        return frozenset(self.actions)


def all_detectors(cfg: DlpConfig) -> list[Detector]:
    out = list(BUILTIN)
    if cfg.detector_plugins:
        out.extend(load_plugin_detectors())
    out.extend(c.detector() for c in cfg.custom)
    return out


def build_policy(cfg: DlpConfig, names: Iterable[str], override: PolicyOverride | None = None) -> Policy:
    custom_actions = {c.name: c.action for c in cfg.custom if c.action}
    actions = {**custom_actions, **cfg.actions}
    default, disabled = cfg.default_action, cfg.disabled
    enabled, scan_response, routes = cfg.enabled, cfg.scan_response, cfg.routes
    if override is not None:
        actions = {**actions, **override.actions}
        default = override.default_action or default
        disabled = override.disabled if override.disabled is not None else disabled
        enabled = override.enabled if override.enabled is not None else enabled
        scan_response = override.scan_response if override.scan_response is not None else scan_response
        routes = override.routes if override.routes is not None else routes
    off = set(disabled)
    return Policy(
        enabled=enabled,
        actions={n: actions.get(n, default) for n in dict.fromkeys(names) if n not in off},
        scan_response=scan_response,
        routes=frozenset(routes),
    )
