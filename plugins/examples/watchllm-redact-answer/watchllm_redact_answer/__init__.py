"""redact_answer: mask words in the model's answer, JSON and streamed."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway import Call, Chunk, Handler, Outcome, Reply, Services


@dataclass(frozen=True, kw_only=True)
class RedactAnswerConfig:
    words: list[str] = field(metadata={"help": "words masked in answers (case-insensitive, whole words)"})
    mask: str = "***"


class RedactAnswer:
    Config = RedactAnswerConfig

    def __init__(self, config: RedactAnswerConfig, services: Services) -> None:
        self.pattern = re.compile("|".join(rf"\b{re.escape(w)}\b" for w in config.words), re.IGNORECASE)
        self.mask = config.mask
        self.log = services.log
        self.total = 0  # answers changed since start-up

    async def startup(self) -> None:
        self.log.info("redact_answer: masking %d words", len(self.pattern.pattern.split("|")))

    async def shutdown(self) -> None:
        self.log.info("redact_answer: %d answers redacted", self.total)

    def _redact(self, text: str) -> tuple[str, int]:
        return self.pattern.subn(self.mask, text)

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        reply = await call_next(call)
        hits = 0
        if reply.status >= 400:
            return reply
        if not reply.is_stream:
            for choice in (reply.body or {}).get("choices") or ():
                msg = choice.get("message") or {}
                if isinstance(msg.get("content"), str):
                    msg["content"], n = self._redact(msg["content"])
                    hits += n
            self.total += bool(hits)
            reply.headers["x-redacted"] = str(hits)
            return reply
        carry = ""  # a word may be split across chunks: hold back the unfinished tail

        def transform(chunk: Chunk) -> Chunk | None:
            nonlocal carry, hits
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text = carry + (delta.get("content") or "")
                if choice.get("finish_reason") is None:
                    cut = max(text.rfind(" "), text.rfind("\n")) + 1
                    text, carry = text[:cut], text[cut:]
                else:
                    carry = ""
                if text or "content" in delta:
                    delta["content"], n = self._redact(text)
                    hits += n
                    choice["delta"] = delta
            return chunk

        async def done(outcome: Outcome) -> None:  # runs once, at the end, even on disconnect
            self.total += bool(hits)

        reply.transform(transform)
        reply.on_complete(done)
        return reply
