"""The ``ollama`` provider: OpenAI chat/embeddings ⇄ Ollama's native API, JSON and NDJSON streams."""
from .provider import OllamaConfig, OllamaProvider

__all__ = ["OllamaProvider", "OllamaConfig"]
