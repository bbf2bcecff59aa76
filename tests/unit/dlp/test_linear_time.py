"""No catastrophic backtracking: long adversarial inputs scan in time linear in their length."""
from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.middleware.dlp import BUILTIN, Scanner

SCANNER = Scanner(BUILTIN)

# Shapes that blow up backtracking engines on these patterns: long runs that almost match.
ADVERSARIAL = {
    "email_local_part": "a." * 50_000,
    "email_no_tld": ("x" * 60 + "@" + "y-" * 30) * 800,
    "digits_spaced": "1 " * 50_000,
    "digits_run": "4" * 100_000,
    "iban_like": "DE89 " + "A" * 100_000,
    "pem_unterminated": "-----BEGIN PRIVATE KEY-----" * 3_700,
    "jwt_dots": "eyJ" + "a" * 10 + "." * 100_000,
    "secret_assign": "password=" * 11_000,
    "ipv6_colons": ":" * 100_000,
    "hex_colons": "a:" * 50_000,
    "placeholder_like": "[EMAIL_" * 14_000,
}


def _time(text: str) -> float:
    t0 = time.perf_counter()
    SCANNER.scan(text)
    return time.perf_counter() - t0


def test_each_100kb_adversarial_input_scans_within_50ms():
    worst = {}
    for name, text in ADVERSARIAL.items():
        text = text[:100_000]
        worst[name] = min(_time(text) for _ in range(3)) * 1000
    print("\nadversarial 100 KB scan ms:", {k: round(v, 2) for k, v in worst.items()})
    assert max(worst.values()) <= 50, worst


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.text(alphabet="aA0@.-_ :+=/[]#\n", min_size=1, max_size=12))
def test_time_grows_linearly_with_input_length(unit: str):
    small = (unit * (10_000 // len(unit) + 1))[:10_000]
    large = (unit * (80_000 // len(unit) + 1))[:80_000]
    t_small = min(_time(small) for _ in range(3))
    t_large = min(_time(large) for _ in range(3))
    # 8x the input: allow 8x plus generous noise, never the quadratic 64x.
    assert t_large <= 16 * t_small + 0.005, (unit, t_small, t_large)
