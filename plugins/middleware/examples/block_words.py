"""Example middleware: refuse prompts containing blocked words (short-circuits with 400)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from gateway import Call, GatewayError, Handler, Reply, Services


@dataclass(frozen=True, kw_only=True)
class BlockWordsConfig:
    words: list[str]
    message: str = "blocked by policy"


class BlockWords:
    Config = BlockWordsConfig

    def __init__(self, config: BlockWordsConfig, services: Services) -> None:
        self._pattern = re.compile("|".join(rf"\b{re.escape(w)}\b" for w in config.words), re.IGNORECASE)
        self._message = config.message

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        if self._pattern.search(call.prompt_text()):
            raise GatewayError("dlp_violation", self._message, details={"rule": "block_words"})
        reply = await call_next(call)
        reply.headers["x-policy"] = "block-words"
        return reply
