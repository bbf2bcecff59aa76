"""The ``gemini`` provider: OpenAI chat/embeddings ⇄ Gemini generateContent, JSON and SSE."""
from .provider import GeminiConfig, GeminiProvider

__all__ = ["GeminiProvider", "GeminiConfig"]
