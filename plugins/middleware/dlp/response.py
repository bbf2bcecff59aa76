"""The answer's way back: restore placeholders (and, with ``scan_response``, redact findings).

``ResponseFilter`` is registered as a ``Reply.transform`` for streams and applied in
place to JSON bodies. A stream is handled per *lane*: the content of one choice, or
the arguments of one tool call of one choice; each lane has its own hold-backs, so
a placeholder or a card number split across chunks is still caught. A chunk whose
text is entirely held back (and carries nothing else) is held back itself; the
chunk with ``finish_reason`` carries whatever is left.
"""
from __future__ import annotations

from typing import Any, Callable

from .masking import StreamRedactor, StreamRestorer, Vault, rewrite
from .scanner import Scanner

__all__ = ["ResponseFilter"]

Tally = Callable[[str, str], None]


class _Lane:
    __slots__ = ("redactor", "restorer")

    def __init__(self, redactor: StreamRedactor | None, restorer: StreamRestorer | None) -> None:
        self.redactor, self.restorer = redactor, restorer

    def feed(self, text: str) -> str:
        if self.redactor is not None:
            text = self.redactor.feed(text)
        if self.restorer is not None and text:
            text = self.restorer.feed(text)
        return text

    def flush(self) -> str:
        text = self.redactor.flush() if self.redactor is not None else ""
        if self.restorer is not None:
            text = self.restorer.feed(text) + self.restorer.flush()
        return text


class ResponseFilter:
    def __init__(self, vault: Vault, scanner: Scanner | None, actions: dict[str, str], holdback: int, tally: Tally) -> None:
        self.vault = vault
        self.scanner = scanner  # None: restore only
        self.actions = actions
        self.active = frozenset(actions)
        self.holdback = holdback
        self.tally = tally
        self._lanes: dict[tuple[int, int | None], _Lane] = {}

    # JSON -----------------------------------------------------------------------------
    def _whole(self, text: str) -> str:
        if self.scanner is not None:
            text = rewrite(text, self.scanner.scan(text, self.active), self.actions, None, self.tally)
        return self.vault.restore(text)

    def apply_json(self, body: dict[str, Any]) -> None:
        for ch in body.get("choices") or ():
            if not isinstance(ch, dict):
                continue
            msg = ch.get("message")
            if isinstance(msg, dict):
                content = msg.get("content")
                if isinstance(content, str):
                    msg["content"] = self._whole(content)
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            part["text"] = self._whole(part["text"])
                for tc in msg.get("tool_calls") or ():
                    fn = tc.get("function") if isinstance(tc, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        fn["arguments"] = self._whole(fn["arguments"])
            elif isinstance(ch.get("text"), str):
                ch["text"] = self._whole(ch["text"])

    # streams ----------------------------------------------------------------------------
    def _lane(self, key: tuple[int, int | None]) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            redactor = (StreamRedactor(self.scanner, self.actions, self.active, self.holdback, self.tally)
                        if self.scanner is not None else None)
            lane = self._lanes[key] = _Lane(redactor, StreamRestorer(self.vault) if self.vault else None)
        return lane

    def __call__(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices")
        if not choices:
            return chunk
        consumed = False  # some text went into a hold-back
        signal = bool(chunk.get("usage"))  # something other than text the client must get now
        for ch in choices:
            if not isinstance(ch, dict):
                signal = True
                continue
            i = ch.get("index", 0)
            delta = ch.get("delta")
            holder, key = (delta, "content") if isinstance(delta, dict) else (ch, "text")
            text = holder.get(key)
            if isinstance(text, str) and text:
                out = self._lane((i, None)).feed(text)
                holder[key] = out
                consumed = True
                signal = signal or bool(out)
            if isinstance(delta, dict):
                for k, v in delta.items():
                    if k == "tool_calls" and v:
                        self._tool_calls(i, v)
                        signal = True
                    elif k != "content" and v:
                        signal = True
            if ch.get("finish_reason") is not None:
                signal = True
                self._finish(i, ch, holder, key)
            elif ch.get("logprobs"):
                signal = True
        return None if (consumed and not signal) else chunk

    def _tool_calls(self, i: int, calls: list[Any]) -> None:
        for tc in calls:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str) and fn["arguments"]:
                fn["arguments"] = self._lane((i, int(tc.get("index", 0)))).feed(fn["arguments"])

    def _finish(self, i: int, ch: dict[str, Any], holder: dict[str, Any], key: str) -> None:
        for (ci, tool), lane in list(self._lanes.items()):
            if ci != i:
                continue
            rest = lane.flush()
            del self._lanes[(ci, tool)]
            if not rest:
                continue
            if tool is None:
                holder[key] = (holder.get(key) or "") + rest
                continue
            delta = ch.setdefault("delta", {})
            calls = delta.setdefault("tool_calls", [])
            for tc in calls:
                if isinstance(tc, dict) and tc.get("index", 0) == tool:
                    fn = tc.setdefault("function", {})
                    fn["arguments"] = (fn.get("arguments") or "") + rest
                    break
            else:
                calls.append({"index": tool, "function": {"arguments": rest}})
