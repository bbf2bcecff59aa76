"""Validators: cheap checks that turn a regex candidate into a finding.

Each validator takes the candidate value (a ``str``) and returns True when it is
the real thing. They run only on regex candidates, never on the whole prompt, and
each is O(len(value)), so the scan stays linear. Custom detectors name one of
these in YAML (``validator: luhn``); ``VALIDATORS`` is that registry.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import math
from typing import Callable

__all__ = [
    "VALIDATORS", "luhn", "card", "iban", "ssn", "ipv4", "ipv6", "jwt", "entropy", "shannon_entropy",
    "secret_value", "nanp_phone", "phone_digits", "birth_date", "mixed_secret",
]

Validator = Callable[[str], bool]


def _digits(value: str) -> str:
    return "".join(c for c in value if "0" <= c <= "9")


def luhn(value: str) -> bool:
    """The Luhn mod-10 checksum over the digits of ``value`` (separators ignored)."""
    digits = _digits(value)
    if len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN ranges) and the lengths each network issues: a Luhn-valid
# 16-digit order number is not a card unless it also starts like one.
def card_network_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)  # Visa
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # Amex
    if d.startswith("6011") or two == 65 or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19  # Discover
    if two == 35:
        return 16 <= n <= 19  # JCB
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19  # Diners Club
    if two == 62:
        return 16 <= n <= 19  # UnionPay
    if two in (50, 56, 57, 58) or d[0] == "6":
        return 12 <= n <= 19  # Maestro
    return False


def card(value: str) -> bool:
    """A payment card: a known issuer prefix, a length that issuer uses, Luhn-valid, consistent grouping."""
    d = _digits(value)
    if not 13 <= len(d) <= 19 or len(set(d)) == 1:
        return False
    seps = {c for c in value if not c.isdigit()}
    if len(seps) > 1:  # "4111 1111-1111 1111" mixes separators: not how cards are written
        return False
    return card_network_ok(d) and luhn(d)


# ISO 13616 lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban(value: str) -> bool:
    """ISO 13616: the country's length and mod-97 == 1 over the rearranged number."""
    s = value.replace(" ", "").upper()
    if IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    remainder = 0
    for ch in rearranged:  # streaming mod-97 keeps every intermediate small
        if "0" <= ch <= "9":
            remainder = (remainder * 10 + ord(ch) - 48) % 97
        elif "A" <= ch <= "Z":
            remainder = (remainder * 100 + ord(ch) - 55) % 97
        else:
            return False
    return remainder == 1


_SSN_NEVER_ISSUED = frozenset({"078051120", "219099999", "123456789"})  # advertising and sample numbers


def ssn(value: str) -> bool:
    """US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000; not a published sample."""
    d = _digits(value)
    if len(d) != 9 or d in _SSN_NEVER_ISSUED:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def ipv4(value: str) -> bool:
    parts = value.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == "0") or int(p) > 255:
            return False
    return True


