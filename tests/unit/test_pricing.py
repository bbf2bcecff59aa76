"""Money: integer micro-USD, exact sums, the packaged table and operator overrides."""
from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from gateway.call import Usage
from gateway.pricing import Pricing, count_tokens, micros_to_usd, usd_to_micros

ROOT = Path(__file__).resolve().parents[2]


def test_cost_of_10k_random_usages_sums_exactly_to_the_per_request_costs() -> None:
    pricing = Pricing.from_file(None)
    rng = random.Random(4)
    models = pricing.models
    total, reference = 0, 0
    for _ in range(10_000):
        model = rng.choice(models)
        u = Usage(prompt_tokens=rng.randint(0, 200_000), completion_tokens=rng.randint(0, 50_000),
                  cached_tokens=rng.randint(0, 50_000))
        cost = pricing.cost_micros(model, u)
        assert isinstance(cost, int)
        total += cost
        # independent exact computation with fractions, ceil per request
        p = pricing.price(model)
        cached = min(u.cached_tokens, u.prompt_tokens) if p.cached_input is not None else 0
        exact = (Fraction(str(p.input)) * (u.prompt_tokens - cached) + Fraction(str(p.cached_input or 0)) * cached
                 + Fraction(str(p.output)) * u.completion_tokens)
        reference += -(-exact.numerator // exact.denominator)
    assert total == reference


def test_known_prices_and_lookup_fallbacks() -> None:
    pricing = Pricing.from_file(None)
    u = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    assert pricing.cost_micros("gpt-4o", u) == 800 * 2.5 + 200 * 1.25 + 500 * 10
    assert pricing.cost_micros("gpt-4o-2024-08-06", u) == pricing.cost_micros("gpt-4o", u)  # dated id
    assert pricing.cost_micros("openai/gpt-4o", u) == pricing.cost_micros("gpt-4o", u)  # provider/model
    assert pricing.price("groq/openai/gpt-oss-120b") is not None
    assert pricing.cost_micros("gpt-4o-mini", Usage(1, 0)) == 1  # 0.15 micro rounds up to 1
    assert pricing.cost_micros("no-such-model", u) == 0
    for family in ("gpt-4.1", "claude-sonnet-4-5", "llama-3.3-70b-versatile", "gemini-2.5-flash", "deepseek-chat"):
        assert pricing.price(family) is not None, family


def test_operator_file_and_overrides_win_over_the_packaged_table(tmp_path: Path) -> None:
    f = tmp_path / "pricing.yaml"
    f.write_text("models:\n  gpt-4o: {input: 1.0, output: 2.0}\n  my-model: {input: 3, output: 4}\n")
    pricing = Pricing.from_file(f, {"my-model": {"output": 5}})
    assert pricing.cost_micros("gpt-4o", Usage(1_000_000, 0)) == 1_000_000
    assert pricing.cost_micros("my-model", Usage(0, 1_000_000)) == 5_000_000
    assert pricing.price("claude-haiku-4-5") is not None  # the rest of the packaged table remains


def test_config_copy_lists_the_same_prices_as_the_packaged_table() -> None:
    packaged = yaml.safe_load((ROOT / "gateway" / "pricing.yaml").read_text())["models"]
    operator = yaml.safe_load((ROOT / "config" / "pricing.yaml").read_text())["models"]
    assert operator == packaged


def test_bad_price_files_fail_with_the_model_named(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("models:\n  m: {input: 1, outptu: 2}\n")
    with pytest.raises(ValueError, match="models.m"):
        Pricing.from_file(f)
    f.write_text("models:\n  m: {input: 0.0000001, output: 0}\n")
    with pytest.raises(ValueError, match="6 decimals"):
        Pricing.from_file(f)


def test_usd_micros_round_trip_and_estimates_are_marked() -> None:
    assert usd_to_micros("12.50") == 12_500_000 and usd_to_micros(0.1) == 100_000
    assert micros_to_usd(1) == "0.000001"
    pricing = Pricing.from_file(None)
    u = pricing.estimate_usage("gpt-4o", "hello there, how are you?", "fine thanks", messages=1)
    assert u.estimated and u.prompt_tokens > 4 and u.completion_tokens > 0
    assert count_tokens("日本語") == 3  # one token per non-ASCII character (heuristic)
    assert count_tokens("abcd" * 10) == 10
