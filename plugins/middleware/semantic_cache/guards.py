"""Correctness guards: two prompts that embed close together may still need different answers.

MiniLM scores "Cancel my subscription" and "Don't cancel my subscription" at 0.97,
higher than most true paraphrases, so no cosine threshold separates them. A
semantic hit therefore also requires the two prompts to agree on the things that
flip an answer while barely moving an embedding:

* ``negation``  — the same number of negation cues (not, never, n't, without, ...);
* ``number``    — the same numbers (digits and number words, "5" == "five");
* ``time``      — the same dates and time words (months, weekdays, today, next year);
* ``unit``      — the same units and currencies (km/miles, USD/EUR, C/F);
* ``opposite``  — no word of an opposite pair on one side and its opposite on the other;
* ``entity``    — every name on one side (capitalized words, acronyms, identifiers,
  versions, quoted strings, known lower-case names) also appears on the other;
* ``order``     — with a direction word (to, from, than, vs) the names come in the same order;
* ``context``   — the earlier turns are the same or near-identical (word-sequence ratio),
  and pass the guards above turn by turn.

``Facts`` are extracted once per text (tens of microseconds) and stored with the
entry; ``check`` compares two of them and names the first guard that fails.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Sequence

from .lexicon import AMBIGUOUS_TIME, DIRECTION_WORDS, KNOWN_NAMES, NEGATIONS, NUMBER_WORDS, OPPOSITES, STOPWORDS, TIME_WORDS, UNITS

__all__ = ["Facts", "extract", "check", "check_context", "GUARDS"]

GUARDS = ("negation", "number", "time", "unit", "opposite", "entity", "order", "context")

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+#]*(?:['’][A-Za-z]+)?|\d+(?:[.,:/]\d+)*(?:st|nd|rd|th)?|[$€£%]|->")
_IDENT = re.compile(r"`[^`]+`|\"[^\"]{1,60}\"|https?://\S+|\S+@\S+\.\w+|\b\w+(?:[._/]\w+)+\b|\b[a-z]+[A-Z]\w*\b|\b\w*\d\w*(?:[.-]\w+)*\b")
_SENT_START = re.compile(r"(?:^|[.!?:\n]\s*)([A-Z][\w'’]*)")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_TIME_MODIFIERS = {"last": "last", "past": "last", "previous": "last", "next": "next", "coming": "next", "upcoming": "next",
                   "this": "this", "current": "this"}
_TIME_CANON = {w: w[:-1] for w in TIME_WORDS if w.endswith("s") and w[:-1] in TIME_WORDS}
_SLOT_WORDS = frozenset({"from", "to", "into", "than", "vs", "versus", "with", "over"})
_OPP_INDEX: dict[str, list[tuple[str, str]]] = {}
for _a, _b in OPPOSITES:
    _OPP_INDEX.setdefault(_a, []).append((_a, _b))
    _OPP_INDEX.setdefault(_b, []).append((_a, _b))


@dataclass(frozen=True, slots=True)
class Facts:
    """The answer-flipping features of one text."""

    words: tuple[str, ...]          # lower-case tokens, apostrophes removed
    flat: str                       # the lower-case text, for identifiers that span punctuation
    negations: int
    numbers: tuple[str, ...]        # sorted canonical values
    times: frozenset[str]
    units: frozenset[str]
    opposites: frozenset[str]       # words of the text that belong to an opposite pair
    entities: tuple[str, ...]       # lower-case names in order of appearance
    ordered: tuple[str, ...]        # names and units in order of appearance (for the order guard)
    slots: tuple[tuple[str, str], ...]  # (relation word, the content word after it): from X, to Y, than Z
    directional: bool


def _canon_number(tok: str) -> str | None:
    m = _ORDINAL.match(tok)
    if m:
        tok = m.group(1)
    if tok[0].isdigit():
        t = tok.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", tok) else tok
        try:
            v = float(t)
        except ValueError:
            return t  # 10:30, 1/2, 3.4.1 stay verbatim
        return str(int(v)) if v == int(v) else str(v)
    if tok in NUMBER_WORDS:
        v = NUMBER_WORDS[tok]
        return str(int(v)) if v == int(v) else str(v)
    return None


def _word(tok: str) -> str:
    w = tok.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]  # possessive (and "it's", "what's": the verb carries no fact)
    return w.replace("'", "")


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def extract(text: str) -> Facts:
    raw = _TOKEN.findall(text)
    words = tuple(_word(t) for t in raw)
    starts = {m.group(1) for m in _SENT_START.finditer(text)}
    letters = [t for t in raw if t[0].isalpha() and t.lower() not in STOPWORDS]
    title_case = len(letters) >= 3 and sum(t[0].isupper() for t in letters) > 0.6 * len(letters)

    negations = 0
    numbers: list[str] = []
    times: set[str] = set()
    units: set[str] = set()
    opposites: set[str] = set()
    entities: list[str] = []
    ordered: list[str] = []
    for i, (tok, w) in enumerate(zip(raw, words)):
        if w in NEGATIONS:
            negations += 1
        num = _canon_number(w)
        pronoun = w == "one" and (tok[-2:] in ("'s", "’s") or _pronoun_one(words, i))
        if num is not None and not pronoun and not (w == "second" and _near_time(words, i)):
            numbers.append(num)
        if w in TIME_WORDS and (w not in AMBIGUOUS_TIME or _near_number(words, i)):
            times.add(_TIME_CANON.get(w, w))
        if w in _TIME_MODIFIERS and i + 1 < len(words) and words[i + 1] in TIME_WORDS:
            times.add(f"{_TIME_MODIFIERS[w]} {_TIME_CANON.get(words[i + 1], words[i + 1])}")
        if w in UNITS:
            units.add(UNITS[w])
            ordered.append(UNITS[w])
        if w in _OPP_INDEX:
            opposites.add(w)
        named = w in KNOWN_NAMES or _is_name(tok, starts, title_case)
        if named and w not in STOPWORDS and w not in UNITS and w not in TIME_WORDS:
            entities.append(w[:-1] if w.endswith("s") and w[:-1] in KNOWN_NAMES else w)
            ordered.append(entities[-1])
    for m in _IDENT.finditer(text):
        ident = m.group(0).lower().strip('`"')
        if not ident.isdigit() and _canon_number(ident) is None:
            entities.append(ident)
    slots = []
    for i, w in enumerate(words):
        if w in _SLOT_WORDS:
            nxt = next((x for x in words[i + 1 : i + 4] if x not in STOPWORDS), None)
            if nxt is not None:
                slots.append((w, nxt))
    return Facts(
        words, " ".join(text.lower().split()), negations, tuple(sorted(numbers)), frozenset(times), frozenset(units),
        frozenset(opposites), tuple(dict.fromkeys(entities)), tuple(dict.fromkeys(ordered)), tuple(slots),
        any(w in DIRECTION_WORDS for w in words),
    )


def _near_number(words: Sequence[str], i: int) -> bool:
    return any(0 <= j < len(words) and _canon_number(words[j]) is not None for j in (i - 1, i + 1))


_ONE_DET = frozenset({"no", "some", "any", "every", "each", "the", "which", "this", "that", "anyone", "someone", "everyone", "if", "when"})


def _pronoun_one(words: Sequence[str], i: int) -> bool:
    """'one' as a pronoun ("if one wakes up", "one of the best", "which one"), not the number 1."""
    prev = words[i - 1] if i > 0 else ""
    nxt = words[i + 1] if i + 1 < len(words) else ""
    return prev in _ONE_DET or nxt in ("of", "another", "") or nxt in STOPWORDS


def _near_time(words: Sequence[str], i: int) -> bool:
    return i + 1 < len(words) and words[i + 1] in ("hand", "half")


def _is_name(tok: str, starts: set[str], title_case: bool) -> bool:
    if not tok[0].isupper() or tok == "I" or tok.startswith("I'"):
        return False
    if len(tok) > 1 and tok.isupper():
        return True  # acronym
    return not title_case and tok not in starts


def _contains(f: Facts, words: frozenset[str], entity: str) -> bool:
    if not entity.isalnum():  # an identifier, version, path or quoted string: look in the raw text
        return entity in f.flat or entity.replace("-", "") in "".join(f.words)
    return entity in words or _stem(entity) in {_stem(w) for w in words}


def check(a: Facts, b: Facts) -> str | None:
    """Return the name of the first guard the pair fails, or None when ``b`` may reuse ``a``'s answer."""
    if a.negations != b.negations:
        return "negation"
    if a.numbers != b.numbers:
        return "number"
    if a.times != b.times:
        return "time"
    if a.units != b.units:
        return "unit"
    if a.opposites != b.opposites:
        only_a, only_b = a.opposites - b.opposites, b.opposites - a.opposites
        for w in only_a:
            for x, y in _OPP_INDEX[w]:
                other = y if w == x else x
                if other in only_b:
                    return "opposite"
    wa, wb = frozenset(a.words), frozenset(b.words)
    for e in a.entities:
        if not _contains(b, wb, e):
            return "entity"
    for e in b.entities:
        if not _contains(a, wa, e):
            return "entity"
    if a.directional and b.directional and len(a.ordered) >= 2:
        shared = [e for e in a.ordered if e in b.ordered]
        if len(shared) >= 2 and shared != [e for e in b.ordered if e in shared]:
            return "order"
    sa, sb = set(a.slots), set(b.slots)
    for r1, x in sa - sb:
        for r2, y in sa - sb:
            if r1 != r2 and x != y and (r1, y) in sb and (r2, x) in sb:
                return "order"  # "from savings to checking" / "from checking to savings"
    return None


def check_context(a: Sequence[tuple[str, str]], b: Sequence[tuple[str, str]], min_ratio: float) -> bool:
    """Earlier turns match: same roles, and each turn identical or near-identical and passing ``check``."""
    if len(a) != len(b):
        return False
    for (ra, ta), (rb, tb) in zip(a, b):
        if ra != rb:
            return False
        if ta == tb:
            continue
        fa, fb = extract(ta), extract(tb)
        if fa.words == fb.words:
            continue
        if SequenceMatcher(None, fa.words, fb.words, autojunk=False).ratio() < min_ratio or check(fa, fb) is not None:
            return False
    return True


def content_counter(f: Facts) -> Counter[str]:
    """Content words (no stop words), for diagnostics in the evaluation."""
    return Counter(w for w in f.words if w not in STOPWORDS)
