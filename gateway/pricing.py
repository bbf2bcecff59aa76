"""Cost of a request in integer micro-dollars, from a per-model price table.

Prices are USD per 1M tokens; 1 USD = 1_000_000 micro-USD, so a price per 1M tokens
in USD equals micro-USD per token. Costs are rounded up per request to a whole
micro-dollar, so sums over many requests are exact integers.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Mapping

from .call import Usage

__all__ = ["Price", "Pricing", "micros_to_usd"]


@dataclass(frozen=True, slots=True)
class Price:
    input: Decimal  # USD per 1M input tokens
    output: Decimal  # USD per 1M output tokens
    cached_input: Decimal | None = None


class Pricing:
    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._prices: dict[str, Price] = {}
        for model, p in (table or {}).items():
            self._prices[model] = Price(
                Decimal(str(p.get("input", 0))),
                Decimal(str(p.get("output", 0))),
                Decimal(str(p["cached_input"])) if p.get("cached_input") is not None else None,
            )

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        p = self._prices.get(model)
        if p is None and "/" in model:  # "provider/model" falls back to the bare model name
            p = self._prices.get(model.split("/", 1)[1])
        return p

    def cost_micros(self, model: str | None, usage: Usage | None) -> int:
        if usage is None:
            return 0
        p = self.price(model)
        if p is None:
            return 0
        cached = min(usage.cached_tokens, usage.prompt_tokens) if p.cached_input is not None else 0
        total = (
            (usage.prompt_tokens - cached) * p.input
            + cached * (p.cached_input or Decimal(0))
            + usage.completion_tokens * p.output
        )
        return int(total.to_integral_value(rounding=ROUND_CEILING))

    def estimate_micros(self, model: str | None, prompt_tokens: int, max_output_tokens: int) -> int:
        """Upper bound for a request before it runs (budget reservations)."""
        return self.cost_micros(model, Usage(prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens))


def micros_to_usd(micros: int) -> str:
    return f"{Decimal(micros) / Decimal(1_000_000):.6f}"
