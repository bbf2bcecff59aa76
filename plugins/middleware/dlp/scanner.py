"""Scanner: text in, findings out, in time linear in the text.

One ``re2.Set`` pass over the whole text says which detectors match anywhere (most
prompts: none), so only those run their own pattern. All matching happens on the
UTF-8 bytes with RE2 (a DFA/NFA engine: no backtracking, no ReDoS); the Python
checks that follow (validators, context words, overlap resolution) only touch
candidates, each in O(its length). Offsets in a ``Finding`` are ``str`` indices.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import AbstractSet, Sequence

import re2

from .detectors import Detector

__all__ = ["Finding", "Scanner", "PatternError"]

_UNANCHORED = re2._Anchor.UNANCHORED  # the public API has no bytes-offset iterator; the raw one avoids re-encoding
_JOINERS = frozenset(b".-:_/,")


class PatternError(ValueError):
    """A detector pattern RE2 cannot compile (it names the detector, not the text)."""


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    label: str
    start: int
    end: int
    priority: int


def _alnum(b: int) -> bool:
    return 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122


class _Compiled:
    __slots__ = ("det", "raw", "grouped", "context", "anti")

    def __init__(self, det: Detector, options: re2.Options) -> None:
        self.det = det
        pattern = ("(?i)" + det.pattern) if det.ignore_case else det.pattern
        try:
            regexp = re2.compile(pattern.encode(), options)
        except re2.error as exc:
            raise PatternError(f"detector {det.name!r}: not a valid RE2 pattern ({exc})") from None
        self.raw = regexp._regexp
        self.grouped = self.raw.NumberOfCapturingGroups() > 0
        self.context = tuple(w.lower().encode() for w in det.context)
        self.anti = tuple(w.lower().encode() for w in det.anti_context)


class Scanner:
    """Compiled once at start-up from a list of detectors; ``scan`` is safe to call concurrently."""

    def __init__(self, detectors: Sequence[Detector], *, max_mem: int = 64 << 20) -> None:
        options = re2.Options()
        options.max_mem = max_mem
        self.detectors = tuple(detectors)
        self._compiled = [_Compiled(d, options) for d in self.detectors]
        self._set = re2.Set.SearchSet(options)
        for c in self._compiled:
            pattern = ("(?i)" + c.det.pattern) if c.det.ignore_case else c.det.pattern
            self._set.Add(pattern.encode())
        self._set.Compile()
        self.labels = {d.name: d.label for d in self.detectors}

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def scan(self, text: str, active: AbstractSet[str] | None = None) -> list[Finding]:
        """Findings in ``text`` for the ``active`` detector names (all when None), disjoint, by start."""
        return self._scan(text, active, None)[0]

    def scan_open(self, text: str, active: AbstractSet[str] | None, cut: int) -> tuple[list[Finding], int | None]:
        """Findings, plus where to hold a stream back from: the start of the first *candidate*
        (validated or not) that reaches past ``cut``, since more text could complete it."""
        return self._scan(text, active, cut)

    def _scan(self, text: str, active: AbstractSet[str] | None, cut: int | None) -> tuple[list[Finding], int | None]:
        if not text:
            return [], None
        data = text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(text)
        byte_cut = None if cut is None else (cut if ascii_only else len(text[:cut].encode("utf-8", "surrogatepass")))
        hits = self._set.Match(data)
        if not hits:
            return [], None
        n = len(data)
        found: list[tuple[int, int, int, Detector]] = []  # (-priority, start, end, det)
        hold: int | None = None
        for idx in sorted(hits):
            c = self._compiled[idx]
            det = c.det
            if active is not None and det.name not in active:
                continue
            raw, grouped = c.raw, c.grouped
            pos = 0
            while pos <= n:
                spans = raw.Match(_UNANCHORED, data, pos, n)
                s, e = spans[0]
                if s < 0:
                    break
                pos = e if e > s else e + 1
                if grouped and spans[1][0] >= 0:
                    s, e = spans[1]
                if byte_cut is not None and e > byte_cut and (hold is None or s < hold):
                    hold = s
                span = self._check(c, data, s, e)
                if span is not None:
                    found.append((-det.priority, span[0], span[1], det))
        findings = _disjoint(found)
        if not ascii_only:
            findings, hold = _to_char_offsets(data, findings, hold)
        return findings, hold

    @staticmethod
    def _check(c: _Compiled, data: bytes, s: int, e: int) -> tuple[int, int] | None:
        det = c.det
        if det.isolated:
            if s > 0:
                b = data[s - 1]
                if _alnum(b) or (b in _JOINERS and s > 1 and _alnum(data[s - 2])):
                    return None
            if e < len(data):
                b = data[e]
                if _alnum(b) or (b in _JOINERS and e + 1 < len(data) and _alnum(data[e + 1])):
                    return None
        if det.unchained and _continues_a_code(data, s):
            return None
        if c.anti:
            before = data[max(0, s - 16):s].lower()
            if any(word in before for word in c.anti):
                return None
        if c.context:
            w = det.context_window
            window = data[max(0, s - w):s].lower() + b" " + data[e:e + w].lower()
            if not any(word in window for word in c.context):
                return None
        if det.refine is None and det.validator is None:
            return s, e
        value = data[s:e].decode("utf-8", "surrogatepass")
        if det.refine is not None:
            keep = det.refine(value)
            if keep <= 0:
                return None
            if keep < len(value):
                e = s + len(value[:keep].encode("utf-8", "surrogatepass"))
                value = value[:keep]
        if det.validator is not None and not det.validator(value):
            return None
        return s, e


def _continues_a_code(data: bytes, s: int) -> bool:
    """True when ``data[s:]`` continues a run of code groups: "Q284 3654...", "NL41 ZOIH 0421...", "6011 0532...".

    Walks back over words one space or dash apart while they are short upper-case/digit
    groups; a digit in any of them means the candidate is the tail of a longer number.
    """
    while s > 1 and data[s - 1] in b" -" and _alnum(data[s - 2]):
        i = s - 2
        digit, upper_only = False, True
        while i >= 0 and _alnum(data[i]):
            b = data[i]
            digit = digit or 48 <= b <= 57
            upper_only = upper_only and not 97 <= b <= 122
            i -= 1
        if digit:
            return True
        if not upper_only or s - 2 - i > 4:
            return False
        s = i + 1
    return False


def _disjoint(found: list[tuple[int, int, int, Detector]]) -> list[Finding]:
    """Keep the highest-priority finding where two overlap (a JWT inside ``api_key=...`` is a JWT)."""
    if not found:
        return []
    found.sort(key=lambda f: (f[0], f[1], f[1] - f[2]))
    starts: list[int] = []
    kept: list[tuple[int, int, Detector]] = []
    for neg_prio, s, e, det in found:
        i = bisect.bisect_right(starts, s)
        if i > 0 and kept[i - 1][1] > s:  # the previous kept one runs into this one
            continue
        if i < len(kept) and kept[i][0] < e:  # this one runs into the next kept one
            continue
        starts.insert(i, s)
        kept.insert(i, (s, e, det))
    return [Finding(d.name, d.label, s, e, d.priority) for s, e, d in kept]


def _to_char_offsets(data: bytes, findings: list[Finding], hold: int | None) -> tuple[list[Finding], int | None]:
    offsets = sorted({o for f in findings for o in (f.start, f.end)} | ({hold} if hold is not None else set()))
    chars: dict[int, int] = {}
    prev_b = prev_c = 0
    for o in offsets:
        prev_c += len(data[prev_b:o].decode("utf-8", "surrogatepass"))
        prev_b = o
        chars[o] = prev_c
    out = [Finding(f.detector, f.label, chars[f.start], chars[f.end], f.priority) for f in findings]
    return out, (chars[hold] if hold is not None else None)
