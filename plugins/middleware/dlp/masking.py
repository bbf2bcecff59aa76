"""Redaction and reversible masking, for whole texts and for text that arrives in pieces.

A ``Vault`` lives for one request. ``mask`` swaps a value for ``[EMAIL_1]`` (the same
value always gets the same placeholder, so the model can still tell two people
apart), and ``restore`` puts the values back into the model's answer. Placeholders
never leave the request: the vault is dropped with it.

Streams add two hold-backs, each bounded:

* ``StreamRestorer`` keeps a trailing ``[EMAIL_`` until it knows whether a
  placeholder is being split across chunks;
* ``StreamRedactor`` (``scan_response``) keeps the last ``holdback`` characters, and
  any candidate that reaches into them, until more text says whether it is a value.
"""
from __future__ import annotations

import re
from typing import AbstractSet, Callable

from .scanner import Finding, Scanner

__all__ = ["Vault", "rewrite", "StreamRestorer", "StreamRedactor", "MAX_HOLD"]

# Bounded quantifiers keep this linear with Python's backtracking engine.
_TOKEN = re.compile(r"\[[A-Z][A-Z0-9_]{0,40}_[0-9]{1,6}\]")
_PARTIAL = re.compile(r"\[[A-Z0-9_]{0,48}\Z")
MAX_HOLD = 16_384  # a stream never holds back more than this many characters


class Vault:
    """Per-request placeholder map. ``taken`` says whether a placeholder already occurs in the prompt."""

    __slots__ = ("_by_value", "_by_token", "_next", "_taken")

    def __init__(self, taken: Callable[[str], bool] | None = None) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_token: dict[str, str] = {}
        self._next: dict[str, int] = {}
        self._taken = taken

    def __bool__(self) -> bool:
        return bool(self._by_token)

    def __len__(self) -> int:
        return len(self._by_token)

    def mask(self, label: str, value: str) -> str:
        key = (label, value)
        token = self._by_value.get(key)
        if token is None:
            n = self._next.get(label, 0)
            while True:
                n += 1
                token = f"[{label}_{n}]"
                if self._taken is None or not self._taken(token):  # a literal "[EMAIL_1]" in the prompt stays itself
                    break
            self._next[label] = n
            self._by_value[key] = token
            self._by_token[token] = value
        return token

    def restore(self, text: str) -> str:
        if not self._by_token or "[" not in text:
            return text
        return _TOKEN.sub(lambda m: self._by_token.get(m.group(0), m.group(0)), text)

    def restore_tree(self, obj: object) -> object:
        """Restore every string inside a JSON value (tool-call arguments are JSON in a string: fine)."""
        if isinstance(obj, str):
            return self.restore(obj)
        if isinstance(obj, dict):
            for k, v in obj.items():
                obj[k] = self.restore_tree(v)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                obj[i] = self.restore_tree(v)
        return obj


def rewrite(text: str, findings: list[Finding], actions: dict[str, str], vault: Vault | None,
            tally: Callable[[str, str], None], *, end: int | None = None) -> str:
    """Apply each finding's action to ``text`` (findings are disjoint and sorted); ``tally`` each one.

    ``mask`` needs a vault; without one (responses) it redacts. ``block`` findings in a
    response are redacted too: the answer is already on its way. ``end`` limits the
    rewrite to ``text[:end]`` (findings past it are left for later).
    """
    stop = len(text) if end is None else end
    out: list[str] = []
    prev = 0
    for f in findings:
        if f.end > stop:
            continue
        action = actions.get(f.detector, "mask")
        if action == "block" or (action == "mask" and vault is None):
            action = "redact"
        tally(f.detector, action)
        if action == "log":
            continue
        out.append(text[prev:f.start])
        out.append(vault.mask(f.label, text[f.start:f.end]) if action == "mask" else f"[{f.label}]")
        prev = f.end
    if not out:
        return text[:stop]
    out.append(text[prev:stop])
    return "".join(out)


class StreamRestorer:
    """Restores placeholders in text that arrives in pieces; holds a possible partial one."""

    __slots__ = ("vault", "_buf")

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._buf = ""

    def feed(self, text: str) -> str:
        buf = self._buf + text if self._buf else text
        i = buf.rfind("[")
        if i >= 0 and _PARTIAL.match(buf, i):
            self._buf = buf[i:]
            buf = buf[:i]
        else:
            self._buf = ""
        return self.vault.restore(buf)

    def flush(self) -> str:
        buf, self._buf = self._buf, ""
        return self.vault.restore(buf)


class StreamRedactor:
    """Scans text that arrives in pieces (``scan_response``) without buffering the whole stream."""

    __slots__ = ("scanner", "actions", "active", "holdback", "tally", "_buf")

    def __init__(self, scanner: Scanner, actions: dict[str, str], active: AbstractSet[str], holdback: int,
                 tally: Callable[[str, str], None]) -> None:
        self.scanner, self.actions, self.active, self.holdback, self.tally = scanner, actions, active, holdback, tally
        self._buf = ""

    def feed(self, text: str) -> str:
        buf = self._buf + text
        cut = len(buf) - self.holdback
        if cut <= 0:
            self._buf = buf
            return ""
        findings, hold = self.scanner.scan_open(buf, self.active, cut)
        if hold is not None and hold < cut:
            cut = hold
        if len(buf) - cut > MAX_HOLD:  # a candidate that never ends: let it go, redacted as far as it matched
            cut = len(buf)
        out = rewrite(buf, findings, self.actions, None, self.tally, end=cut)
        self._buf = buf[cut:]
        return out

    def flush(self) -> str:
        buf, self._buf = self._buf, ""
        if not buf:
            return ""
        return rewrite(buf, self.scanner.scan(buf, self.active), self.actions, None, self.tally)
