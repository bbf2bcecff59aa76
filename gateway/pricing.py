"""Cost of a request in integer micro-dollars, from a per-model price table.

Prices are USD per 1M tokens; 1 USD = 1_000_000 micro-USD, so a price per 1M tokens
in USD equals micro-USD per token. Internally each price is an integer:
micro-USD per token scaled by ``SCALE`` (10^6), so a cost is
``ceil(sum(tokens * rate) / SCALE)`` in pure integer arithmetic. Costs are rounded up
per request to a whole micro-dollar; sums over many requests are exact integers.

The table: ``gateway/pricing.yaml`` (packaged); ``Pricing.from_file(path)`` loads an
operator file (``config/pricing.yaml``) over it, and ``overrides`` over both.

Token counts when a provider reports no usage: ``count_tokens`` uses tiktoken when its
BPE file is already cached locally (tiktoken downloads it on first use, and this
gateway must not reach the internet from the hot path); otherwise a documented
heuristic: ceil(ASCII characters / 4) + one token per non-ASCII character, plus 4
tokens per chat message. Either way the ``Usage`` is marked ``estimated=True``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .call import Call, StashKey, Usage

__all__ = ["Price", "Pricing", "micros_to_usd", "usd_to_micros", "count_tokens", "prompt_tokens", "SCALE"]

SCALE = 1_000_000  # rates are micro-USD per token × SCALE, i.e. exact to 1e-12 USD per token


def _rate(value: Any) -> int:
    """USD per 1M tokens → integer micro-USD per token × SCALE (exact for ≤ 6 decimals)."""
    d = Decimal(str(value)) * SCALE
    if d != d.to_integral_value():
        raise ValueError(f"price {value!r} has more than 6 decimals")
    if d < 0:
        raise ValueError(f"price {value!r} is negative")
    return int(d)


@dataclass(frozen=True, slots=True)
class Price:
    input: Decimal  # USD per 1M input tokens
    output: Decimal  # USD per 1M output tokens
    cached_input: Decimal | None = None
    r_in: int = 0
    r_out: int = 0
    r_cached: int | None = None

    @classmethod
    def of(cls, p: Mapping[str, Any]) -> "Price":
        cached = p.get("cached_input")
        return cls(
            Decimal(str(p.get("input", 0))), Decimal(str(p.get("output", 0))),
            Decimal(str(cached)) if cached is not None else None,
            _rate(p.get("input", 0)), _rate(p.get("output", 0)), _rate(cached) if cached is not None else None,
        )


class Pricing:
    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._prices: dict[str, Price] = {model: Price.of(p) for model, p in (table or {}).items()}
        self._lookup: dict[str, Price | None] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None) -> "Pricing":
        """The packaged table, then ``path`` (an operator file) over it, then ``overrides``."""
        table = dict(_read(resources.files("gateway").joinpath("pricing.yaml").read_text(), "gateway/pricing.yaml"))
        if path is not None:
            table.update(_read(Path(path).read_text(), str(path)))
        for model, p in (overrides or {}).items():
            table[model] = {**table.get(model, {}), **p}
        return cls(table)

    @property
    def models(self) -> list[str]:
        return sorted(self._prices)

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        try:
            return self._lookup[model]
        except KeyError:
            pass
        p = self._find(model)
        if len(self._lookup) < 10_000:  # bounded: model names come from clients
            self._lookup[model] = p
        return p

    def _find(self, model: str) -> Price | None:
        p = self._prices.get(model)
        if p is None and "/" in model:  # "provider/model" falls back to the bare model name
            return self._find(model.split("/", 1)[1])
        if p is None:  # a dated or suffixed version: the longest table id it starts with
            best = max((m for m in self._prices if model.startswith(m + "-")), key=len, default=None)
            p = self._prices[best] if best else None
        return p

    def cost_micros(self, model: str | None, usage: Usage | None) -> int:
        if usage is None:
            return 0
        p = self.price(model)
        if p is None:
            return 0
        prompt = max(0, usage.prompt_tokens)
        cached = min(max(0, usage.cached_tokens), prompt) if p.r_cached is not None else 0
        scaled = (prompt - cached) * p.r_in + cached * (p.r_cached or 0) + max(0, usage.completion_tokens) * p.r_out
        return -(-scaled // SCALE)  # ceil

    def estimate_micros(self, model: str | None, prompt_tokens: int, max_output_tokens: int) -> int:
        """Upper bound for a request before it runs (budget reservations)."""
        p = self.price(model)
        if p is None:
            return 0
        return -(-(max(0, prompt_tokens) * p.r_in + max(0, max_output_tokens) * p.r_out) // SCALE)  # ceil

    def max_price_micros(self, models: list[str], prompt_tokens: int, max_output_tokens: int) -> int:
        """The highest estimate over several candidate models (an alias's targets)."""
        if len(models) == 1:
            return self.estimate_micros(models[0], prompt_tokens, max_output_tokens)
        return max((self.estimate_micros(m, prompt_tokens, max_output_tokens) for m in models), default=0)

    def estimate_usage(self, model: str | None, prompt: str, completion: str, *, messages: int = 0) -> Usage:
        """A usage counted locally when the provider reported none (``estimated=True``)."""
        pt = count_tokens(prompt, model) + 4 * messages
        ct = count_tokens(completion, model)
        return Usage(prompt_tokens=pt, completion_tokens=ct, total_tokens=pt + ct, estimated=True)


def _read(text: str, source: str) -> dict[str, Mapping[str, Any]]:
    data = yaml.safe_load(text) or {}
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError(f"{source}: expected a mapping `models: {{name: {{input, output, cached_input}}}}`")
    out: dict[str, Mapping[str, Any]] = {}
    for name, p in models.items():
        if name == "version":
            continue
        if not isinstance(p, dict) or not set(p) <= {"input", "output", "cached_input"}:
            raise ValueError(f"{source}: models.{name}: expected {{input, output[, cached_input]}} in USD per 1M tokens")
        try:
            Price.of(p)
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(f"{source}: models.{name}: {exc}") from None
        out[str(name)] = p
    return out


# token counting ----------------------------------------------------------------
_BPE_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_encoders: dict[str, Any] = {}


def _tiktoken_encoder(model: str | None) -> Any:
    """A tiktoken encoder for an OpenAI model, only if its BPE file is cached locally."""
    if not model:
        return None
    model = model.rsplit("/", 1)[-1]
    if model in _encoders:
        return _encoders[model]
    enc = None
    try:
        import tiktoken

        name = tiktoken.encoding_name_for_model(model)
        cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") \
            or os.path.join(tempfile.gettempdir(), "data-gym-cache")
        url = _BPE_URLS.get(name)
        if url and os.path.exists(os.path.join(cache, hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest())):
            enc = tiktoken.get_encoding(name)
    except Exception:  # not an OpenAI model, tiktoken missing, unreadable cache: heuristic
        enc = None
    if len(_encoders) < 1000:
        _encoders[model] = enc
    return enc


_PROMPT_TOKENS: StashKey[int] = StashKey("prompt_tokens")


def prompt_tokens(call: Call) -> int:
    """Tokens of the call's prompt, counted once per call and shared by the layers that need it
    (rate limit TPM, budget estimate). Computed on the body as first seen (before DLP masking)."""
    n = call.stash_get(_PROMPT_TOKENS)
    if n is None:
        n = count_tokens(call.prompt_text(), call.model)
        call.stash_set(_PROMPT_TOKENS, n)
    return n


def count_tokens(text: str, model: str | None = None) -> int:
    if not text:
        return 0
    enc = _tiktoken_encoder(model)
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    non_ascii = sum(1 for ch in text if ord(ch) > 127) if not text.isascii() else 0
    return -(-(len(text) - non_ascii) // 4) + non_ascii


def micros_to_usd(micros: int) -> str:
    """Exact decimal dollars with 6 places (integer arithmetic: it is on every response)."""
    m = int(micros)
    if m == 0:
        return "0.000000"  # cache hits, errors, free models
    sign = "-" if m < 0 else ""
    whole, frac = divmod(abs(m), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def usd_to_micros(usd: Any) -> int:
    """A USD amount from config ("12.50", 12.5) → integer micro-USD, exact to the micro."""
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value())
