"""The ``anthropic`` provider: OpenAI chat format ⇄ Anthropic Messages API, JSON and SSE."""
from .provider import AnthropicConfig, AnthropicProvider

__all__ = ["AnthropicProvider", "AnthropicConfig"]
