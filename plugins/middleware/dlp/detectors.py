"""The detector catalogue: what counts as sensitive, as data.

A ``Detector`` is a name (what policies and metrics call it), a placeholder label
(``EMAIL`` → ``[EMAIL_1]``), an RE2 pattern, and optional checks that turn a regex
candidate into a finding: a validator (Luhn, mod-97, ...), context words that must
appear near the value, and a refiner that trims an over-long candidate.

Every pattern is RE2 syntax (no look-around, no back-references), so matching is
linear in the input whatever it holds. Several entries may share a name (``phone``
has three shapes); policy applies to the name.

Third-party packages add detectors through the ``watchllm.dlp_detectors``
entry-point group: the target is a ``Detector``, a list of them, or a zero-argument
callable returning either.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Iterable

from . import validators as v

__all__ = ["Detector", "BUILTIN", "builtin_names", "load_plugin_detectors", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "watchllm.dlp_detectors"
log = logging.getLogger("watchllm.dlp")


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    label: str
    pattern: str
    validator: Callable[[str], bool] | None = None
    context: tuple[str, ...] = ()  # lowercase; one must occur within ``context_window`` chars of the value
    context_window: int = 48
    priority: int = 50  # the higher wins when two findings overlap
    kind: str = "pii"  # "pii" | "secret" | "custom"
    refine: Callable[[str], int] | None = None  # candidate -> length of the real value (0: none)
    isolated: bool = False  # reject when glued to a letter/digit or a joiner followed by one (1.2.3.4.5)
    anti_context: tuple[str, ...] = ()  # lowercase; any of these just before the value rejects it ("order #")
    unchained: bool = False  # reject when the previous word, one space or dash away, holds a digit ("Q284 3654 ...")
    ignore_case: bool = False


def _card_refine(value: str) -> int:
    """Greedy candidates can swallow a following group ("4111 1111 1111 1111 123", a CVV): retry without it,
    but only when the whole candidate could not be a card by itself, so a Luhn-invalid number never
    turns into a finding by dropping its last group."""
    if v.card(value):
        return len(value)
    digits = sum(c.isdigit() for c in value)
    if digits in _card_lengths(value):
        return 0
    for i in range(len(value) - 1, 0, -1):
        if value[i] in " -" and v.card(value[:i]):
            return i
    return 0


def _card_lengths(value: str) -> tuple[int, ...]:
    d = "".join(c for c in value if c.isdigit())
    return tuple(n for n in range(13, 20) if v.card_network_ok(d[:n].ljust(n, "0")))


def _iban_refine(value: str) -> int:
    """Cut the candidate at the length its country uses ("DE89 3704 0044 0532 0130 00 BIC ...")."""
    want = v.IBAN_LENGTHS.get(value[:2].upper())
    if want is None:
        return 0
    n = 0
    for i, ch in enumerate(value):
        if ch != " ":
            n += 1
            if n == want:
                return i + 1 if v.iban(value[: i + 1]) else 0
    return 0


def _email(value: str) -> bool:
    tld = value.rsplit(".", 1)[-1].lower()
    return tld not in _FILE_EXTENSIONS


_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico js ts css py rb go rs java json yaml yml xml md txt pdf zip gz tar html htm".split()
)


def _openai(value: str) -> bool:
    return not value.startswith("sk-ant-") and _token_tail(value)


def _token_tail(value: str) -> bool:
    """A vendor prefix then a random body: the whole value has digits, letters and ≥ 3.5 bits/char."""
    return v.shannon_entropy(value) >= 3.5 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


# An identifier, not a payment card: "Order #4375126731827970", "invoice no. 4111...".
_ID_WORDS = ("#", "order", "invoice", "tracking", "ticket", "ref", "no.", "id:", "sku")


def _trunk_phone(value: str) -> bool:
    """0-prefixed national numbers: 10–12 digits, one kind of separator; not a ZIP+4 (07765-3398)."""
    digits = sum(c.isdigit() for c in value)
    seps = {c for c in value if not c.isdigit()}
    zip4 = len(value) == 10 and value[5:6] == "-"
    return 10 <= digits <= 12 and len(seps) == 1 and not zip4


_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}\.?"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19|20)[0-9]{2}"

BUILTIN: tuple[Detector, ...] = (
    # --- PII -------------------------------------------------------------------------
    Detector("email", "EMAIL",
             r"\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b",
             validator=_email, priority=70),
    # E.164 and international forms: +CC then digit groups; 8–15 digits in all.
    Detector("phone", "PHONE", r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}", validator=v.phone_digits,
             priority=60, isolated=True, unchained=True),
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 1-415-555-2671, with an optional extension.
    Detector("phone", "PHONE",
             r"(?:\b(?:1|001)[ .-]?)?(?:\([0-9]{3}\)[ .-]?|\b[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}\b(?:\s?(?:x|ext\.?)\s?[0-9]{1,5}\b)?",
             validator=v.nanp_phone, priority=60, isolated=True, unchained=True),
    # Trunk-prefixed national forms (UK, DE, FR, ...): 020 7946 0958, 030-12345678, 01 23 45 67 89.
    Detector("phone", "PHONE", r"\b0[1-9][0-9]{0,3}(?:[ -][0-9]{2,8}){1,4}\b",
             validator=_trunk_phone, priority=55, isolated=True, unchained=True),
    Detector("credit_card", "CARD", r"\b[0-9](?:[ -]?[0-9]){12,18}\b", refine=_card_refine, priority=80,
             isolated=True, unchained=True, anti_context=_ID_WORDS),
    Detector("iban", "IBAN", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", refine=_iban_refine, priority=80),
    Detector("us_ssn", "SSN", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b", validator=v.ssn,
             priority=78, isolated=True),
    Detector("us_ssn", "SSN", r"\b[0-9]{9}\b", validator=v.ssn, priority=78, isolated=True,
             context=("ssn", "social security", "social sec", "tax id", "tin"), context_window=40),
    Detector("ipv4", "IPV4", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", validator=v.ipv4, priority=50, isolated=True),
    Detector("ipv6", "IPV6", r"(?i)(?:[0-9a-f]{1,4}:{1,2}){1,7}(?:[0-9a-f]{1,4}(?:\.[0-9]{1,3}){0,3})?"
             r"|::(?:[0-9a-f]{1,4}:{1,2}){0,6}[0-9a-f]{1,4}(?:\.[0-9]{1,3}){0,3}", validator=v.ipv6,
             priority=50, isolated=True),
    Detector("date_of_birth", "DOB",
             rf"(?i)\b{_YEAR}[-/.]{_MON}[-/.]{_DAY}\b|\b{_DAY}[-/.]{_DAY}[-/.]{_YEAR}\b"
             rf"|\b{_MONTH} {_DAY}(?:st|nd|rd|th)?,? {_YEAR}\b|\b{_DAY}(?:st|nd|rd|th)? {_MONTH},? {_YEAR}\b",
             validator=v.birth_date, priority=40,
             context=("born", "birth", "dob", "d.o.b", "birthday", "bday", "geboren", "née", "né le"), context_window=40),
    # --- secrets ---------------------------------------------------------------------
    Detector("openai_api_key", "OPENAI_KEY", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}",
             validator=_openai, priority=90, kind="secret"),
    Detector("anthropic_api_key", "ANTHROPIC_KEY", r"\bsk-ant-(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{32,}",
             validator=_token_tail, priority=92, kind="secret"),
    Detector("groq_api_key", "GROQ_KEY", r"\bgsk_[A-Za-z0-9]{48,56}\b", validator=_token_tail, priority=90, kind="secret"),
    Detector("aws_access_key_id", "AWS_KEY_ID",
             r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b", priority=90, kind="secret"),
    Detector("aws_secret_access_key", "AWS_SECRET", r"(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])",
             validator=v.mixed_secret, context=("aws", "secret"), context_window=80, priority=88, kind="secret"),
    Detector("github_token", "GITHUB_TOKEN", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{82}\b",
             validator=_token_tail, priority=90, kind="secret"),
    Detector("slack_token", "SLACK_TOKEN",
             r"\bxox[abceoprs]-[0-9]{6,14}-[A-Za-z0-9-]{10,}|\bxapp-[0-9]-[A-Z0-9]{8,14}-[0-9]{8,14}-[a-f0-9]{32,80}"
             r"|https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32}",
             priority=90, kind="secret"),
    # The signature and payload are optional in the pattern so a stream holds a JWT back while it grows;
    # the validator still wants all three parts.
    Detector("jwt", "JWT", r"\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}", validator=v.jwt, priority=85, kind="secret"),
    Detector("pem_private_key", "PRIVATE_KEY",
             r"(?s)-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----.*?-----END[A-Z0-9 ]{0,40} PRIVATE KEY-----"
             r"|-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----[A-Za-z0-9+/=\s:,.-]*",
             priority=95, kind="secret"),
    Detector("generic_secret", "SECRET",
             r"(?i)(?:password|passwd|pwd|passphrase|secret|api[_-]?key|apikey|access[_-]?key|access[_-]?token|auth[_-]?token"
             r"|client[_-]?secret|private[_-]?key|token)[\"']?\s*(?::|=|=>)\s*[\"']?([^\s\"'`,;]{8,})",
             validator=v.secret_value, priority=10, kind="secret"),
)


def builtin_names() -> list[str]:
    seen: dict[str, None] = {}
    for d in BUILTIN:
        seen.setdefault(d.name, None)
    return list(seen)


@functools.lru_cache(maxsize=1)
def load_plugin_detectors() -> tuple[Detector, ...]:
    """Detectors from installed packages (``watchllm.dlp_detectors``); a broken plugin is logged and skipped."""
    found: list[Detector] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, Detector):
                obj = obj()
            items: Iterable[Detector] = [obj] if isinstance(obj, Detector) else list(obj)
            for d in items:
                if not isinstance(d, Detector):
                    raise TypeError(f"expected a Detector, got {type(d).__name__}")
                found.append(d)
        except Exception as exc:  # noqa: BLE001 - a third-party plugin must not stop the gateway
            log.error("dlp: detector plugin %r could not be loaded: %s", ep.name, exc)
    return tuple(found)
