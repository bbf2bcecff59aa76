"""Example middleware: stamp a header on every response (the smallest useful plugin)."""
from __future__ import annotations

from dataclasses import dataclass

from gateway import Call, Handler, Reply, Services


@dataclass(frozen=True, kw_only=True)
class AddHeaderConfig:
    name: str = "x-watchllm-example"
    value: str = "hello"


class AddHeader:
    Config = AddHeaderConfig

    def __init__(self, config: AddHeaderConfig, services: Services) -> None:
        self.name, self.value = config.name, config.value

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        call.reply_headers[self.name] = self.value  # also on short-circuit replies
        return await call_next(call)
