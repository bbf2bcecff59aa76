"""Edit verifier: when two questions are a small edit of each other, the edit must not change the question.

The traps that get past cosine *and* the lexicon guards are small edits made of
closed-class words or morphology that no list of opposites enumerates:
"zoom in" / "zoom out", "a crocodile faster than a hippo" / "a hippo faster than a
crocodile", "How do I follow someone?" / "How do I unfollow someone?", "Why is the
sky blue?" / "When is the sky blue?". The verifier diffs the two questions word by
word (difflib over the tokens the guards already extracted, tens of microseconds)
and rejects a pair when the diff shows one of these edits:

* ``reorder``  — the same words in another order while a direction word (to, from,
  than, vs, into) makes the order matter (any noun, not only names);
* ``particle`` — one verb particle exchanged for its opposite (in/out, on/off, up/down,
  over/under, to/from, ...; a closed class of 10 pairs): phrasal verbs flip on them;
* ``prefix``   — a word exchanged for its negating form (un-, dis-, im-, il-, ir-,
  non-, anti-, mis-): follow/unfollow, like/dislike, legal/illegal;
* ``wh``       — the question opens with a different one of why/when/where/who/how (a
  cause, a time, a place, a person, a method: different answers); "what" and
  "which" can ask any of these and are free.

Everything else (a broad rewrite, synonyms, inserted filler) is left to the cosine
threshold and the guards. It runs only on candidates already above the threshold
that passed the guards, so a miss never pays for it.

Tried and dropped (measured in docs/semantic_cache.md): a BERTScore-style token
alignment on MiniLM's contextual token vectors (every content word needs a close
counterpart) and embedding the replaced words on their own: MiniLM puts synonyms
("selects"/"retrieves" 0.40) and antonyms ("accept"/"decline" 0.41) at the same
similarity, so both cost more true paraphrases than they stopped false hits.
"""
from __future__ import annotations

from difflib import SequenceMatcher
from typing import Sequence

from .guards import Facts
from .lexicon import DIRECTION_WORDS, STOPWORDS

__all__ = ["verify", "CHECKS", "PARTICLES", "WH_WORDS"]

CHECKS = ("reorder", "particle", "prefix", "wh")

# Verb particles and prepositions of opposite direction (a closed class): a phrasal verb flips on them.
PARTICLES = frozenset(tuple(p.split("/")) for p in (
    "in/out on/off up/down over/under into/out onto/off to/from towards/away forward/backward forwards/backwards"
).split())
# Question words that ask for a person, a place, a time or a cause (see _KINDS for the ones compared).
WH_WORDS = frozenset("why when where who whom whose".split())
_NEG_PREFIXES = ("un", "dis", "im", "il", "ir", "non", "anti", "mis")  # not "in"/"de": infront, decode


def _negated_form(x: str, y: str) -> bool:
    """``y`` is ``x`` with a negating prefix (or the reverse): follow/unfollow, like/dislike, able/unable."""
    if len(x) > len(y):
        x, y = y, x
    return len(x) >= 3 and any(y == p + x or y == p + "-" + x for p in _NEG_PREFIXES)


def verify(a: Facts, b: Facts) -> str | None:
    """Name the edit that makes ``b`` a different question from ``a``, or None when ``b`` may reuse ``a``'s answer."""
    wa, wb = a.words, b.words
    if wa == wb:
        return None
    qa, qb = _interrogative(wa), _interrogative(wb)
    if qa != qb and qa in _KINDS and qb in _KINDS:
        return "wh"
    if sorted(wa) == sorted(wb):
        moved = [w for w in wa if w not in STOPWORDS] != [w for w in wb if w not in STOPWORDS]
        return "reorder" if moved and any(w in DIRECTION_WORDS for w in wa) else None
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if tag != "replace":
            continue
        ra, rb = wa[i1:i2], wb[j1:j2]
        if len(ra) == 1 and len(rb) == 1 and ((ra[0], rb[0]) in PARTICLES or (rb[0], ra[0]) in PARTICLES):
            return "particle"
        for x in ra:
            for y in rb:
                if _negated_form(x, y):
                    return "prefix"
    if _reordered_around_direction(wa, wb):
        return "reorder"
    return None


_QUESTION_WORDS = WH_WORDS | {"what", "how", "which", "whats", "hows"}
_KINDS = frozenset({"why", "when", "where", "who", "how"})  # "what"/"which" can ask any of these


def _interrogative(words: Sequence[str]) -> str:
    """The question word that opens the question ("Why is the sky blue?" -> "why"), or ""."""
    for w in words[:2]:
        if w in _QUESTION_WORDS:
            return {"whats": "what", "hows": "how", "whom": "who", "whose": "who"}.get(w, w)
    return ""


def _reordered_around_direction(wa: Sequence[str], wb: Sequence[str]) -> bool:
    """Words on both sides of a direction word trade places: "cups to grams" / "grams to cups"."""
    for i, w in enumerate(wa):
        if w not in DIRECTION_WORDS or w not in wb:
            continue
        j = wb.index(w)
        left_a, right_a = wa[i - 1] if i else "", wa[i + 1] if i + 1 < len(wa) else ""
        left_b, right_b = wb[j - 1] if j else "", wb[j + 1] if j + 1 < len(wb) else ""
        if left_a and right_a and left_a != right_a and (left_a, right_a) == (right_b, left_b):
            return True
    return False