def ipv6(value: str) -> bool:
    if value.count(":") < 2 or len(value) < 6 or ":::" in value or value.count("::") > 1:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _b64url_json(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None


def jwt(value: str) -> bool:
    """Three base64url parts whose header decodes to a JSON object naming ``alg`` or ``typ``."""
    parts = value.split(".")
    if len(parts) != 3:
        return False
    header = _b64url_json(parts[0])
    return header is not None and header[:1] == b"{" and (b'"alg"' in header or b'"typ"' in header)


def shannon_entropy(value: str) -> float:
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def entropy(value: str) -> bool:
    """High entropy for its length: random tokens, not words (≥ 3.0 bits/char and ≥ 8 chars)."""
    return len(value) >= 8 and shannon_entropy(value) >= 3.0


def _classes(value: str) -> int:
    return (any(c.islower() for c in value) + any(c.isupper() for c in value)
            + any(c.isdigit() for c in value) + any(not c.isalnum() for c in value))


_PLACEHOLDER_WORDS = ("your", "example", "changeme", "change_me", "change-me", "placeholder", "redacted", "xxxx", "****",
                      "dummy", "todo", "insert", "replace", "<", "...")
_TEMPLATE_STARTS = ("${", "{{", "{%", "%(", "$(", "process.env", "os.environ", "env.", "env[", "getenv", "vault:", "secrets.")


def _is_code(value: str) -> bool:
    """``getpass()``, ``config['x']``, ``settings.DB_PASSWORD``: a reference to a secret, not one."""
    i = 0
    while i < len(value) and (value[i].isalnum() or value[i] in "_."):
        i += 1
    if i == 0 or value[0].isdigit():
        return False
    if i == len(value):  # a bare name: dotted (settings.key) or digit-free (MY_API_KEY) is a reference
        return "." in value or value.replace("_", "").isalpha()
    return (value[i] == "(" and value.endswith(")")) or (value[i] == "[" and value.endswith("]"))


def secret_value(value: str) -> bool:
    """The right-hand side of ``password=``/``api_key=`` that looks like a real credential.

    Rejects code and templates (``os.environ[...]``, ``${X}``, ``getpass()``), identifiers
    (``API_KEY``, ``settings.token``), placeholders (``YOUR_KEY_HERE``, ``xxxx``) and
    low-entropy words; keeps anything with three character classes and ≥ 2.5 bits/char.
    """
    if len(value) < 8 or len(value) > 512:
        return False
    low = value.lower()
    if low.startswith(_TEMPLATE_STARTS) or any(w in low for w in _PLACEHOLDER_WORDS) or _is_code(value):
        return False
    return _classes(value) >= 3 and shannon_entropy(value) >= 2.5


def mixed_secret(value: str) -> bool:
    """A random base64/alnum token: lower, upper and digits present, ≥ 3.5 bits/char (a git SHA is not)."""
    return (any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
            and shannon_entropy(value) >= 3.5)


def nanp_phone(value: str) -> bool:
    """North American numbers: area code and exchange start with 2-9, not N11, not 555-01xx fiction."""
    d = _digits(value.split("x")[0].split("ext")[0])
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    elif len(d) == 13 and d.startswith("001"):
        d = d[3:]
    if len(d) != 10:
        return False
    area, exch = d[:3], d[3:6]
    return area[0] not in "01" and exch[0] not in "01" and area[1:] != "11" and exch[1:] != "11"


def phone_digits(value: str) -> bool:
    """International and trunk-prefixed national numbers: 8–15 digits (E.164), not all one digit."""
    d = _digits(value)
    return 8 <= len(d) <= 15 and len(set(d)) > 2


_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}


def birth_date(value: str) -> bool:
    """A real calendar date between 1900 and today (ISO, US, European or written-out month)."""
    v = value.strip().replace(",", " ")
    y = m = d = 0
    try:
        if v[:4].isdigit() and len(v) >= 8 and v[4] in "-/.":
            y, m, d = (int(x) for x in v.replace("/", "-").replace(".", "-").split("-"))
        elif v[0].isdigit() and any(c.isalpha() for c in v):
            day, mon, year = v.split()[:3]
            y, m, d = int(year), _MONTHS[mon[:3].lower()], int(day.rstrip("stndrh"))
        elif v[0].isalpha():
            mon, day, year = v.split()[:3]
            y, m, d = int(year), _MONTHS[mon[:3].lower()], int(day.rstrip("stndrh"))
        else:
            a, b, y = (int(x) for x in v.replace("/", "-").replace(".", "-").split("-"))
            m, d = (a, b) if a <= 12 and not ("." in v) else (b, a)  # dots: European day.month.year
            if m > 12:
                m, d = d, m
        date = _dt.date(y, m, d)
    except (ValueError, KeyError, IndexError):
        return False
    return 1900 <= date.year and date <= _dt.date.today()


VALIDATORS: dict[str, Validator] = {
    "luhn": luhn,
    "card": card,
    "iban": iban,
    "mod97": iban,
    "ssn": ssn,
    "ipv4": ipv4,
    "ipv6": ipv6,
    "jwt": jwt,
    "entropy": entropy,
    "secret_value": secret_value,
    "mixed_secret": mixed_secret,
    "nanp_phone": nanp_phone,
    "phone_digits": phone_digits,
    "birth_date": birth_date,
}
